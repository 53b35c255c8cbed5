/**
 * Whether the SQLite files a process opened are still the ones at their
 * paths. A database removed (or replaced) under a running daemon goes on
 * taking commits through the open descriptor, and reads see them; but a
 * restart opens whatever is at the path then, and everything written since
 * is gone. So the daemon must notice, refuse new writes, and keep the open
 * file to send on what it holds.
 */
import { statSync } from 'node:fs';

const idOf = (path: string): string | null => {
  const st = statSync(path, { throwIfNoEntry: false });
  return st ? `${st.dev}:${st.ino}` : null;
};

export class FileGuard {
  /** Path → the file's identity when first seen (null: not there yet; SQLite makes the WAL on first use). */
  private readonly ids = new Map<string, string | null>();

  constructor(readonly path: string) {
    for (const p of [path, `${path}-wal`]) this.ids.set(p, idOf(p));
  }

  /** Null while every file at its path is the one opened; else what became of it. One stat per file. */
  problem(): string | null {
    for (const [p, id] of this.ids) {
      const now = idOf(p);
      if (id === null) {
        if (now !== null) this.ids.set(p, now);
        continue;
      }
      if (now === id) continue;
      return `${p} was ${now === null ? 'removed' : 'replaced by another file'} while the edge ran`;
    }
    return null;
  }
}

/** What a buffer whose file is gone tells the writer and the operator. */
export function bufferFileGone(problem: string): string {
  return `${problem}. The edge still holds that file open and goes on sending what it holds to central, but a restart ` +
    'would lose every write not yet synced: new writes are refused. Wait until /buffer-stats shows nothing pending ' +
    'before restarting (docs/operations.md, "buffer.db removed under a running edge")';
}
