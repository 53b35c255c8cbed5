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
import { join } from 'node:path';
import Database from 'better-sqlite3';

export class DataDirInUseError extends Error {}

export interface DataDirLock {
  release(): void;
}

/** `who`: the kind of process that holds it, for the message the next one gets. */
export function lockDataDir(dataDir: string, who = 'opsdb serve'): DataDirLock {
  const path = join(dataDir, 'daemon.lock');
  const pidFile = join(dataDir, 'daemon.pid');
  const db = new Database(path);
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
