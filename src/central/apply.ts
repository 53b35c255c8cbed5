/**
 * Applies one transaction to PostgreSQL inside the caller's database
 * transaction: inbox row first (the unique key makes a repeat a no-op), then
 * every step. Any error leaves the caller to roll back — all steps or none.
 */
import type { Client } from './db.js';
import { TABLES } from '../lib/api/tables.js';
import type { Step, Transaction } from '../lib/api/transaction.js';
import { AppError, ConflictError, NotFoundError, ValidationError } from '../lib/errors.js';
import { canonicalJson, sha256Hex } from '../lib/canonical.js';

export type ApplyOutcome = { result: 'applied' | 'duplicate' };

const HAS_UPDATED_AT = new Set(['executed_obs_unit', 'raw_data_package', 'user_preference']);
const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;

export const payloadHash = (tx: Pick<Transaction, 'endpoint' | 'steps'>): string =>
  sha256Hex(canonicalJson({ endpoint: tx.endpoint, steps: tx.steps }));

/** Validates a step's data against the table's column schema; returns the cleaned rows. */
function validateStep(step: Step, site: string, index: number): Record<string, unknown>[] {
  const spec = TABLES[step.table];
  const where = `steps[${index}] (${step.op} ${step.table})`;
  const rows =
    step.op === 'bulk_create' ? step.rows : step.op === 'update' ? [step.data] : [{ ...step.data, [spec.key]: step.id }];
  const schema = step.op === 'update' ? spec.update : spec.create;
  return rows.map((row, i) => {
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
    if (step.op === 'update' && Object.keys(data).length === 0) throw new ValidationError(`${where}: nothing to update`);
    return data;
  });
}

async function applyStep(c: Client, step: Step, rows: Record<string, unknown>[]): Promise<void> {
  const spec = TABLES[step.table];
  const table = ident(step.table);
  if (step.op === 'update') {
    const cols = Object.keys(rows[0]!);
    const sets = cols.map((col) => `${ident(col)} = r.${ident(col)}`);
    if (HAS_UPDATED_AT.has(step.table)) sets.push('updated_at = now()');
    const res = await c.query(
      `UPDATE ${table} t SET ${sets.join(', ')} FROM jsonb_populate_record(NULL::${table}, $1) r WHERE t.${ident(spec.key)} = $2`,
      [rows[0], step.id],
    );
    if (res.rowCount === 0) throw new NotFoundError(`${step.table} ${step.id} not found`, { step: step.step_id, table: step.table, id: step.id });
    return;
  }
  // Columns are those any row names; jsonb_populate_recordset takes the whole batch as one parameter.
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const list = cols.map(ident).join(', ');
  let sql = `INSERT INTO ${table} (${list}) SELECT ${list} FROM jsonb_populate_recordset(NULL::${table}, $1)`;
  if (step.op === 'upsert') {
    const sets = cols.filter((x) => x !== spec.key).map((x) => `${ident(x)} = EXCLUDED.${ident(x)}`);
    if (HAS_UPDATED_AT.has(step.table)) sets.push('updated_at = now()');
    sql += ` ON CONFLICT (${ident(spec.key)}) DO UPDATE SET ${sets.join(', ')}`;
  }
  await c.query(sql, [JSON.stringify(rows)]);
}

/** Maps PostgreSQL constraint errors to 4xx; anything else stays a 500. */
export function mapPgError(err: unknown, step?: Step): unknown {
  const e = err as { code?: string; constraint?: string; detail?: string; table?: string; column?: string };
  if (!e || typeof e.code !== 'string' || err instanceof AppError) return err;
  const details = { step: step?.step_id ?? null, table: e.table ?? step?.table ?? null, constraint: e.constraint ?? null, detail: e.detail ?? null };
  switch (e.code) {
    case '23503':
      return new AppError(422, 'reference_not_found', `A referenced row does not exist: ${e.detail ?? e.constraint}`, details);
    case '23505':
      return new ConflictError(`Already exists: ${e.detail ?? e.constraint}`, details);
    case '23514':
    case '23502':
      return new ValidationError(`Value violates a rule of ${e.table ?? 'the table'} (${e.constraint ?? e.column ?? e.code})`, details);
    default:
      if (e.code.startsWith('22')) return new ValidationError(`Invalid value: ${(err as Error).message}`, details);
      return err;
  }
}

export async function applyTransaction(c: Client, tx: Transaction, appliedBy: number | null): Promise<ApplyOutcome> {
  const validated = tx.steps.map((s, i) => validateStep(s, tx.site, i));
  const hash = payloadHash(tx);
  const ins = await c.query(
    `INSERT INTO applied_transaction (site, transaction_id, seq, endpoint, payload_hash, created_at, applied_by)
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (site, transaction_id) DO NOTHING`,
    [tx.site, tx.transaction_id, tx.seq, tx.endpoint, hash, tx.created_at, appliedBy],
  );
  if (ins.rowCount === 0) {
    const { rows } = await c.query('SELECT payload_hash FROM applied_transaction WHERE site = $1 AND transaction_id = $2', [
      tx.site,
      tx.transaction_id,
    ]);
    if (rows[0]?.payload_hash !== hash) {
      throw new ConflictError(`Transaction ${tx.transaction_id} was already applied with a different payload`, {
        transaction_id: tx.transaction_id,
      });
    }
    return { result: 'duplicate' };
  }
  for (const [i, step] of tx.steps.entries()) {
    try {
      await applyStep(c, step, validated[i]!);
    } catch (err) {
      throw mapPgError(err, step);
    }
  }
  return { result: 'applied' };
}
