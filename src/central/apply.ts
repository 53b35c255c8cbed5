/**
 * Applies transactions to PostgreSQL inside the caller's database
 * transaction. Steps are validated here against the table whitelist, then a
 * whole batch goes to the database in one call. A batch that only creates
 * rows is applied with one INSERT per table (`opsdb_apply_inserts`,
 * migration 008); otherwise, or when that finds a repeat or a failing row,
 * `opsdb_apply_batch` (003/004) applies it
 * transaction by transaction: inbox row first (its unique key makes a
 * repeat a no-op), then every step, each transaction all or nothing.
 */
import { isConnectFailure, type Client } from './db.js';
import { TABLES } from '../lib/api/tables.js';
import type { Step, Transaction } from '../lib/api/transaction.js';
import { AppError, ConflictError, NotFoundError, UnavailableError, ValidationError, packageOfAnotherObservation } from '../lib/errors.js';
import { canonicalJson, sha256Hex } from '../lib/canonical.js';

export type ApplyOutcome = { result: 'applied' | 'duplicate' };

/** What the database function returns for one transaction. */
export type RawResult =
  | { result: 'applied' | 'duplicate' }
  | { result: 'rejected'; sqlstate: string; message: string; detail?: string; constraint?: string; table?: string };

interface PreparedStep {
  step_id: string;
  op: Step['op'];
  table: string;
  key: string;
  cols: string[];
  /** Set updated_at = now() as well. */
  stamp: boolean;
  rows: Record<string, unknown>[];
}

export interface PreparedTransaction {
  transaction_id: string;
  seq: number | null;
  endpoint: string;
  created_at: string;
  hash: string;
  steps: PreparedStep[];
}

const HAS_UPDATED_AT = new Set(['executed_obs_unit', 'raw_data_package', 'user_preference']);
const HAS_CREATED_AT = new Set(['executed_obs_unit', 'raw_data_package', 'raw_data_file']);

export const payloadHash = (tx: Pick<Transaction, 'endpoint' | 'steps'>): string =>
  sha256Hex(canonicalJson({ endpoint: tx.endpoint, steps: tx.steps }));

/**
 * Validates one step's data against its table's columns; returns the step
 * ready for the database, its rows stamped with `at`, the time the
 * transaction was written at its site (migration 009): a row created or
 * updated at the edge a week before the link came back keeps that time.
 */
function prepareStep(step: Step, site: string, index: number, at: string): PreparedStep {
  const spec = TABLES[step.table];
  const where = `steps[${index}] (${step.op} ${step.table})`;
  const input =
    step.op === 'bulk_create' ? step.rows : step.op === 'update' ? [step.data] : [{ ...step.data, [spec.key]: step.id }];
  const schema = step.op === 'update' ? spec.update : spec.create;
  const rows = input.map((row, i) => {
    const r = schema.safeParse(row);
    if (!r.success) {
      const first = r.error.issues[0]!;
      throw new ValidationError(`Invalid ${where}${step.op === 'bulk_create' ? ` row ${i}` : ''}: ${first.path.join('.')}: ${first.message}`, {
        step: step.step_id,
        issues: r.error.issues.map((x) => ({ path: x.path.join('.'), message: x.message })),
      });
    }
    const data = r.data as Record<string, unknown>;
    if (spec.siteColumn && data[spec.siteColumn] !== undefined && data[spec.siteColumn] !== site) {
      throw new AppError(403, 'forbidden', `${where}: ${spec.siteColumn} must be "${site}", the site that sends it`);
    }
    return data;
  });
  const stamps: Record<string, string> = {};
  if (HAS_UPDATED_AT.has(step.table)) stamps.updated_at = at;
  if (step.op === 'update') {
    const cols = Object.keys(rows[0]!);
    if (cols.length === 0) throw new ValidationError(`${where}: nothing to update`);
    return { step_id: step.step_id, op: 'update', table: step.table, key: spec.key, cols, stamp: HAS_UPDATED_AT.has(step.table), rows: [{ ...rows[0], ...stamps, [spec.key]: step.id }] };
  }
  if (HAS_CREATED_AT.has(step.table)) stamps.created_at = at;
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return { step_id: step.step_id, op: step.op, table: step.table, key: spec.key, cols, stamp: HAS_UPDATED_AT.has(step.table), rows: rows.map((r) => ({ ...r, ...stamps })) };
}

/** Throws ValidationError (or 403) for a transaction central will not even try. */
export function prepareTransaction(tx: Transaction): PreparedTransaction {
  // Steps first: the hash walks the whole payload, which must have passed the column schemas.
  const steps = tx.steps.map((s, i) => prepareStep(s, tx.site, i, tx.created_at));
  return { transaction_id: tx.transaction_id, seq: tx.seq, endpoint: tx.endpoint, created_at: tx.created_at, hash: payloadHash(tx), steps };
}

/** The tables a create-only batch writes, parents before the rows that refer to them. */
const INSERT_ORDER = ['executed_obs_unit', 'raw_data_package', 'raw_data_file', 'user_preference'] as const;
/** Columns through which a row refers to a row of another table of INSERT_ORDER. */
const PARENT_REFS = ['executed_obs_unit_id', 'raw_data_package_id'] as const;

/**
 * A batch's rows by table, when inserting them table by table (parents first)
 * gives what applying its transactions one by one in order would: every step
 * creates rows, and no row refers to a row created by a later transaction of
 * the batch, or by a later step of its own transaction (in order, that
 * reference would not exist yet). Else null.
 */
export function insertOnlyRows(txs: PreparedTransaction[]): Record<(typeof INSERT_ORDER)[number], Record<string, unknown>[]> | null {
  const sets = { executed_obs_unit: [], raw_data_package: [], raw_data_file: [], user_preference: [] } as Record<(typeof INSERT_ORDER)[number], Record<string, unknown>[]>;
  /** Where each observation and package of the batch is created: [transaction, step]. */
  const createdAt = new Map<string, [number, number]>();
  for (const [i, tx] of txs.entries()) {
    for (const [j, step] of tx.steps.entries()) {
      if ((step.op !== 'create' && step.op !== 'bulk_create') || !(step.table in sets)) return null;
      for (const row of step.rows) {
        sets[step.table as keyof typeof sets].push(row);
        if (step.table === 'executed_obs_unit' || step.table === 'raw_data_package') createdAt.set(String(row.id).toLowerCase(), [i, j]);
      }
    }
  }
  // In order, a row may refer only to a row created by an earlier step: of an earlier transaction, or earlier in its own.
  for (const [i, tx] of txs.entries()) {
    for (const [j, step] of tx.steps.entries()) {
      for (const row of step.rows) {
        for (const ref of PARENT_REFS) {
          const v = row[ref];
          const at = typeof v === 'string' ? createdAt.get(v.toLowerCase()) : undefined;
          if (at && (at[0] > i || (at[0] === i && at[1] >= j))) return null;
        }
      }
    }
  }
  return sets;
}

export async function applyPrepared(c: Client, site: string, appliedBy: number | null, txs: PreparedTransaction[]): Promise<RawResult[]> {
  if (txs.length === 0) return [];
  const sets = insertOnlyRows(txs);
  if (sets) {
    // One INSERT per table (migration 008); null when a repeat or a failing row needs the path below.
    const inbox = txs.map((t) => ({ transaction_id: t.transaction_id, seq: t.seq, endpoint: t.endpoint, hash: t.hash, created_at: t.created_at }));
    const { rows } = await c.query(
      'SELECT opsdb_apply_inserts($1, $2, $3::jsonb, $4::jsonb, $5::jsonb, $6::jsonb, $7::jsonb) AS r',
      [site, appliedBy, JSON.stringify(inbox), ...INSERT_ORDER.map((t) => JSON.stringify(sets[t]))],
    );
    if (rows[0].r) return rows[0].r as RawResult[];
  }
  const { rows } = await c.query('SELECT opsdb_apply_batch($1, $2, $3::jsonb) AS r', [site, appliedBy, JSON.stringify(txs)]);
  return rows[0].r as RawResult[];
}

/** Maps PostgreSQL data and constraint errors to 4xx; anything else stays as it is (a 500). */
/**
 * The connection to PostgreSQL was lost, could not be made, or the server is going down. node-postgres
 * gives a lost socket and a pool wait that timed out no SQLSTATE, only its own messages, so those are
 * matched too.
 */
function connectionLost(e: { code?: string; message?: string }): boolean {
  if (typeof e.code === 'string') {
    // 08: connection exceptions; 57P: the server shutting down; 53300: too many connections.
    return e.code.startsWith('08') || e.code.startsWith('57P') || e.code === '53300' ||
      ['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH'].includes(e.code);
  }
  return /^Connection terminated|^Client has encountered a connection error|^timeout exceeded when trying to connect/.test(e.message ?? '');
}

/**
 * Waits that were given up, not faults of the request: a deadlock, a serialization failure, a lock not
 * had within lock_timeout, a statement cancelled by statement_timeout. The request wrote nothing.
 */
const BUSY_CODES = new Set(['40P01', '40001', '55P03', '57014']);

/** What the CHECK constraints of 001_initial.sql ask, in words (PostgreSQL's names: table_column_check, table_check). */
const CHECK_RULES: Record<string, string> = {
  executed_obs_unit_check: "end_time is before the observation's start_time",
  executed_obs_unit_status_check: 'status must be one of running, success, failed, aborted, interrupted',
  executed_obs_unit_mean_pwv_check: 'mean_pwv must be 0 or more',
  executed_obs_unit_mean_elevation_check: 'mean_elevation must be between -90 and 90',
  raw_data_package_name_check: 'name must be 1 to 255 characters',
  raw_data_package_state_check: 'state must be open or finalized',
  raw_data_package_size_check: 'size must be 0 or more',
  raw_data_file_name_check: 'name must be 1 to 255 characters',
  raw_data_file_size_check: 'size must be 0 or more',
  user_preference_preferences_check: 'preferences must be a JSON object',
};

/** The error answered in place of `cause`, which the request's log line keeps. */
function withCause(cause: unknown, answered: AppError): AppError {
  answered.cause = cause;
  return answered;
}

export function mapPgError(err: unknown, step?: Step): unknown {
  const e = err as { code?: string; constraint?: string; detail?: string; table?: string; column?: string; message?: string };
  if (!e || err instanceof AppError) return err;
  if (isConnectFailure(err) && !connectionLost(e)) {
    // What PostgreSQL said (a database name, a user) is for the operator's log, not for the client.
    return withCause(err, new UnavailableError('The database refused a connection; nothing was written, retry shortly. Central\'s log says why.'));
  }
  if (connectionLost(e)) {
    return withCause(err, new UnavailableError('The database could not be reached, or the connection to it was lost during this request; retry shortly. A write may have been made before it was lost: check before sending it again (sync batches are applied exactly once, so resending one is safe).'));
  }
  if (typeof e.code !== 'string') return err;
  if (BUSY_CODES.has(e.code)) {
    return new UnavailableError(`The database is busy (${e.message ?? e.code}); nothing was written, retry shortly.`);
  }
  const details = { step: step?.step_id ?? null, table: e.table ?? step?.table ?? null, constraint: e.constraint ?? null, detail: e.detail ?? null };
  switch (e.code) {
    case '23503':
      return new AppError(422, 'reference_not_found', `A referenced row does not exist: ${e.detail ?? e.constraint}`, details);
    case '23505':
      return new ConflictError(`Already exists: ${e.detail ?? e.constraint}`, details);
    case '23514': {
      // Migration 012's trigger: (raw_data_package_id, executed_obs_unit_id)=(<package>, <observation>).
      const pair = e.constraint === 'raw_data_file_package_observation' ? /=\(([^,]+), ([^)]+)\)/.exec(e.detail ?? '') : null;
      if (pair) return packageOfAnotherObservation(pair[1]!, pair[2]!, details.step);
      // PostgreSQL's detail quotes the whole failing row, server-side columns included: the rule says enough.
      const rule = e.constraint ? CHECK_RULES[e.constraint] : undefined;
      const what = rule ? `${rule} (${e.constraint})` : `(${e.constraint ?? e.code})`;
      return new ValidationError(`Value violates a rule of ${e.table ?? 'the table'}: ${what}`, { ...details, detail: null });
    }
    case '23502':
      return new ValidationError(`Value violates a rule of ${e.table ?? 'the table'} (${e.constraint ?? e.column ?? e.code})`, details);
    case 'P0002':
      return new NotFoundError(e.message ?? 'Row not found', details);
    default:
      if (e.code.startsWith('22')) return new ValidationError(`Invalid value: ${e.message}`, details);
      return err;
  }
}

/**
 * The AppError a rejected transaction stands for. PostgreSQL names the table, not the step: the step is
 * named when it is the transaction's only step on that table (as the edge names it, SPEC §4).
 */
export function rejection(r: Extract<RawResult, { result: 'rejected' }>, steps: readonly Step[] = []): AppError {
  if (r.sqlstate === 'OPSDB') return new ConflictError(`Transaction was already applied with a different payload`);
  const onTable = steps.filter((s) => s.table === r.table);
  const mapped = mapPgError({ code: r.sqlstate, message: r.message, detail: r.detail, constraint: r.constraint, table: r.table }, onTable.length === 1 ? onTable[0] : undefined);
  return mapped instanceof AppError ? mapped : new AppError(422, 'rejected', r.message);
}

/** One transaction, applied or thrown as the AppError that explains why not (central's direct writes). */
export async function applyTransaction(c: Client, tx: Transaction, appliedBy: number | null): Promise<ApplyOutcome> {
  const [r] = await applyPrepared(c, tx.site, appliedBy, [prepareTransaction(tx)]);
  if (!r) throw new Error('opsdb_apply_batch returned no result');
  if (r.result === 'rejected') throw rejection(r, tx.steps);
  return { result: r.result };
}

const UUID_TEXT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** The rows a site's transactions may write, by table: whose observation a row belongs to. */
type Owned = 'executed_obs_unit' | 'raw_data_package' | 'raw_data_file';
/** Each owned table's rows → the site of the observation they belong to. */
const OWNER_SQL: Record<Owned, string> = {
  executed_obs_unit: 'SELECT id::text AS id, site FROM executed_obs_unit WHERE id = ANY($1::uuid[])',
  raw_data_package: `SELECT p.id::text AS id, e.site FROM raw_data_package p JOIN executed_obs_unit e ON e.id = p.executed_obs_unit_id
                      WHERE p.id = ANY($1::uuid[])`,
  raw_data_file: `SELECT f.id::text AS id, e.site FROM raw_data_file f JOIN executed_obs_unit e ON e.id = f.executed_obs_unit_id
                   WHERE f.id = ANY($1::uuid[])`,
};
const isOwned = (t: string): t is Owned => t in OWNER_SQL;

/** What a step needs to exist and belong to the sending site: [table, id, how it is used]. */
function touched(step: PreparedStep): [Owned, string, 'updates' | 'refers to'][] {
  const out: [Owned, string, 'updates' | 'refers to'][] = [];
  for (const row of step.rows) {
    if (step.op === 'update' && isOwned(step.table)) out.push([step.table, String(row[step.key]), 'updates']);
    if (typeof row.executed_obs_unit_id === 'string') out.push(['executed_obs_unit', row.executed_obs_unit_id, 'refers to']);
    if (typeof row.raw_data_package_id === 'string') out.push(['raw_data_package', row.raw_data_package_id, 'refers to']);
  }
  return out;
}

/**
 * A site token writes its own site's records only (SPEC §2.9): observations
 * with its name, and the packages and files under them. The database
 * functions match an update on its id alone, and a package or file on its
 * parent's id, so this is checked before them, under the site's lock, for
 * every row a transaction updates or attaches to: against what the batch
 * itself creates first, then against the database. A transaction that
 * reaches another site's record is rejected alone (403); one that names a
 * record that exists nowhere, as the database would have (422, or 404 for
 * an update), so another site cannot create it in between.
 */
export async function scopeToSite(c: Client, site: string, txs: (PreparedTransaction | AppError)[]): Promise<(PreparedTransaction | AppError)[]> {
  /** Records this batch creates → the site they belong to (null: not known here; the database decides). */
  const inBatch = new Map<string, string | null>();
  const key = (table: string, id: string) => `${table}:${id.toLowerCase()}`;
  const wanted: Record<Owned, Set<string>> = { executed_obs_unit: new Set(), raw_data_package: new Set(), raw_data_file: new Set() };
  for (const tx of txs) {
    if (tx instanceof AppError) continue;
    for (const step of tx.steps) {
      if (step.op !== 'update' && isOwned(step.table)) for (const row of step.rows) inBatch.set(key(step.table, String(row[step.key])), null);
      for (const [table, id] of touched(step)) if (UUID_TEXT.test(id)) wanted[table].add(id.toLowerCase());
    }
  }
  const inDb = new Map<string, string>();
  for (const table of Object.keys(wanted) as Owned[]) {
    const ids = [...wanted[table]].filter((id) => !inBatch.has(key(table, id)));
    if (ids.length === 0) continue;
    const { rows } = await c.query<{ id: string; site: string }>(OWNER_SQL[table], [ids]);
    for (const r of rows) inDb.set(key(table, r.id), r.site);
  }
  return txs.map((tx) => {
    if (tx instanceof AppError) return tx;
    const mine = new Map<string, string | null>();
    for (const [i, step] of tx.steps.entries()) {
      const where = `steps[${i}] (${step.op} ${step.table})`;
      for (const [table, id, how] of touched(step)) {
        const k = key(table, id);
        const owner = mine.has(k) ? mine.get(k) : inDb.has(k) ? inDb.get(k) : inBatch.get(k);
        if (owner === undefined) {
          // Nowhere: not in the database, not made by this batch. A non-UUID is left to the database's own error.
          if (!UUID_TEXT.test(id)) continue;
          if (how === 'updates') return new NotFoundError(`${table} ${id} not found`, { step: step.step_id, table });
          return new AppError(422, 'reference_not_found', `${where}: ${table} ${id} does not exist`, { step: step.step_id, table });
        }
        if (owner !== null && owner !== site) {
          return new AppError(403, 'forbidden', `${where} ${how} ${table} ${id}, which belongs to site "${owner}": a site writes only its own records`,
            { step: step.step_id, table, owner });
        }
      }
      // What this step creates belongs to the site it was checked for: later steps and transactions may use it.
      if (step.op !== 'update' && isOwned(step.table)) {
        for (const row of step.rows) mine.set(key(step.table, String(row[step.key])), step.table === 'executed_obs_unit' ? String(row.site ?? site) : site);
      }
    }
    for (const [k, owner] of mine) inBatch.set(k, owner);
    return tx;
  });
}
