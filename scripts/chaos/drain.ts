/**
 * After the faults: every component healed (PostgreSQL, both centrals, the link, Redis, the edge, the
 * poison obs units back), then the edge drains — failed poison retried or discarded as an operator
 * would — and its replica catches up with central.
 */
import * as P from '../../test/support/processes.js';
import { startRedisServer } from '../../test/support/services.js';
import { call } from './http.js';
import { M } from './model.js';
import { discardPoison, poison, restoreUnit, unexpectedFailed } from './poison.js';
import { sleep } from './random.js';
import { finding, log } from './report.js';
import { S, busy, ensurePg, startCentral, startEdge } from './system.js';

const DRAIN_MS = 180_000;
const REPLICA_MS = 60_000;

export async function heal(): Promise<void> {
  // Background restarts finish first.
  await P.waitFor(() => !busy.edge && !busy.central && !busy.pg && !busy.restore && !busy.redis && !busy.disk, 180_000, 'restarts to finish', undefined, 200);
  log('healing: PostgreSQL, centrals, proxy pass, Redis, edge');
  await ensurePg();
  for (const i of [0, 1] as const) if (!S.centrals[i]) await startCentral(i);
  await S.proxy.setMode('pass');
  S.linkBrokenSince = null;
  if (S.redis === null && S.opts.backend === 'redis') S.redis = await startRedisServer(S.redisDir, { port: S.redisPort });
  for (const id of [...poison.toRestore.keys()]) await restoreUnit(id);
  if (!S.edge) await startEdge();
}

/** Waits until the edge has nothing left to send; returns its last /buffer-stats. */
export async function drain(): Promise<any> {
  let stats: any = null;
  let lastRetry = 0;
  const t0 = Date.now();
  try {
    stats = await P.waitFor(async () => {
      const r = await call(S.edgeUrl, 'GET', '/buffer-stats', null);
      if (r.status !== 200) return null;
      const s = (stats = r.body);
      if ((s.failed_transactions || s.blocked_transactions) && Date.now() - lastRetry > 3000) {
        lastRetry = Date.now();
        const odd = await unexpectedFailed();
        if (odd?.length) finding('unexpected_failed_at_end', odd.slice(0, 5));
        else if (odd && poison.units.size) {
          // Blocked behind a discarded one: the operator discards those too; the rest is retried.
          if (poison.discarded.size) log(`drain: discarded ${await discardPoison('end', false)} blocked behind discarded ones`);
          const rr = await call(S.edgeUrl, 'POST', '/api/buffer/retry-failed', S.edgeAdmin);
          log(`drain: ${s.failed_transactions} failed, ${s.blocked_transactions} blocked (poison) -> retry-failed ${rr.status} ${rr.body?.count}`);
        } else if (!poison.units.size) finding('blocked_without_failed_at_end', s);
      }
      const empty = s.pending_transactions === 0 && s.in_flight_transactions === 0 && s.blocked_transactions === 0 && s.failed_transactions === 0;
      return !s.central_replay && empty && s.applied_total + s.discarded_total === s.accepted_total ? s : null;
    }, DRAIN_MS, 'the edge to drain', () => stats, 500);
    log(`drained in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${JSON.stringify(stats)}`);
  } catch (err) {
    finding('never_drained', { stats, err: (err as Error).message.slice(0, 2000) });
  }
  // The replica catches up with central (admin writes at central come back through the feed).
  try {
    await P.waitFor(async () => {
      const r = await call(S.edgeUrl, 'GET', '/buffer-stats', null);
      return r.status === 200 && r.body.synced_awaiting_replica === 0 ? r.body : null;
    }, REPLICA_MS, 'the replica to catch up', undefined, 500);
  } catch {
    finding('replica_never_caught_up', (await call(S.edgeUrl, 'GET', '/buffer-stats', null)).body);
  }
  await sleep(2000);
  log(`acknowledged ${M.acked.length} transactions (${M.obs.size} observations, ${M.pkgs.size} packages, ${M.files.size} files); lost responses ${M.lostResponses}; maybe-kept ${M.maybe.length}; refused ${M.refused}; 503 not stored ${M.stoppingRefusals}`);
  return (await call(S.edgeUrl, 'GET', '/buffer-stats', null)).body;
}
