/**
 * What builds from before the dependency index leave in a closed `buffer.db`, made by hand: the SQLite
 * backends' (plain and threaded) `reopenWithoutDependencyIndex` and `reopenAfterOlderBuildAppended`.
 */
import Database from 'better-sqlite3';

function onFile(path: string, change: (db: Database.Database) => void): void {
  const db = new Database(path);
  try {
    change(db);
  } finally {
    db.close();
  }
}

/** A buffer made before the index: no `dep` table. */
export function dropDependencyIndex(path: string): void {
  onFile(path, (db) => db.exec('DROP TABLE dep'));
}

/** An indexed buffer an older build appended to after seq `after`: those not in the index, its mark not moved. */
export function forgetDependenciesAfter(path: string, after: number): void {
  onFile(path, (db) => {
    db.prepare('DELETE FROM dep WHERE child > ?').run(after);
    db.prepare("UPDATE counter SET value = ? WHERE name = 'dep_through'").run(after);
  });
}
