import type Database from 'better-sqlite3';

/**
 * Prepared statements by SQL text. Preparing costs more than running a
 * simple statement, and the edge runs the same few on every request.
 */
export function statementCache(db: Database.Database, max = 500): (sql: string) => Database.Statement {
  const cache = new Map<string, Database.Statement>();
  return (sql) => {
    let s = cache.get(sql);
    if (!s) {
      if (cache.size >= max) cache.clear();
      s = db.prepare(sql);
      cache.set(sql, s);
    }
    return s;
  };
}
