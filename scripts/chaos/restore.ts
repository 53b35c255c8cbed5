/**
 * Central restored from a backup: pg_dump -Fc snapshots of central's database, and a restore over it
 * (both centrals SIGKILLed, the database dropped, created and pg_restored). Central goes back in time;
 * the edge must notice and send again what central lost, exactly once.
 */
import { join } from 'node:path';
import { runPgBin } from './cluster.js';
import { poison, putBackAfterRestore } from './poison.js';
import { sleep } from './random.js';
import { log, sinceStart, ts } from './report.js';
import { S, ensurePg, faultCounts, startCentral, stopCentral } from './system.js';

export interface Dump {
  n: number;
  file: string;
  t0: number;
  /** Applied transactions at central right after it was taken. */
  applied: number | null;
}
export const dumps: Dump[] = [];
export const restores: { dump: number; at: string; applied_before: number | null; applied_in_dump: number | null }[] = [];

async function appliedCount(): Promise<number | null> {
  try {
    return (await S.verifyPool.query('SELECT count(*)::int AS n FROM applied_transaction WHERE site = $1', [S.site])).rows[0].n;
  } catch {
    return null;
  }
}

export async function takeDump(): Promise<void> {
  const n = dumps.length + 1;
  const file = join(S.runDir, `central-${n}.dump`);
  const t0 = Date.now();
  const r = await runPgBin('pg_dump', ['-Fc', '-f', file, '-d', S.db.url]);
  if (r.code !== 0) {
    log(`central dump ${n} failed (exit ${r.code}): ${r.out.trim().slice(0, 300)}`);
    return;
  }
  const applied = await appliedCount();
  dumps.push({ file, t0, applied, n });
  log(`central dump ${n} taken in ${Date.now() - t0} ms (applied at central right after: ${applied})`);
}

export async function restoreCentral(d: Dump, downMs: number): Promise<void> {
  const before = await appliedCount();
  log(`central restore from dump ${d.n} (taken at ${sinceStart(d.t0)}s): both centrals SIGKILL, database dropped and restored; applied before ${before}`);
  await stopCentral(0, 'SIGKILL');
  await stopCentral(1, 'SIGKILL');
  await ensurePg();
  const name = S.db.database.name;
  await S.adminPool.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  await S.adminPool.query(`CREATE DATABASE "${name}"`);
  const r = await runPgBin('pg_restore', ['--no-owner', '-d', S.db.url, d.file]);
  if (r.code !== 0) log(`pg_restore exit ${r.code}: ${r.out.trim().slice(0, 400)}`);
  const inDump = await appliedCount();
  // The operator puts back the poison obs units central had (created after the dump, they are gone).
  const back = poison.units.size ? await putBackAfterRestore() : 0;
  restores.push({ dump: d.n, at: ts().trim(), applied_before: before, applied_in_dump: inDump });
  faultCounts['restore:done'] = restores.length;
  log(`central restored from dump ${d.n}: applied at central ${before} -> ${inDump}; poison obs units put back ${back}; centrals start after ${downMs} ms`);
  await sleep(downMs);
  await startCentral(0);
  await startCentral(1);
}
