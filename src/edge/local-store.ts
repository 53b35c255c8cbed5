import { closeSync, existsSync, fsyncSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import { WAL_SIZE_LIMIT, type BufferedTransaction, type TransactionBuffer } from './buffer/buffer.js';
import type { Step } from '../lib/api/transaction.js';
import type { ExecutedObsUnitFilter } from '../lib/api/schemas.js';
import type { Change } from '../lib/api/sync-schemas.js';
import { decodeCursor, encodeCursor } from '../lib/cursor.js';
import { keyedStatements, statementCache } from './statements.js';
import type { HeldChange, ReplicaSink } from '../sync/replica.js';
import { noteSynced, noteUnsynced } from './lost-seqs.js';
import { withFileProblem } from './data-dir-lock.js';
import { ENTITY_COLUMNS, ENTITY_KEY, LOCAL_SCHEMA } from './local-schema.js';

type Row = Record<string, unknown>;
const REFERENCE_TABLES = ['instrument', 'instrument_module', 'instrument_module_configuration', 'observing_program', 'obs_unit'] as const;
export type ReferenceTable = (typeof REFERENCE_TABLES)[number];
const BOOLEAN_COLUMNS = new Set(['is_active']);
const JSON_COLUMNS = new Set(['parameters', 'preferences']);

/** SQLite values → wire values: 0/1 → booleans, JSON text → objects. */
function wire(r: Row): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(r)) {
    if (BOOLEAN_COLUMNS.has(k)) out[k] = v === 1;
    else if (JSON_COLUMNS.has(k) && typeof v === 'string') out[k] = JSON.parse(v);
    else out[k] = v;
  }
  return out;
}

/** Columns a buffered create fills with the transaction's time when it does not set them. */
const STAMPED = new Set(['created_at', 'updated_at']);

const toSql = (v: unknown): unknown => (v !== null && typeof v === 'object' ? JSON.stringify(v) : typeof v === 'boolean' ? Number(v) : v);

export class LocalGapError extends Error {}

/** Brings the local store up to the buffer: applies every held transaction after the last applied one. */
export async function catchUp(buffer: TransactionBuffer, local: LocalStore): Promise<number> {
  let n = 0;
  for (;;) {
    const batch = await buffer.list({ after_seq: local.appliedSeq(), limit: 1000 });
    if (batch.length === 0) return n;
    // Synced transactions compacted away leave gaps the replica already covers; step over them.
    if (batch[0]!.seq > local.appliedSeq() + 1) local.setMeta('applied_seq', String(batch[0]!.seq - 1));
    local.applyBuffered(batch);
    n += batch.length;
  }
}

/** What became of applying a durable group to the local store (both null: applied). */
export interface LocalApply {
  /** The writes are durable but not readable here yet; a later group or the next start catches up. */
  error: string | null;
  /** The apply failed once, and the catch-up from the buffer then applied them: readable, worth a warning. */
  recovered: string | null;
}

/**
 * Read-your-writes after a group commit: applies `stored` to the local view.
 * After a gap or a one-off failure, it catches up from the buffer instead. If
 * another process holds local.db past the busy timeout, it does not wait a
 * second time: that would stall every write behind this one.
 */
export async function applyOrCatchUp(buffer: TransactionBuffer, local: LocalStore, stored: BufferedTransaction[]): Promise<LocalApply> {
  try {
    local.applyBuffered(stored);
    return { error: null, recovered: null };
  } catch (err) {
    if (/^SQLITE_BUSY/.test(String((err as { code?: unknown }).code))) {
      return { error: `the local store is locked by another process (${(err as Error).message})`, recovered: null };
    }
    try {
      await catchUp(buffer, local);
      return { error: null, recovered: err instanceof LocalGapError ? null : (err as Error).message };
    } catch (again) {
      return { error: `the local store could not take buffered writes: ${(again as Error).message}`, recovered: null };
    }
  }
}

/** The meta key of the site a DATA_DIR belongs to. */
export const SITE_NAME_KEY = 'site_name';

/**
 * A DATA_DIR belongs to the site whose edge first started on it. Started
 * under another SITE_NAME, an edge would hide what that site has not synced
 * (a Redis buffer's keys carry the name; central refuses another site's
 * transactions), so both the daemon and `opsdb buffer` refuse. Null: no edge
 * has started here yet.
 */
export function siteOfDataDir(localPath: string): string | null {
  if (!existsSync(localPath)) return null;
  const db = new Database(localPath, { fileMustExist: true });
  try {
    const table = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'`).get();
    if (!table) return null;
    const row = db.prepare(`SELECT value FROM meta WHERE key = ?`).get(SITE_NAME_KEY) as { value: string } | undefined;
    return row?.value ?? null;
  } finally {
    db.close();
  }
}

export function checkSiteOfDataDir(dataDir: string, localPath: string, siteName: string): void {
  const owner = siteOfDataDir(localPath);
  if (owner === null || owner === siteName) return;
  throw new SiteMismatchError(
    `DATA_DIR ${dataDir} belongs to site "${owner}" (recorded when its edge first started), but SITE_NAME is "${siteName}". ` +
      `Starting under another name would hide what "${owner}" has not synced yet. Set SITE_NAME=${owner}; to rename the site, ` +
      `let it drain first (opsdb buffer wait-empty), then start the new name on an empty DATA_DIR.`,
  );
}

export class SiteMismatchError extends Error {}

/**
 * The edge's local view of the data: replica rows from central plus buffered
 * writes applied on top (see local-schema.ts). Synchronous by design: every
 * method runs to completion without awaiting, so no transaction spans an await.
 */
export class LocalStore implements ReplicaSink {
  readonly db: Database.Database;
  private readonly sql: (text: string) => Database.Statement;
  /** Row writes by table and set of columns, with positional parameters: they run for every row. */
  private readonly byShape: (key: string, build: () => string) => Database.Statement;

  constructor(readonly path: string) {
    try {
      this.db = new Database(path);
      this.db.pragma('journal_mode = WAL');
    } catch (err) {
      throw withFileProblem(path, err);
    }
    this.sql = statementCache(this.db);
    this.byShape = keyedStatements(this.db, 200);
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT}`);
    this.db.exec(LOCAL_SCHEMA);
    this.addCreatedSeq();
    this.readFeedAgainIfBeforeDeletes();
  }

  /**
   * True when this open found a replica made by a build before deletes were applied from the feed
   * (2026-11-26) and set it to read central's feed again from the start.
   */
  feedReadAgain = false;

  /**
   * Builds before 2026-11-26 skipped the feed's deletes (`row: null`): a token or an observation deleted
   * at central stayed at the edge, and an upgraded edge, going on from where it was, never saw those
   * deletes again. Such a replica reads the feed again from the start, once (rows are upserts; deletes
   * come as they are now). Stores made since say so in `meta` (a store made between that build and this
   * one reads it again too, harmlessly).
   */
  private readFeedAgainIfBeforeDeletes(): void {
    // Looked at first without a write lock: every open after the first finds the mark.
    if (this.getMeta('feed_deletes_applied') !== null) return;
    this.db.transaction(() => {
      if (this.getMeta('feed_deletes_applied') !== null) return;
      if (this.position() > 0) {
        this.setMeta('replica_position', '0');
        this.deleteMeta('replica_position_id');
        this.sql('DELETE FROM held_change').run();
        this.feedReadAgain = true;
      }
      this.setMeta('feed_deletes_applied', '1');
    }).immediate();
  }

  /**
   * Adds `created_seq` to a local store made before it existed. A row's
   * creating transaction was not recorded then: its last local writer
   * (`origin_seq`) stands in, which is what sync_status showed before.
   */
  private addCreatedSeq(): void {
    for (const table of Object.keys(ENTITY_KEY)) {
      const cols = this.db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[];
      if (cols.some((c) => c.name === 'created_seq')) continue;
      try {
        this.db.transaction(() => {
          this.db.exec(`ALTER TABLE ${table} ADD COLUMN created_seq INTEGER`);
          this.db.exec(`UPDATE ${table} SET created_seq = origin_seq WHERE origin_seq IS NOT NULL`);
        }).immediate();
      } catch (err) {
        // Another connection (the storage thread, `opsdb buffer`) added it first.
        if (!/duplicate column name/.test((err as Error).message)) throw err;
      }
    }
  }

  getMeta(key: string): string | null {
    return (this.sql('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value ?? null;
  }

  deleteMeta(key: string): void {
    this.sql('DELETE FROM meta WHERE key = ?').run(key);
  }

  setMeta(key: string, value: string): void {
    this.sql('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  /** Highest buffer seq whose steps are applied here. */
  appliedSeq(): number {
    return Number(this.getMeta('applied_seq') ?? 0);
  }

  /** True once the replica has received anything from central (or was seeded). */
  hasReferenceData(): boolean {
    // Once the replica has reference data it keeps it. Until then, SQLite is asked again only after
    // something wrote reference rows (a pull or a seed), not on every write.
    if (!this.referenceSeen && this.referenceStale) {
      this.referenceSeen = this.sql('SELECT 1 FROM obs_unit LIMIT 1').get() !== undefined;
      this.referenceStale = false;
    }
    return this.referenceSeen;
  }
  private referenceSeen = false;
  private referenceStale = true;

  /**
   * Applies buffered transactions' steps in seq order; skips those already
   * applied. Refuses to leave a gap (a transaction between the last applied
   * and these that was never applied): the caller then catches up from the
   * buffer with `catchUp`.
   */
  applyBuffered(txs: BufferedTransaction[]): void {
    const first = txs[0]?.seq;
    if (first !== undefined && first > this.appliedSeq() + 1) {
      throw new LocalGapError(`local store applied up to seq ${this.appliedSeq()}, asked to apply from ${first}`);
    }
    const run = this.db.transaction(() => {
      let applied = this.appliedSeq();
      for (const tx of txs) {
        if (tx.seq <= applied) continue;
        for (const step of tx.steps) this.applyStep(step, tx.seq, tx.created_at);
        applied = tx.seq;
      }
      this.setMeta('applied_seq', String(applied));
    });
    run.immediate();
  }

  private applyStep(step: Step, seq: number, at: string): void {
    const table = step.table;
    const cols = ENTITY_COLUMNS[table]!;
    const key = ENTITY_KEY[table]!;
    if (step.op === 'update') {
      if (this.updateRow(step, seq, at) === 0) {
        // Not here yet: kept until the replica brings the row (see applyDeferred).
        this.sql('INSERT OR REPLACE INTO deferred_update (table_name, row_key, seq, step, at) VALUES (?, ?, ?, ?, ?)')
          .run(table, String(step.id), seq, JSON.stringify(step), at);
      }
      return;
    }
    if (step.op === 'bulk_create') for (const data of step.rows) this.insertRow(table, cols, key, data, seq, at);
    else this.insertRow(table, cols, key, { ...step.data, [key]: step.id }, seq, at);
  }

  /** A buffered update's step on its row, as written by transaction `seq` at `at`; returns the rows changed (0: not here). */
  private updateRow(step: Exclude<Step, { op: 'bulk_create' }>, seq: number, at: string): number {
    const table = step.table;
    const cols = ENTITY_COLUMNS[table]!;
    const key = ENTITY_KEY[table]!;
    const sets = Object.keys(step.data).filter((c) => cols.includes(c) && c !== key);
    const stamp = cols.includes('updated_at') ? ', updated_at = @__at' : '';
    const params: Row = { __id: step.id, __seq: seq, __at: at };
    for (const c of sets) params[c] = toSql(step.data[c]);
    return this.sql(`UPDATE ${table} SET ${sets.map((c) => `${c} = @${c}`).join(', ')}${sets.length ? ',' : ''} origin_seq = @__seq${stamp} WHERE ${key} = @__id`)
      .run(params).changes;
  }

  /** Seqs of buffered updates waiting for rows these changes bring (see deferred_update). */
  deferredSeqs(changes: Change[]): number[] {
    if (this.sql('SELECT 1 FROM deferred_update LIMIT 1').get() === undefined) return [];
    const out: number[] = [];
    for (const c of changes) {
      if (!c.row || !ENTITY_KEY[c.table]) continue;
      for (const r of this.sql('SELECT seq FROM deferred_update WHERE table_name = ? AND row_key = ?').all(c.table, c.key) as { seq: number }[]) out.push(r.seq);
    }
    return out;
  }

  /**
   * Read-your-writes for a row that arrives after its update was buffered:
   * the updates it waited for go on top of central's copy, in seq order, but
   * not those in `skip` (synced, so central's copy holds them or what came
   * after them; or discarded, so they never reach central).
   */
  private applyDeferred(table: string, rowKey: string, skip: ReadonlySet<number>): void {
    const rows = this.sql('SELECT seq, step, at FROM deferred_update WHERE table_name = ? AND row_key = ? ORDER BY seq').all(table, rowKey) as { seq: number; step: string; at: string }[];
    if (rows.length === 0) return;
    for (const r of rows) if (!skip.has(r.seq)) this.updateRow(JSON.parse(r.step), r.seq, r.at);
    this.sql('DELETE FROM deferred_update WHERE table_name = ? AND row_key = ?').run(table, rowKey);
  }

  /**
   * Inserts (or, for a row already here, overwrites) one row of a buffered
   * create. The statement for each table and set of columns is built once,
   * with positional parameters: this runs for every row of every write.
   */
  private insertRow(table: string, cols: readonly string[], key: string, data: Row, seq: number, at: string): void {
    const present: string[] = [];
    for (const c of cols) if (data[c] !== undefined || STAMPED.has(c)) present.push(c);
    const stmt = this.byShape(`insert|${table}|${present.join(',')}`, () => {
      const updates = present.filter((c) => c !== key && c !== 'created_at').map((c) => `${c} = excluded.${c}`);
      // A row that is already here keeps the transaction that created it.
      return `INSERT INTO ${table} (${present.join(', ')}, origin_seq, created_seq) VALUES (${present.map(() => '?').join(', ')}, ?, ?)
         ON CONFLICT (${key}) DO UPDATE SET ${[...updates, 'origin_seq = excluded.origin_seq', 'created_seq = coalesce(created_seq, excluded.created_seq)'].join(', ')}`;
    });
    const args: unknown[] = new Array(present.length + 2);
    for (let i = 0; i < present.length; i++) {
      const c = present[i]!;
      args[i] = toSql(data[c] !== undefined ? data[c] : at);
    }
    args[present.length] = seq;
    args[present.length + 1] = seq;
    stmt.run(args);
  }

  /** A local entity row, or null. */
  findRow(table: string, id: string | number): Row | null {
    const key = ENTITY_KEY[table];
    if (!key) return null;
    return (this.sql(`SELECT * FROM ${table} WHERE ${key} = ?`).get(id) as Row | undefined) ?? null;
  }

  referenceExists(table: ReferenceTable, id: number): boolean {
    return this.sql(`SELECT 1 FROM ${table} WHERE id = ?`).get(id) !== undefined;
  }

  userExists(id: number): boolean {
    return this.sql('SELECT 1 FROM user WHERE id = ?').get(id) !== undefined;
  }

  /** Replaces or inserts reference rows (from central's change feed, or a seed file). */
  upsertReference(table: ReferenceTable, rows: Row[]): void {
    if (rows.length === 0) return;
    this.referenceStale = true;
    const run = this.db.transaction(() => {
      for (const r of rows) {
        const cols = Object.keys(r);
        this.sql(`INSERT OR REPLACE INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((c) => `@${c}`).join(', ')})`)
          .run(Object.fromEntries(cols.map((c) => [c, toSql(r[c])])));
      }
    });
    run.immediate();
  }

  // ---- reads ---------------------------------------------------------------

  listReference(table: ReferenceTable, where = '', params: unknown[] = [], limit = -1): Row[] {
    return (this.sql(`SELECT * FROM ${table} ${where} ORDER BY id LIMIT ?`).all(...params, limit) as Row[]).map(wire);
  }

  listExecutedObsUnits(q: ExecutedObsUnitFilter): { items: Row[]; nextCursor: string | null } {
    const where: string[] = [];
    const params: unknown[] = [];
    if (q.obs_unit_id !== undefined) (where.push('obs_unit_id = ?'), params.push(q.obs_unit_id));
    if (q.status !== undefined) (where.push('status = ?'), params.push(q.status));
    if (q.site !== undefined) (where.push('site = ?'), params.push(q.site));
    if (q.start_after !== undefined) (where.push('start_time > ?'), params.push(q.start_after));
    if (q.start_before !== undefined) (where.push('start_time < ?'), params.push(q.start_before));
    if (q.cursor !== undefined) {
      const k = decodeCursor(q.cursor);
      where.push('(start_time < ? OR (start_time = ? AND id < ?))');
      params.push(k.t, k.t, k.id);
    }
    const rows = this.sql(
        `SELECT * FROM executed_obs_unit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY start_time DESC, id DESC LIMIT ?`,
      )
      .all(...params, q.limit + 1) as Row[];
    const items = rows.slice(0, q.limit);
    const last = items.at(-1);
    return {
      items,
      nextCursor: rows.length > q.limit && last ? encodeCursor({ t: last.start_time as string, id: last.id as string }) : null,
    };
  }

  rowsWhere(table: 'raw_data_package' | 'raw_data_file', column: string, value: string): Row[] {
    return this.sql(`SELECT * FROM ${table} WHERE ${column} = ? ORDER BY created_at, id`).all(value) as Row[];
  }

  transferOverview(): Row {
    return this.sql(
        `SELECT (SELECT count(*) FROM raw_data_package) AS total_packages,
                (SELECT count(*) FROM data_transfer WHERE status = 'pending') AS pending_transfers,
                (SELECT count(*) FROM data_transfer WHERE status = 'active') AS active_transfers,
                (SELECT count(*) FROM data_transfer WHERE status = 'completed') AS completed_transfers,
                (SELECT count(*) FROM data_transfer WHERE status = 'failed') AS failed_transfers,
                round(coalesce((SELECT sum(size) FROM raw_data_package), 0) / 1e9, 3) AS total_data_size_gb`,
      )
      .get() as Row;
  }

  // ---- replica (the change feed from central) --------------------------------

  /**
   * Records seqs as synced and puts everything this store holds on disk:
   * the sync engine calls it before compacting them out of the buffer. The
   * store commits with synchronous=NORMAL (no fsync per commit), so without
   * this a power cut could keep the compaction (the buffer fsyncs) and lose
   * the rows and central's copy the compaction relied on: a synced record
   * gone at the edge until the link came back.
   */
  noteSynced(seqs: readonly number[]): void {
    noteSynced(this, seqs);
    this.flushToDisk();
  }

  /** The reverse, for synced transactions central lost and then refused (see noteUnsynced): before the buffer moves them. */
  noteUnsynced(seqs: readonly number[]): void {
    noteUnsynced(this, seqs);
    this.flushToDisk();
  }

  /** fsync of the WAL and the database file: every commit so far survives a power cut. */
  flushToDisk(): void {
    for (const file of [`${this.path}-wal`, this.path]) {
      let fd: number;
      try {
        fd = openSync(file, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // no WAL right now: nothing in it
        throw err;
      }
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
  }

  /** The change-feed position applied so far. */
  position(): number {
    return Number(this.getMeta('replica_position') ?? 0);
  }

  /** What central said that position is in its history (its `position_id`). */
  positionId(): string | null {
    return this.getMeta('replica_position_id');
  }

  originSeqs(changes: Change[]): Map<string, number> {
    const out = new Map<string, number>();
    for (const c of changes) {
      if (!ENTITY_KEY[c.table]) continue;
      const origin = this.originOf(c.table, c.key);
      if (origin !== null) out.set(`${c.table}:${c.key}`, origin);
    }
    return out;
  }

  /** Applies a page of the change feed and its position in one transaction. */
  apply(changes: Change[], position: number, keep: ReadonlySet<string>, origins: ReadonlyMap<string, number>, skipDeferred: ReadonlySet<number> = new Set(), positionId: string | null = null): void {
    this.referenceStale = true;
    this.db.transaction(() => {
      // The feed read again from an earlier position (central went back in time): what was held back came
      // from a history central no longer has. Reading the feed again holds back what still applies.
      if (position < this.position()) this.sql('DELETE FROM held_change').run();
      // Almost always none: then no row of the page looks for one.
      const deferred = this.sql('SELECT 1 FROM deferred_update LIMIT 1').get() !== undefined;
      let held = this.sql('SELECT 1 FROM held_change LIMIT 1').get() !== undefined;
      for (const c of changes) {
        const k = `${c.table}:${c.key}`;
        const key = ENTITY_KEY[c.table];
        if (keep.has(k)) {
          if (key) held = this.hold(c, origins.get(k)!);
          continue;
        }
        if (key) {
          const now = this.originOf(c.table, c.key);
          if (now !== null && now !== origins.get(k)) {
            held = this.hold(c, now);
            continue;
          }
          if (held) this.sql('DELETE FROM held_change WHERE table_name = ? AND row_key = ?').run(c.table, c.key);
        }
        this.applyChange(c);
        if (deferred && key && c.row) this.applyDeferred(c.table, c.key, skipDeferred);
      }
      this.setMeta('replica_position', String(position));
      if (positionId === null) this.deleteMeta('replica_position_id');
      else this.setMeta('replica_position_id', positionId);
      this.setMeta('last_pull_at', new Date().toISOString());
    }).immediate();
  }

  /** Keeps central's change `c` of a row whose local change `originSeq` stands (see held_change). */
  private hold(c: Change, originSeq: number): true {
    // Central's newest change; the earliest local change that held one back (a later update must not let
    // it go while that one still stands).
    this.sql(`INSERT INTO held_change (table_name, row_key, origin_seq, change) VALUES (?, ?, ?, ?)
              ON CONFLICT (table_name, row_key) DO UPDATE SET change = excluded.change, origin_seq = min(origin_seq, excluded.origin_seq)`)
      .run(c.table, c.key, originSeq, JSON.stringify(c));
    return true;
  }

  /**
   * Central's changes held back by a local change (held_change): the local
   * change that held it back (`heldBy`), and the row's last local change now
   * (`origin`; null: the row is central's copy again, or gone).
   */
  heldChanges(): HeldChange[] {
    const rows = this.sql('SELECT table_name, row_key, origin_seq FROM held_change').all() as { table_name: string; row_key: string; origin_seq: number }[];
    return rows.map((r) => ({ table: r.table_name, key: r.row_key, heldBy: r.origin_seq, origin: this.originOf(r.table_name, r.row_key) }));
  }

  /** The seq of the last local change of a row (null: it is central's copy, or not here). */
  private originOf(table: string, rowKey: string): number | null {
    const r = this.sql(`SELECT origin_seq FROM ${table} WHERE ${ENTITY_KEY[table]!} = ?`).get(rowKey) as { origin_seq: number | null } | undefined;
    return r?.origin_seq ?? null;
  }

  /**
   * Settles held changes: those in `release` (no local change of the row
   * stands any more) are put in place, so the row is central's copy again, or
   * goes if central deleted it; those in `drop` are forgotten. Each only if
   * the row's last local change is still `origin` (a newer local write keeps
   * it held).
   */
  settleHeld(release: readonly HeldChange[], drop: readonly HeldChange[]): void {
    this.db.transaction(() => {
      for (const [list, put] of [[release, true], [drop, false]] as const) {
        for (const h of list) {
          if (this.originOf(h.table, h.key) !== h.origin) continue;
          const c = this.sql('SELECT change FROM held_change WHERE table_name = ? AND row_key = ?').get(h.table, h.key) as { change: string } | undefined;
          if (!c) continue;
          if (put) this.applyChange(JSON.parse(c.change) as Change);
          this.sql('DELETE FROM held_change WHERE table_name = ? AND row_key = ?').run(h.table, h.key);
        }
      }
    }).immediate();
  }

  /** Inserts or overwrites a row from the feed; one statement per table and column set, positional parameters. */
  private upsert(table: string, key: string, row: Row, keepColumns: string[] = []): void {
    const cols = Object.keys(row);
    const stmt = this.byShape(`upsert|${table}|${cols.join(',')}|${keepColumns.join(',')}`, () => {
      const updates = cols.filter((c) => c !== key && !keepColumns.includes(c)).map((c) => `${c} = excluded.${c}`);
      return `INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})
       ON CONFLICT (${key}) DO ${updates.length ? `UPDATE SET ${updates.join(', ')}` : 'NOTHING'}`;
    });
    const args: unknown[] = new Array(cols.length);
    for (let i = 0; i < cols.length; i++) args[i] = toSql(row[cols[i]!]);
    stmt.run(args);
  }

  private applyChange(c: Change): void {
    const row = c.row;
    if (c.table === 'user_role') {
      const userId = Number(c.key);
      this.sql('DELETE FROM user_role WHERE user_id = ?').run(userId);
      for (const role of (row?.roles as string[] | undefined) ?? []) this.sql('INSERT INTO user_role (user_id, role) VALUES (?, ?)').run(userId, role);
      return;
    }
    if (c.table === 'user') {
      if (!row) {
        // Deleted at central: its tokens and roles go with it (as central's ON DELETE CASCADE did).
        const id = Number(c.key);
        this.sql('DELETE FROM api_token WHERE user_id = ? AND local = 0').run(id);
        this.sql('DELETE FROM user_role WHERE user_id = ?').run(id);
        this.sql('DELETE FROM user WHERE id = ? AND local = 0').run(id);
        return;
      }
      this.freeUsername(String(row.username), Number(row.id));
      this.upsert('user', 'id', { ...row, local: 0 });
      return;
    }
    if (c.table === 'api_token') {
      if (!row) {
        this.sql('DELETE FROM api_token WHERE id = ? AND local = 0').run(Number(c.key));
        return;
      }
      // A revoked token stays revoked. Revoked here (while the link was down, for a token thought
      // stolen), it must not come back with the next copy from central: a later change of the row, or
      // the whole feed read again after central went back to a backup. Central never revives a token.
      const was = this.sql('SELECT is_active FROM api_token WHERE id = ?').get(Number(c.key)) as { is_active: number } | undefined;
      // Use counts are kept per site; central's copy only says whether the token may be used.
      this.upsert('api_token', 'id', { ...row, local: 0, ...(was?.is_active === 0 ? { is_active: 0 } : {}) }, ['last_used_at', 'usage_count']);
      return;
    }
    const key = ENTITY_KEY[c.table];
    if (key) {
      // Deleted at central; a row with a local change still on its way is kept by the caller (`keep`).
      if (row) this.upsert(c.table, key, { ...row, origin_seq: null });
      else this.sql(`DELETE FROM ${c.table} WHERE ${key} = ?`).run(c.table === 'user_preference' ? Number(c.key) : c.key);
      return;
    }
    if ((REFERENCE_TABLES as readonly string[]).includes(c.table)) {
      if (row) this.upsert(c.table, 'id', row);
      else this.sql(`DELETE FROM ${c.table} WHERE id = ?`).run(Number(c.key));
    }
  }

  /**
   * A central account takes its name here. Another row holding it steps
   * aside under a name nobody has: a local account becomes `name@local` (or
   * `name@local2`, …), and a central one (renamed or deleted at central,
   * its own change not here yet) `name@stale-ID` until that change comes.
   * A name already taken must not fail the page: the whole feed, token
   * revocations included, would stop at it for good.
   */
  private freeUsername(name: string, id: number): void {
    const holder = this.sql('SELECT id, local FROM user WHERE username = ? AND id <> ?').get(name, id) as { id: number; local: number } | undefined;
    if (!holder) return;
    const taken = (n: string) => this.sql('SELECT 1 FROM user WHERE username = ?').get(n) !== undefined;
    let next = holder.local ? `${name}@local` : `${name}@stale-${holder.id}`;
    for (let i = 2; taken(next); i++) next = holder.local ? `${name}@local${i}` : `${name}@stale-${holder.id}-${i}`;
    this.sql('UPDATE user SET username = ? WHERE id = ?').run(next, holder.id);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
