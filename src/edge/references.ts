/**
 * What the edge checks before buffering a write, and which earlier buffered
 * transactions it depends on. References are checked where the edge holds
 * the data; an edge whose replica is still empty (never synced) accepts and
 * lets central decide (SPEC §3).
 */
import type { Step } from '../lib/api/transaction.js';
import type { LocalStore, ReferenceTable } from './local-store.js';
import { AppError, NotFoundError, ValidationError, packageOfAnotherObservation } from '../lib/errors.js';

const REFERENCES: Record<string, [column: string, table: ReferenceTable][]> = {
  executed_obs_unit: [
    ['obs_unit_id', 'obs_unit'],
    ['instrument_module_configuration_id', 'instrument_module_configuration'],
  ],
};
const LOCAL_REFERENCES: Record<string, [column: string, table: string][]> = {
  raw_data_package: [['executed_obs_unit_id', 'executed_obs_unit']],
  raw_data_file: [
    ['executed_obs_unit_id', 'executed_obs_unit'],
    ['raw_data_package_id', 'raw_data_package'],
  ],
};

const missing = (what: string, id: unknown, step: Step) =>
  new AppError(422, 'reference_not_found', `${what} ${String(id)} does not exist`, { step: step.step_id, table: step.table });

/** A row a write refers to (or updates) that was created by an earlier local transaction. */
export interface CandidateParent {
  table: string;
  id: string | number;
  step: string;
  /** The write updates the row (rather than referring to it). */
  update: boolean;
  /** Only an order to keep (a preferences upsert after the last one), not a row the write needs. */
  order?: boolean;
}

/**
 * Checks the steps; returns, by seq, the local transactions that created the
 * rows they refer to or update: the candidate parents (SPEC §2.3: a write
 * waits on the transaction that created what it references, not on the last
 * one that changed it; a rejected update leaves the row in place at central).
 */
export function checkSteps(local: LocalStore, steps: Step[]): Map<number, CandidateParent> {
  const known = local.hasReferenceData();
  const createdHere = new Set<string>();
  /** Packages this transaction creates → their observation. */
  const packagesHere = new Map<string, unknown>();
  const parents = new Map<number, CandidateParent>();
  const touch = (table: string, id: string | number, step: Step, asUpdate: boolean): Record<string, unknown> | null => {
    if (createdHere.has(`${table}:${id}`)) return null;
    const row = local.findRow(table, id);
    if (row) {
      if (typeof row.created_seq === 'number' && !parents.has(row.created_seq)) {
        parents.set(row.created_seq, { table, id, step: step.step_id, update: asUpdate });
      }
      return row;
    }
    if (!known) return null;
    if (asUpdate) throw new NotFoundError(`${table} ${id} not found`, { step: step.step_id, table });
    throw missing(table, id, step);
  };

  for (const step of steps) {
    const rows = step.op === 'bulk_create' ? step.rows : step.op === 'update' ? [] : [{ ...step.data, id: step.id }];
    if (step.op === 'update') {
      const row = touch(step.table, step.id, step, true);
      const start = row?.start_time as string | undefined;
      const end = step.data.end_time as string | undefined;
      if (start && end && end < start) {
        throw new ValidationError(`end_time ${end} is before the observation's start_time ${start}`, { step: step.step_id });
      }
      continue;
    }
    if (step.table === 'user_preference' && step.op !== 'bulk_create') {
      const userId = step.id as number;
      if (userId < 0) throw new ValidationError('Accounts made at this edge have no preferences at central', { user_id: userId });
      if (known && !local.userExists(userId)) throw missing('user', userId, step);
      // An upsert by user id needs no earlier write, but must stay after the last one: were that one to
      // fail and be retried after this one applied, the older preferences would win.
      const row = local.findRow('user_preference', userId);
      if (typeof row?.origin_seq === 'number' && !parents.has(row.origin_seq)) {
        parents.set(row.origin_seq, { table: 'user_preference', id: userId, step: step.step_id, update: false, order: true });
      }
      continue;
    }
    for (const data of rows) {
      if (known) {
        for (const [col, table] of REFERENCES[step.table] ?? []) {
          const v = data[col];
          if (v != null && !local.referenceExists(table, v as number)) throw missing(table, v, step);
        }
      }
      for (const [col, table] of LOCAL_REFERENCES[step.table] ?? []) {
        const v = data[col];
        if (v == null) continue;
        const row = touch(table, v as string, step, false);
        // A file's package must be one of its own observation's (as central's trigger has it, migration 012).
        if (col === 'raw_data_package_id') {
          const owner = row ? row.executed_obs_unit_id : packagesHere.get(v as string);
          if (owner !== undefined && owner !== data.executed_obs_unit_id) {
            throw packageOfAnotherObservation(v as string, String(data.executed_obs_unit_id), step.step_id);
          }
        }
      }
      const start = data.start_time as string | undefined;
      const end = data.end_time as string | undefined;
      if (start && end && end < start) throw new ValidationError(`end_time ${end} is before start_time ${start}`, { step: step.step_id });
    }
    for (const data of rows) createdHere.add(`${step.table}:${String(data.id)}`);
    if (step.table === 'raw_data_package') for (const data of rows) packagesHere.set(String(data.id), data.executed_obs_unit_id);
  }
  return parents;
}
