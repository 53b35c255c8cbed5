/**
 * One edge daemon per DATA_DIR. A second `opsdb serve` on the same
 * directory (a second unit, a copy started by hand) would share the buffer:
 * at its start it returns the running daemon's batch in flight to pending,
 * and from then on both take writes and sync them. The lock is SQLite's
 * exclusive lock on `DATA_DIR/daemon.lock`, a POSIX lock the system drops
 * when the process ends however it ends (SIGKILL, power cut), so a crash
 * never leaves a stale lock behind. `opsdb buffer …` does not take it: it
 * works beside the running daemon.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';

export class DataDirInUseError extends Error {}

/**
 * SQLite's "unable to open database file" or "attempt to write a readonly database" names no file and
 * no cause. Said with the file, the directory and who this process runs as; other errors are left as
 * they are. (The units run as the user opsdb, which owns /var/lib/opsdb.)
 */
export function withFileProblem(path: string, err: unknown): unknown {
  const code = (err as { code?: string }).code ?? '';
  if (!/^SQLITE_(CANTOPEN|READONLY|PERM|AUTH)/.test(code)) return err;
  let user = 'this user';
  try {
    user = `user ${userInfo().username}`;
  } catch {
    // no name for this uid
  }
  return new Error(
    `cannot open ${path}: ${(err as Error).message}. Its directory ${dirname(path)} must exist, and it and the file be writable by ${user}; ` +
      'the systemd unit runs as opsdb, so run opsdb commands on its DATA_DIR as that user (sudo -u opsdb opsdb …)',
    { cause: err },
  );
}

export interface DataDirLock {
  release(): void;
}

/** `who`: the kind of process that holds it, for the message the next one gets. */
export function lockDataDir(dataDir: string, who = 'opsdb serve'): DataDirLock {
  const path = join(dataDir, 'daemon.lock');
  const pidFile = join(dataDir, 'daemon.pid');
  let db: Database.Database;
  try {
    db = new Database(path);
  } catch (err) {
    throw withFileProblem(path, err);
  }
  try {
    db.pragma('busy_timeout = 0');
    // Held until release (or the end of the process): never committed.
    db.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code !== 'SQLITE_BUSY') throw err;
    const pid = (() => {
      try {
        return readFileSync(pidFile, 'utf8').trim();
      } catch {
        return '';
      }
    })();
    throw new DataDirInUseError(
      `${who === 'opsdb serve' ? 'DATA_DIR' : 'data directory'} ${dataDir} is in use by another opsdb process${pid ? ` (pid ${pid})` : ''}: ` +
        `one ${who} per data directory. Stop the other one, or give this one its own ${who === 'opsdb serve' ? 'DATA_DIR' : '--data-dir'}`,
    );
  }
  try {
    writeFileSync(pidFile, `${process.pid}\n`);
  } catch (err) {
    db.close();
    throw new Error(`cannot write ${pidFile}: ${(err as Error).message}`, { cause: err });
  }
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      db.close();
    },
  };
}
