/**
 * Checks made while the faults run: the edge's ledger every second (§2.5), a broken link visible in
 * /buffer-stats and /health, and, after each edge restart, the last acknowledged writes still there (§2.1).
 */
import { call, canon, iso } from './http.js';
import { M } from './model.js';
import { poison, unexpectedFailed } from './poison.js';
import { sleep } from './random.js';
import { finding, log } from './report.js';
import { S, faultCounts } from './system.js';

export const statsSeen = { maxPending: 0, maxInFlight: 0, samples: 0 };

/** After a restart: the last writes acknowledged before it are still there, with their updates (§2.1). */
export async function checkRecentReadable(): Promise<void> {
  for (const a of M.acked.slice(-8)) {
    const res = await call(S.edgeUrl, 'GET', `/api/transactions/${a.tx}`, S.edgeAdmin);
    if (res.status === 0 || res.status === 503) return; // down again, or its Redis is
    if (res.status !== 200) finding('acked_tx_missing_after_restart', { tx: a.tx, op: a.op, status: res.status, body: res.body });
  }
  for (const o of [...M.obs.values()].slice(-12)) {
    const before = o.finishes.length;
    const res = await call(S.edgeUrl, 'GET', `/executed_obs_units/${o.id}`, S.edgeAdmin);
    if (res.status === 0 || res.status === 503) return;
    // A full disk: the local store may not have taken the newest buffered rows, at start either (documented,
    // operations.md: "the local store did not take buffered writes"); they are in the buffer (checked above).
    if (Date.now() < S.diskFullUntil) return;
    if (res.status !== 200) {
      finding('acked_row_missing_after_restart', { id: o.id, status: res.status, body: res.body });
      continue;
    }
    // The state before the read, or a finish acknowledged while it was on its way.
    const wants = [before ? o.finishes[before - 1]! : { status: o.status, end_time: o.end_time }, ...o.finishes.slice(before)];
    if (!o.central.length && !o.unknownAfter.length && !wants.some((w) => res.body.status === w.status && iso(res.body.end_time) === w.end_time)) {
      finding('update_lost_after_restart', { id: o.id, edge: { status: res.body.status, end_time: res.body.end_time, sync_status: res.body.sync_status }, want: wants[0] });
    }
  }
}

/** Polls /buffer-stats once a second until stopped. */
export function startMonitor(): { stop(): Promise<void> } {
  let stopped = false;
  const seen = { accepted: 0, applied: 0 };
  let lastReplay = 'null';
  let replayOn = false;
  const sample = async () => {
    const ackedBefore = M.acked.length;
    const brokenAtStart = S.linkBrokenSince;
    const res = await call(S.edgeUrl, 'GET', '/buffer-stats', null, undefined, 10_000);
    if (res.status !== 200) {
      if (res.status !== 0 && res.status !== 503) finding('buffer_stats_error', res);
      return;
    }
    const s = res.body;
    if (s.accepted_total < seen.accepted || s.applied_total < seen.applied) finding('totals_went_back', { seen: { ...seen }, now: { accepted: s.accepted_total, applied: s.applied_total } });
    seen.accepted = Math.max(seen.accepted, s.accepted_total);
    seen.applied = Math.max(seen.applied, s.applied_total);
    if (s.accepted_total < ackedBefore) finding('accepted_below_acknowledged', { accepted_total: s.accepted_total, acked: ackedBefore });
    // Never invisible: a link broken for a while, with work waiting, shows in /buffer-stats and /health.
    const now = Date.now();
    if (brokenAtStart !== null && brokenAtStart === S.linkBrokenSince && now - brokenAtStart > 15_000 && now - S.edgeUpSince > 15_000 && s.pending_transactions > 0) {
      const h = await call(S.edgeUrl, 'GET', '/health', null, undefined, 10_000);
      if (brokenAtStart === S.linkBrokenSince && (s.central_reachable !== false || !s.last_error || (h.status === 200 && h.body?.status === 'healthy'))) {
        finding('broken_link_not_visible', {
          mode: S.brokenMode, for_s: Math.round((now - brokenAtStart) / 1000), central_reachable: s.central_reachable, last_error: s.last_error,
          consecutive_failures: s.consecutive_failures, health: h.body?.status, pending: s.pending_transactions, oldest: s.oldest_pending_age_seconds,
        });
      }
    }
    statsSeen.samples++;
    statsSeen.maxPending = Math.max(statsSeen.maxPending, s.pending_transactions);
    statsSeen.maxInFlight = Math.max(statsSeen.maxInFlight, s.in_flight_transactions);
    const sum = s.applied_total + s.pending_transactions + s.in_flight_transactions + s.blocked_transactions + s.failed_transactions + s.discarded_total;
    if (sum !== s.accepted_total) finding('ledger_broken', s);
    if (s.failed_transactions || s.blocked_transactions) {
      if (poison.units.size === 0) finding('stats_failed_or_blocked', { failed: s.failed_transactions, blocked: s.blocked_transactions, last_error: s.last_error });
      else if (s.failed_transactions) {
        const odd = await unexpectedFailed();
        if (odd?.length) finding('unexpected_failed', odd.slice(0, 5));
      }
    }
    if (canon(s.central_replay) !== lastReplay) {
      lastReplay = canon(s.central_replay);
      if (s.central_replay && !replayOn) faultCounts['replay:seen'] = (faultCounts['replay:seen'] ?? 0) + 1;
      replayOn = !!s.central_replay;
      log(`edge central_replay: ${lastReplay}${s.last_error ? ' last_error ' + JSON.stringify(s.last_error).slice(0, 200) : ''}`);
    }
    if (s.lost_transactions) finding('lost_transactions', s);
    if (s.edge_conflict) finding('edge_conflict_reported', s.edge_conflict);
    if (s.background_processor !== 'running') finding('sync_not_running', { bp: s.background_processor, last_error: s.last_error });
  };
  const done = (async () => {
    while (!stopped) {
      if (S.edge) await sample();
      await sleep(1000);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await done;
    },
  };
}
