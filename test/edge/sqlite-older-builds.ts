/**
 * What builds from before the dependency index leave in a closed `buffer.db`, made by hand: the SQLite
 * backends' (plain and threaded) `reopenWithoutDependencyIndex`, `reopenAfterOlderBuildAppended` and
 * `reopenAfterBuildDroppingCompactedEdges`.
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

/** A buffer whose compactions were made by a build that dropped a compacted parent's edges, and kept no mark of that. */
export function dropEdgesOfCompacted(path: string): void {
  onFile(path, (db) => {
    db.exec('DELETE FROM dep WHERE NOT EXISTS (SELECT 1 FROM tx WHERE tx.seq = dep.parent)');
    db.exec("DELETE FROM counter WHERE name = 'deps_kept_after'");
  });
}
