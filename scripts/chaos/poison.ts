/**
 * Poison windows: an obs unit the edge knows is deleted at central, so writes naming it are rejected
 * there (permanent failures, §2.4) and what depends on them is blocked (§2.3). Afterwards the operator
 * either puts the unit back and retries, or discards the failed and blocked transactions.
 */
import * as P from '../../test/support/processes.js';
import { call } from './http.js';
import { sleep } from './random.js';
import { log } from './report.js';
import { S, q } from './system.js';

export const poison = {
  /** The obs unit poison writes name now (null: no window open). */
  unit: null as number | null,
  units: new Set<number>(),
  /** Deleted obs units to put back (id → row). */
  toRestore: new Map<number, any>(),
  /** Every poison obs unit's row, for putting them back after a restore from a dump. */
  rows: new Map<number, any>(),
  /** Observations the poison writer created. */
  obs: new Set<string>(),
  windows: 0,
  retried: 0,
  /** Transactions an operator discarded (id → seq), and the rows their creations made (never to reach central). */
  discarded: new Map<string, number>(),
  discardedRows: new Set<string>(),
};

function noteDiscarded(t: any): void {
  poison.discarded.set(t.transaction_id, t.seq);
  for (const st of (t.steps ?? []) as any[]) {
    if (st.op === 'create' && st.id) poison.discardedRows.add(st.id);
    if (st.op === 'bulk_create') for (const row of st.rows) poison.discardedRows.add(row.id);
  }
}

/** A failed transaction a poison window explains: central rejected it for naming a deleted obs unit. */
export function expectedFailure(t: any): boolean {
  const m = String(t?.last_error?.message ?? '') + JSON.stringify(t?.last_error?.details ?? '');
  return t?.last_error?.code === 'reference_not_found' && [...poison.units].some((u) => m.includes(`(obs_unit_id)=(${u})`));
}

/** Failed transactions at the edge that a poison window does not explain; null when the edge is not answering. */
export async function unexpectedFailed(): Promise<any[] | null> {
  const res = await call(S.edgeUrl, 'GET', '/api/buffer/failed?limit=1000', S.edgeAdmin);
  if (res.status !== 200 || !Array.isArray(res.body)) return null;
  return res.body.filter((t: any) => !expectedFailure(t)).map((t: any) => ({ seq: t.seq, endpoint: t.endpoint, attempts: t.attempts, last_error: t.last_error, depends_on: t.depends_on }));
}

/**
 * Discards what waits on an already discarded transaction (blocked), and with `failed` also each failed
 * one a poison window explains; repeated while that uncovers more.
 */
export async function discardPoison(reason: string, failed: boolean): Promise<number> {
  let n = 0;
  for (let round = 0; round < 10; round++) {
    const f = failed ? await call(S.edgeUrl, 'GET', '/api/buffer/failed?limit=1000', S.edgeAdmin) : null;
    const blocked = await call(S.edgeUrl, 'GET', '/api/buffer/failed?state=blocked&limit=1000', S.edgeAdmin);
    if ((f && f.status !== 200) || blocked.status !== 200) return n;
    const seqs = new Set(poison.discarded.values());
    const todo = [
      ...(f ? (f.body as any[]).filter((t) => expectedFailure(t)) : []),
      ...(blocked.body as any[]).filter((t) => (t.depends_on as number[]).some((d) => seqs.has(d))),
    ];
    if (todo.length === 0) return n;
    for (const t of todo) {
      const r = await call(S.edgeUrl, 'POST', `/api/buffer/failed/${t.transaction_id}/discard`, S.edgeAdmin, { reason: `chaos ${reason}` });
      if (r.status !== 200) {
        log(`discard ${t.seq} -> ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
        continue;
      }
      n++;
      noteDiscarded(t);
    }
  }
  return n;
}

export async function restoreUnit(id: number): Promise<void> {
  const row = poison.toRestore.get(id);
  if (!row) return;
  await insertUnit(row);
  poison.toRestore.delete(id);
}

async function insertUnit(row: any): Promise<number> {
  const rows = await q(
    `INSERT INTO obs_unit (id, name, observing_program_id, instrument_module_configuration_id, description, is_active)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING RETURNING id`,
    [row.id, row.name, row.observing_program_id, row.instrument_module_configuration_id, row.description, row.is_active]);
  return rows.length;
}

/** After central was restored from a dump: the poison units central had (and were back) return too. */
export async function putBackAfterRestore(): Promise<number> {
  let back = 0;
  for (const u of poison.units) {
    const row = poison.rows.get(u);
    if (row && !poison.toRestore.has(u)) back += await insertUnit(row);
  }
  await q(`SELECT setval(pg_get_serial_sequence('obs_unit', 'id'), (SELECT max(id) FROM obs_unit))`);
  return back;
}

/** One window: a new obs unit reaches the edge, is deleted at central, poison writes name it, then it is healed. */
export async function poisonWindow(rnd: () => number): Promise<void> {
  const n = ++poison.windows;
  const [row] = await q(`INSERT INTO obs_unit (name, observing_program_id, instrument_module_configuration_id, description, is_active)
    VALUES ($1, 1, 1, 'chaos poison', true) RETURNING id, name, observing_program_id, instrument_module_configuration_id, description, is_active`, [`poison-${S.opts.seed}-${n}`]);
  const id = row.id as number;
  // The edge learns of it with a pull (the link may be down: then give up on this window).
  try {
    await P.waitFor(async () => {
      const r = await call(S.edgeUrl, 'GET', '/obs_units/', S.users[0]!.token);
      return r.status === 200 && Array.isArray(r.body) && r.body.some((u: any) => u.id === id);
    }, 15_000, `obs unit ${id} at the edge`, undefined, 300);
  } catch {
    log(`poison window ${n}: obs unit ${id} never reached the edge; skipped`);
    return;
  }
  poison.toRestore.set(id, row);
  poison.rows.set(id, row);
  await q('DELETE FROM obs_unit WHERE id = $1', [id]);
  poison.units.add(id);
  poison.unit = id;
  const ms = 4000 + Math.floor(rnd() * 6000);
  log(`poison window ${n}: obs unit ${id} deleted at central; poison writes for ${ms} ms`);
  await sleep(ms);
  poison.unit = null;
  if (rnd() < 0.4) {
    // The operator discards what central rejected (and what waits on it), then puts the obs unit back.
    await sleep(1000 + rnd() * 3000);
    const d = await discardPoison(`window ${n}`, true);
    log(`poison window ${n}: discarded ${d} transactions`);
    await restoreUnit(id);
    return;
  }
  await restoreUnit(id);
  await sleep(1000 + rnd() * 2000);
  const res = await call(S.edgeUrl, 'POST', '/api/buffer/retry-failed', S.edgeAdmin);
  poison.retried++;
  log(`poison window ${n}: obs unit ${id} back at central; retry-failed -> ${res.status} ${JSON.stringify(res.body?.count ?? res.err ?? res.body).slice(0, 100)}`);
}
