import type Database from 'better-sqlite3';

/**
 * Prepared statements by a key: `build` makes the SQL text only the first
 * time a key is seen. Preparing (and even building the text) costs more than
 * running a simple statement, and the edge runs the same few on every
 * request and every row. Bounded: past `max` statements the cache starts over.
 */
export function keyedStatements(db: Database.Database, max = 500): (key: string, build: () => string) => Database.Statement {
  const cache = new Map<string, Database.Statement>();
  return (key, build) => {
    let s = cache.get(key);
    if (!s) {
      if (cache.size >= max) cache.clear();
      s = db.prepare(build());
      cache.set(key, s);
    }
    return s;
  };
}

/** Prepared statements by SQL text. */
export function statementCache(db: Database.Database, max = 500): (sql: string) => Database.Statement {
  const keyed = keyedStatements(db, max);
  return (sql) => keyed(sql, () => sql);
}
