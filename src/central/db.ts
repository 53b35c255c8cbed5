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
  // A connection PostgreSQL refuses (the database not accepting connections, dropped, a password changed…)
  // fails with whatever SQLSTATE the server chose, which says nothing about the request: marked here, so that
  // it is answered 503 like a lost connection, not 500. `pool.query` connects through this method too.
  const connect = pool.connect.bind(pool) as (cb?: (err: Error | undefined, client?: Client, done?: (release?: unknown) => void) => void) => unknown;
  pool.connect = ((cb?: (err: Error | undefined, client?: Client, done?: (release?: unknown) => void) => void) =>
    cb
      ? connect((err, client, done) => cb(err && markConnectFailure(err), client, done))
      : (connect() as Promise<Client>).catch((err: Error) => Promise.reject(markConnectFailure(err)))) as typeof pool.connect;
  return pool;
}

const CONNECT_FAILURE = Symbol('opsdb.connectFailure');

function markConnectFailure(err: Error): Error {
  if (err && typeof err === 'object') (err as Error & { [CONNECT_FAILURE]?: true })[CONNECT_FAILURE] = true;
  return err;
}

/** The error came from getting a connection to PostgreSQL, not from a statement: the request wrote nothing. */
export function isConnectFailure(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { [CONNECT_FAILURE]?: true })[CONNECT_FAILURE] === true;
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
