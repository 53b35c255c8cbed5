/**
 * Central's half of sync: applying an edge's batch exactly once, the change
 * feed back to the edge, and the sites register.
 */
import type { Pool, Client } from './db.js';
import { withTransaction } from './db.js';
import { applyPrepared, prepareTransaction, rejection, scopeToSite, type PreparedTransaction, type RawResult } from './apply.js';
import { AppError, ConflictError, UnavailableError, ValidationError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Backlog, Change, ChangesPage, SyncBatch, SyncBatchResult, SyncItemResult } from '../lib/api/sync-schemas.js';
import { createSiteAccount } from './accounts.js';

/** A feed position's id (`xid@µs`, see positionId) from feed_tx's row `f`. */
const POSITION_ID_SQL = `f.xid::text || '@' || (extract(epoch FROM f.committed_at) * 1000000)::bigint`;

/** The feed position this transaction's changes got, or the current one when it changed nothing, with its id. */
async function commitPosition(c: Client): Promise<{ position: number; position_id?: string }> {
  await c.query('SET CONSTRAINTS change_log_assign IMMEDIATE');
  const { rows } = await c.query(
    `SELECT p.pos, ${POSITION_ID_SQL} AS id
       FROM (SELECT coalesce(nullif(current_setting('opsdb.feed_pos', true), '')::bigint, (SELECT pos FROM feed_position WHERE id = 1)) AS pos) p
       LEFT JOIN feed_tx f ON f.pos = p.pos`,
  );
  return { position: Number(rows[0].pos), ...(rows[0].id ? { position_id: rows[0].id as string } : {}) };
}

/**
 * How long a batch sent early waits for the batch it follows before central
 * answers 409 out_of_order. Long enough for a big batch to finish uploading
 * over a slow link after a smaller one that overtook it; below the edge's
 * default SYNC_TIMEOUT_MS (30 s).
 */
const ORDER_WAIT_MS = 20_000;

/**
 * One database transaction for the whole batch, one savepoint per
 * transaction: a rejected one rolls back alone, the batch costs one commit.
 * Anything that is not the transaction's own fault (lost connection,
 * deadlock) aborts the batch, which the edge then resends whole.
 */
export async function applyBatch(
  pool: Pool, batch: SyncBatch, appliedBy: number, log: Logger, orderWaitMs = ORDER_WAIT_MS, signal?: AbortSignal,
  replica?: ReplicaPosition,
): Promise<SyncBatchResult> {
  const txs = [...batch.transactions].sort((a, b) => a.seq - b.seq);
  // Transactions central will not even try are answered without touching the database.
  // Whatever goes wrong preparing one transaction is that transaction's rejection, never the batch's 500.
  const prepared = txs.map((tx) => {
    try {
      return prepareTransaction(tx);
    } catch (err) {
      if (err instanceof AppError) return err;
      log.error({ err, site: batch.site, transaction_id: tx.transaction_id }, 'transaction could not be prepared');
      return new ValidationError(`Transaction cannot be applied: ${(err as Error).message}`);
    }
  });
  const deadline = Date.now() + orderWaitMs;
  for (let waitMs = 5; ; waitMs = Math.min(waitMs * 2, 100)) {
    const out = await applyInOrder(pool, batch, appliedBy, log, txs, prepared, replica);
    if (out !== WAIT && out !== BUSY) return out;
    if (Date.now() >= deadline || signal?.aborted) {
      if (out === BUSY) {
        throw new UnavailableError(`Central is still applying another batch of site "${batch.site}"; nothing of this one was written, send it again shortly`);
      }
      throw new AppError(409, 'out_of_order',
        `This batch follows batch ${batch.after_batch}, which central has not applied; send that one first`,
        { batch_id: batch.batch_id ?? null, after_batch: batch.after_batch });
    }
    // Its predecessor is still on its way or being applied; wait without holding a connection.
    await new Promise((r) => setTimeout(r, waitMs));
  }
}

/** The position of central's feed an edge last knew, and the id it had then (REPLICA_HEADER). */
export interface ReplicaPosition { pos: number; id: string }

/** applyInOrder's answers when it wrote nothing: the batch it follows is not applied yet; another batch of the site holds it. */
const WAIT = Symbol('wait');
const BUSY = Symbol('busy');
/** How long a batch's statements wait for a row lock (another writer of the same rows) before it is answered 503. */
const LOCK_TIMEOUT = '5s';

/**
 * The batch in one database transaction, holding the site's row from the
 * start: a site's batches apply one at a time, and a batch sent early
 * (`after_batch`) only once the batch before it has committed. Returns WAIT,
 * having written nothing, when that one has not, and BUSY when another batch
 * of the site holds its row: the caller waits without a connection, so
 * batches resent by an edge that gave up on them can never fill the pool
 * and starve the other sites. `replica` is checked in the same transaction: a
 * database that went back in time (a restore, a failover to a copy that was
 * behind) between a check and the apply could not take the batch anyway.
 */
async function applyInOrder(
  pool: Pool, batch: SyncBatch, appliedBy: number, log: Logger,
  txs: SyncBatch['transactions'], prepared: (PreparedTransaction | AppError)[], replica?: ReplicaPosition,
): Promise<SyncBatchResult | typeof WAIT | typeof BUSY> {
  return withTransaction(pool, async (c) => {
    await c.query(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
    // NO KEY UPDATE: rows referencing the site (a KEY SHARE lock) are not held up by it.
    const { rows: siteRows } = await c.query<{ last_batch_id: string | null }>(
      'SELECT last_batch_id FROM site WHERE name = $1 FOR NO KEY UPDATE SKIP LOCKED', [batch.site]);
    if (siteRows.length === 0) {
      const { rowCount } = await c.query('SELECT 1 FROM site WHERE name = $1', [batch.site]);
      if (rowCount === 0) throw new AppError(404, 'not_found', `Site "${batch.site}" is not registered at central`);
      return BUSY;
    }
    if (batch.after_batch && siteRows[0]!.last_batch_id !== batch.after_batch.toLowerCase()) return WAIT;
    if (replica && (await positionId(c, replica.pos)) !== replica.id) {
      throw new AppError(409, 'central_went_back',
        `Central's change feed does not have position ${replica.pos} as this edge read it: central's database went back in time ` +
        '(restored from a backup, or failed over to a copy that was behind). Nothing of this batch was applied; ' +
        'the edge first sends again what central may have lost', { position: replica.pos });
    }
    prepared = await scopeToSite(c, batch.site, prepared);
    const raw = await applyPrepared(c, batch.site, appliedBy, prepared.filter((p): p is PreparedTransaction => !(p instanceof AppError)));
    let next = 0;
    let maxApplied = 0;
    const results: SyncItemResult[] = txs.map((tx, i) => {
      const p = prepared[i]!;
      const r: RawResult | AppError = p instanceof AppError ? p : raw[next++]!;
      const base = { transaction_id: tx.transaction_id, seq: tx.seq };
      if (r instanceof AppError || r.result === 'rejected') {
        const err = r instanceof AppError ? r : rejection(r, tx.steps);
        if (!(r instanceof AppError) && r.sqlstate === 'OPSDB') {
          log.error({ site: batch.site, transaction_id: tx.transaction_id, seq: tx.seq }, 'transaction id reused with a different payload: refused');
        }
        return { ...base, result: 'rejected', code: err.code, reason: err.message, details: err.details ?? undefined };
      }
      if (r.result === 'applied') maxApplied = Math.max(maxApplied, tx.seq);
      return { ...base, result: r.result };
    });
    await c.query(
      // The highest seq applied. A batch of only older seqs (transactions an operator retried) does not
      // move it back; an edge whose own counter is below it was rebuilt and counts again from 1, and is
      // followed down. An edge that reports no backlog (older builds) is followed as it sends.
      `UPDATE site SET last_contact_at = now(),
              last_applied_seq = CASE WHEN $2 <= 0 THEN last_applied_seq
                                      WHEN $5::bigint IS NULL OR $5::bigint < last_applied_seq THEN $2
                                      ELSE GREATEST(last_applied_seq, $2) END,
              reported_backlog = coalesce($3, reported_backlog), last_batch_id = $4 WHERE name = $1`,
      [batch.site, maxApplied, batch.backlog ? JSON.stringify(batch.backlog) : null, batch.batch_id?.toLowerCase() ?? null,
        batch.backlog?.last_seq ?? null],
    );
    return { results, ...(await commitPosition(c)) };
  });
}

/**
 * How long after two edge processes were last seen taking turns as one site
 * central still reports them: a live edge is heard from every few seconds,
 * so a second one that keeps running keeps the report alive.
 */
export const EDGE_CONFLICT_WINDOW_S = 300;

/**
 * Notes which edge process (`edgeId`, random per start) spoke for the site.
 * A new process replacing the last one (a restart) is not a conflict; one
 * that spoke before speaking again after another took over, while that
 * other is alive, is: two (or more) daemons run with this SITE_NAME. The
 * site keeps the processes heard within EDGE_CONFLICT_WINDOW_S. Returns the
 * id of another process heard within it while a conflict was seen within
 * it, else null.
 */
export async function noteEdge(pool: Pool, site: string, edgeId: string, log: Logger, sentAt: number | null = null): Promise<string | null> {
  const windowMs = EDGE_CONFLICT_WINDOW_S * 1000;
  const out = await withTransaction(pool, async (c) => {
    const { rows } = await c.query<{ edge_id: string | null; recent_edges: Record<string, number> | null; edge_conflict_at: Date | null }>(
      // SKIP LOCKED: a batch of the site being applied holds the row; this request is not held up behind it
      // (its edge is heard again within seconds, and noted then).
      'SELECT edge_id, recent_edges, edge_conflict_at FROM site WHERE name = $1 FOR NO KEY UPDATE SKIP LOCKED', [site],
    );
    const now = Date.now();
    const row = rows[0];
    if (!row) {
      // Held by a batch: not noted this time, but the answer must still tell a conflict seen lately, or
      // the edge would take the header's absence for "no conflict any more".
      const { rows: seen } = await c.query<{ recent_edges: Record<string, number> | null; edge_conflict_at: Date | null }>(
        'SELECT recent_edges, edge_conflict_at FROM site WHERE name = $1', [site]);
      const at = seen[0]?.edge_conflict_at;
      if (!at || now - at.getTime() >= windowMs) return null;
      const other = Object.entries(seen[0]!.recent_edges ?? {}).filter(([id, t]) => id !== edgeId && now - t < windowMs).sort((a, b) => b[1] - a[1])[0]?.[0];
      return other ? { other, began: false } : null;
    }
    const recent: Record<string, number> = {};
    for (const [id, at] of Object.entries(row.recent_edges ?? {})) if (now - at < windowMs) recent[id] = at;
    const current = row.edge_id;
    const back = current !== null && current !== edgeId && recent[edgeId] !== undefined && recent[current] !== undefined;
    // A request made before the current process started (UUIDv7 ids carry their start time) comes from a
    // process that was replaced: one still on its way when its edge restarted. Neither a conflict, nor
    // the site's edge again.
    const currentStart = current ? uuidv7Time(current) : null;
    if (back && sentAt !== null && currentStart !== null && sentAt < currentStart) return null;
    const was = row.edge_conflict_at && now - row.edge_conflict_at.getTime() < windowMs ? row.edge_conflict_at : null;
    const conflictAt = back ? new Date(now) : was;
    recent[edgeId] = now;
    await c.query('UPDATE site SET edge_id = $2, recent_edges = $3, edge_conflict_at = coalesce($4, edge_conflict_at) WHERE name = $1', [
      site, edgeId, JSON.stringify(recent), conflictAt,
    ]);
    if (!conflictAt) return null;
    const other = Object.entries(recent).filter(([id]) => id !== edgeId).sort((a, b) => b[1] - a[1])[0]?.[0] ?? null;
    return other ? { other, began: back && !was } : null;
  });
  if (!out) return null;
  if (out.began) {
    log.warn({ site, edge_id: edgeId, other_edge_id: out.other },
      `two edge daemons are syncing as site "${site}": find the one that should not run with SITE_NAME=${site} and stop it`);
  }
  return out.other;
}

/** The time (ms) in a UUIDv7's first 48 bits; null for another kind of UUID (an edge from before v7 ids). */
function uuidv7Time(id: string): number | null {
  if (id[14] !== '7') return null;
  return parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}

/**
 * Records that a site was in touch (a pull), with the backlog it reported;
 * not while a batch of the site holds its row (that batch records both), so
 * a pull never waits behind a batch.
 */
export async function touchSite(pool: Pool, site: string, backlog: Backlog | null): Promise<void> {
  await pool.query(
    `UPDATE site SET last_contact_at = now(), reported_backlog = coalesce($2, reported_backlog)
      WHERE name = (SELECT name FROM site WHERE name = $1 FOR NO KEY UPDATE SKIP LOCKED)`,
    [site, backlog ? JSON.stringify(backlog) : null],
  );
}

const ROW_SQL: Record<string, string> = {
  instrument: 'SELECT id, name, description, is_active FROM instrument WHERE id = ANY($1::int[])',
  instrument_module: 'SELECT id, instrument_id, name, description FROM instrument_module WHERE id = ANY($1::int[])',
  instrument_module_configuration:
    'SELECT id, instrument_module_id, name, description, parameters FROM instrument_module_configuration WHERE id = ANY($1::int[])',
  observing_program: 'SELECT id, name, description, is_active FROM observing_program WHERE id = ANY($1::int[])',
  obs_unit: 'SELECT id, name, observing_program_id, instrument_module_configuration_id, description, is_active FROM obs_unit WHERE id = ANY($1::int[])',
  executed_obs_unit: `SELECT id, obs_unit_id, site, status, start_time, end_time, mean_pwv, mean_elevation,
    instrument_module_configuration_id, created_at, updated_at FROM executed_obs_unit WHERE id = ANY($1::uuid[])`,
  raw_data_package: 'SELECT id, name, executed_obs_unit_id, state, size, checksum, created_at, updated_at FROM raw_data_package WHERE id = ANY($1::uuid[])',
  raw_data_file: `SELECT id, name, path, size, checksum, file_type, executed_obs_unit_id, raw_data_package_id, created_at
    FROM raw_data_file WHERE id = ANY($1::uuid[])`,
  user_preference: 'SELECT user_id, preferences, updated_at FROM user_preference WHERE user_id = ANY($1::int[])',
  // A site sees human accounts and its own site account, never another site's.
  user: `SELECT id, username, email, full_name, is_active, site_name, created_at FROM "user"
    WHERE id = ANY($1::int[]) AND (site_name IS NULL OR site_name = $2)`,
  user_role: `SELECT u.id AS user_id, coalesce(array_agg(r.name ORDER BY r.name) FILTER (WHERE r.name IS NOT NULL), '{}') AS roles
    FROM "user" u LEFT JOIN user_role ur ON ur.user_id = u.id LEFT JOIN role r ON r.id = ur.role_id
    WHERE u.id = ANY($1::int[]) AND (u.site_name IS NULL OR u.site_name = $2) GROUP BY u.id`,
  api_token: `SELECT t.id, t.user_id, t.name, t.token_hash, t.prefix, t.scopes, t.expires_at, t.is_active, t.created_at
    FROM api_token t JOIN "user" u ON u.id = t.user_id WHERE t.id = ANY($1::int[]) AND (u.site_name IS NULL OR u.site_name = $2)`,
};
const KEY_OF: Record<string, string> = { user_preference: 'user_id', user_role: 'user_id' };
const wire = (r: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v]));

/**
 * Of these keys of `table` with no row visible to the site, those of account
 * rows that still exist (another site's account, its role list or token):
 * hidden, not deleted. Rows of other tables are never hidden.
 */
async function hiddenAccountKeys(pool: Pool, table: string, missing: string[]): Promise<Set<string>> {
  const sql = table === 'user' || table === 'user_role' ? 'SELECT id FROM "user" WHERE id = ANY($1::int[])'
    : table === 'api_token' ? 'SELECT id FROM api_token WHERE id = ANY($1::int[])' : null;
  if (sql === null || missing.length === 0) return new Set();
  const { rows } = await pool.query<{ id: number }>(sql, [missing]);
  return new Set(rows.map((r) => String(r.id)));
}

/** The most feed positions one page looks at, so a page's work stays bounded when most positions hold nothing for the site. */
const MAX_SCANNED_POSITIONS = 4096;

/**
 * What a feed position is in this database's history: the transaction that took it and when. After a
 * restore from a backup, the same position is given out again, to another transaction at a later time.
 */
async function positionId(pool: Pool | Client, pos: number): Promise<string | null> {
  if (pos === 0) return null;
  const { rows } = await pool.query<{ id: string }>(
    `SELECT ${POSITION_ID_SQL} AS id FROM feed_tx f WHERE pos = $1`,
    [pos],
  );
  return rows[0]?.id ?? null;
}

/**
 * A page of the change feed after `since`: whole positions, about `maxRows` rows, at least one position.
 * `sinceId`: the `position_id` the edge read with `since`; when central's position `since` is another
 * one now (or gone), the page is empty and says `since_unknown`.
 */
export async function readChanges(pool: Pool, site: string, since: number, maxRows: number, sinceId: string | null = null): Promise<ChangesPage> {
  // The head first: every position up to it is committed, so everything up to it is visible to the
  // query below. Read after, a commit landing in between could be skipped by an empty page.
  const { rows: cur } = await pool.query<{ pos: string }>('SELECT pos FROM feed_position WHERE id = 1');
  const current = Number(cur[0]!.pos);
  // A head below `since` says the same, and an older edge understands it; this also sees a feed that
  // went back and then went past the edge's position again before it asked.
  // Looked up once: an idle edge's page ends where it began, and carries the same id back.
  const sinceIdHere = sinceId !== null && since > 0 ? await positionId(pool, since) : undefined;
  if (sinceIdHere !== undefined && sinceIdHere !== sinceId) {
    return { changes: [], position: since, more: true, head: current, since_unknown: true };
  }
  // Then whole positions in order until about maxRows visible rows. Positions are read a few at a
  // time, each counted through change_log's xid index: the work is the page's, however long the feed
  // after `since` (counting all of it made a long catch-up quadratic).
  let upTo = since;
  let total = 0;
  let after = since;
  let scanned = 0;
  let exhausted = false;
  scan: for (let chunk = 8; ; chunk = Math.min(chunk * 2, 1024, MAX_SCANNED_POSITIONS - scanned)) {
    const { rows } = await pool.query<{ pos: string; n: number }>(
      `SELECT f.pos, (SELECT count(*) FROM change_log c WHERE c.xid = f.xid AND (c.site IS NULL OR c.site = $2))::int AS n
         FROM feed_tx f WHERE f.pos > $1 ORDER BY f.pos LIMIT $3`,
      [after, site, chunk],
    );
    for (const r of rows) {
      if (total > 0 && total + r.n > maxRows) break scan;
      total += r.n;
      upTo = Number(r.pos);
    }
    scanned += rows.length;
    if (rows.length < chunk) {
      exhausted = true;
      break;
    }
    // Positions with nothing for this site (other sites' writes) are stepped over, a bounded number per page.
    if (scanned >= MAX_SCANNED_POSITIONS) break;
    after = upTo;
  }
  // Nothing visible up to a committed position: the edge may still advance to it.
  if (exhausted && total === 0) upTo = Math.max(upTo, current);
  // A page that stopped before the end of the feed says so, even past `current` (positions that committed meanwhile).
  const more = !exhausted || upTo < current;
  const position_id = (upTo === since && sinceIdHere !== undefined ? sinceIdHere : await positionId(pool, upTo)) ?? undefined;
  if (total === 0) return { changes: [], position: upTo, more, head: current, position_id };

  const { rows: keys } = await pool.query<{ table_name: string; row_key: string }>(
    `SELECT DISTINCT c.table_name, c.row_key FROM feed_tx f JOIN change_log c ON c.xid = f.xid
      WHERE f.pos > $1 AND f.pos <= $2 AND (c.site IS NULL OR c.site = $3)`,
    [since, upTo, site],
  );
  const byTable = new Map<string, string[]>();
  for (const k of keys) {
    const list = byTable.get(k.table_name);
    if (list) list.push(k.row_key);
    else byTable.set(k.table_name, [k.row_key]);
  }
  const changes: Change[] = [];
  // Parents before children, so an edge can apply in order.
  for (const table of Object.keys(ROW_SQL)) {
    const wanted = byTable.get(table);
    if (!wanted) continue;
    const { rows } = await pool.query(ROW_SQL[table]!, table === 'user' || table === 'user_role' || table === 'api_token' ? [wanted, site] : [wanted]);
    const found = new Map(rows.map((r) => [String(r[KEY_OF[table] ?? 'id']), wire(r)]));
    // A key with no row is a delete (row: null), except an account row hidden from this site (another
    // site's account), which is simply not sent: one that still exists at central.
    const hidden = await hiddenAccountKeys(pool, table, wanted.filter((k) => !found.has(k)));
    for (const key of wanted) {
      const row = found.get(key) ?? null;
      if (row === null && hidden.has(key)) continue;
      changes.push({ table, key, row });
    }
  }
  return { changes, position: upTo, more, head: current, position_id };
}

export interface SiteRow {
  name: string;
  description: string | null;
  created_at: Date;
  last_contact_at: Date | null;
  last_applied_seq: number;
  reported_backlog: Backlog | null;
  edge_id: string | null;
  edge_conflict_at: Date | null;
}

export function siteInfo(r: SiteRow) {
  const b = r.reported_backlog;
  return {
    name: r.name,
    description: r.description,
    created_at: r.created_at.toISOString(),
    last_contact_at: r.last_contact_at?.toISOString() ?? null,
    last_applied_seq: Number(r.last_applied_seq),
    seconds_since_contact: r.last_contact_at ? Math.round((Date.now() - r.last_contact_at.getTime()) / 100) / 10 : null,
    reported_backlog: b,
    lag_transactions: b ? b.pending + b.in_flight + b.blocked + b.failed : null,
    edge_id: r.edge_id,
    edge_conflict_at: r.edge_conflict_at?.toISOString() ?? null,
    edge_conflict: !!r.edge_conflict_at && Date.now() - r.edge_conflict_at.getTime() < EDGE_CONFLICT_WINDOW_S * 1000,
  };
}

/**
 * Central has no buffer of its own; its /buffer-stats (admin) adds up what
 * the edges last reported, and its own apply rate over the last minute.
 */
export async function centralBufferStats(pool: Pool) {
  const sites = await listSites(pool);
  const sum = (k: keyof Backlog) => sites.reduce((n, s) => n + (s.reported_backlog ? Number(s.reported_backlog[k]) : 0), 0);
  const { rows } = await pool.query(
    `SELECT count(*)::int AS n, max(applied_at) AS last FROM applied_transaction WHERE applied_at > now() - interval '60 seconds'`,
  );
  return {
    pending_transactions: sum('pending'),
    failed_transactions: sum('failed'),
    processing_rate: Math.round((rows[0].n / 60) * 1000) / 1000,
    in_flight_transactions: sum('in_flight'),
    blocked_transactions: sum('blocked'),
    oldest_pending_age_seconds: Math.max(0, ...sites.map((s) => s.reported_backlog?.oldest_pending_age_seconds ?? 0)),
    pending_bytes: sum('pending_bytes'),
    last_sync_at: sites.map((s) => s.last_contact_at).filter((x): x is string => !!x).sort().at(-1) ?? null,
    backend: 'postgresql' as const,
    sites: sites.map((s) => ({ name: s.name, last_contact_at: s.last_contact_at, last_applied_seq: s.last_applied_seq, reported_backlog: s.reported_backlog })),
  };
}

export async function listSites(pool: Pool) {
  const { rows } = await pool.query<SiteRow>(`SELECT name, description, created_at, last_contact_at, last_applied_seq, reported_backlog, edge_id, edge_conflict_at
     FROM site ORDER BY name`);
  return rows.map(siteInfo);
}

/**
 * Registers a site and its site account (user `site-NAME`) in one
 * transaction; returns the site token (shown once). A site of that name, or
 * a user named `site-NAME`, already there: 409 and nothing is created.
 */
export async function createSite(pool: Pool, name: string, description: string | null) {
  return withTransaction(pool, async (c) => {
    const inserted = await c.query<SiteRow>(
      `INSERT INTO site (name, description) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING
       RETURNING name, description, created_at, last_contact_at, last_applied_seq, reported_backlog, edge_id, edge_conflict_at`,
      [name, description],
    );
    if (!inserted.rows[0]) throw new ConflictError(`Site "${name}" already exists`);
    const account = await createSiteAccount(c, name);
    return { ...siteInfo(inserted.rows[0]), token: account.token };
  });
}
