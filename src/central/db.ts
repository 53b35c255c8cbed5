import pg from 'pg';

// int8 columns (sizes, counters) fit in a double far past any real value; return numbers, not strings.
pg.types.setTypeParser(20, (v) => Number(v));

export type Pool = pg.Pool;
export type Client = pg.PoolClient;

export function createPool(url: string, max = 10): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: 10_000, idleTimeoutMillis: 30_000 });
  // A client losing its connection (PostgreSQL restarted, failed over, or the backend terminated) must not
  // crash the process: idle ones are reported on the pool, checked-out ones on the client itself, whose query
  // in flight then fails on its own. The pool replaces them.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

/** Runs `fn` in one transaction; commits when it returns, rolls back when it throws. */
export async function withTransaction<T>(pool: pg.Pool, fn: (c: Client) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    // A connection that cannot even roll back is broken: destroyed, not handed to the next request.
    broken = await client.query('ROLLBACK').then(() => false, () => true);
    throw err;
  } finally {
    client.release(broken);
  }
}
