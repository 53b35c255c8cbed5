/**
 * The final checks at central, once the edge has drained (SPEC §2.2, §2.3): every acknowledged transaction
 * applied exactly once, nothing else but writes whose answer was lost, seqs gapless and in order, each
 * dependent after its parents, and every row with the values the writers were acknowledged.
 */
import { call, canon, iso } from './http.js';
import { M } from './model.js';
import { poison } from './poison.js';
import { finding } from './report.js';
import { S, q } from './system.js';

export interface CentralSummary {
  acked: number;
  applied: number;
}

/** Drops from the model what an operator discarded: it never reaches central, nor do the rows it created. */
function forgetDiscarded(): string[] {
  const discarded = new Set(poison.discarded.keys());
  for (const [k, o] of [...M.obs]) if (discarded.has(o.tx)) M.obs.delete(k);
  for (const [k, p] of [...M.pkgs]) if (discarded.has(p.tx)) M.pkgs.delete(k);
  for (const [k, f] of [...M.files]) if (discarded.has(f.tx)) M.files.delete(k);
  for (const o of M.obs.values()) o.finishes = o.finishes.filter((f) => !discarded.has(f.tx));
  M.deps = M.deps.filter((d) => !discarded.has(d.tx));
  return M.acked.map((a) => a.tx).filter((tx) => !discarded.has(tx));
}

export async function checkCentral(final: any): Promise<CentralSummary> {
  const ackedIds = forgetDiscarded();
  // Nothing acknowledged, nothing checked: a run that proves nothing fails.
  if (ackedIds.length === 0) finding('nothing_acknowledged', { ops: M.ops });
  if (!final) finding('final_stats_unreadable', null);
  if (new Set(ackedIds).size !== ackedIds.length) finding('duplicate_transaction_id_acked', ackedIds.length - new Set(ackedIds).size);

  // 1. Exactly once (§2.2).
  const inbox = await q<{ id: string; seq: number; n: number }>(
    'SELECT transaction_id::text AS id, min(seq)::int AS seq, count(*)::int AS n FROM applied_transaction WHERE site = $1 GROUP BY 1', [S.site]);
  const inboxById = new Map(inbox.map((r) => [r.id, r]));
  const discardedApplied = [...poison.discarded.keys()].filter((id) => inboxById.has(id));
  if (discardedApplied.length) finding('discarded_but_applied', discardedApplied.slice(0, 5));
  if (poison.discardedRows.size) {
    const there = await q(`SELECT id::text FROM executed_obs_unit WHERE id = ANY($1::uuid[]) UNION ALL SELECT id::text FROM raw_data_package WHERE id = ANY($1::uuid[])
      UNION ALL SELECT id::text FROM raw_data_file WHERE id = ANY($1::uuid[])`, [[...poison.discardedRows]]);
    if (there.length) finding('discarded_rows_at_central', there.slice(0, 5));
  }
  const missing = ackedIds.filter((id) => !inboxById.has(id));
  if (missing.length) {
    const sample = [];
    for (const id of missing.slice(0, 5)) sample.push({ id, edge: (await call(S.edgeUrl, 'GET', `/api/transactions/${id}`, S.edgeAdmin)).body, op: M.acked.find((a) => a.tx === id)?.op });
    finding('acked_not_at_central', { count: missing.length, of: ackedIds.length, sample });
  }
  const twice = inbox.filter((r) => r.n !== 1);
  if (twice.length) finding('applied_twice', twice.slice(0, 10));
  const extra = inbox.length - ackedIds.length;
  const unknownWrites = M.lostResponses + M.maybe.length;
  if (extra < 0 || extra > unknownWrites) finding('central_count_mismatch', { central: inbox.length, acked: ackedIds.length, unknown_outcome_writes: unknownWrites });
  if (final && inbox.length !== final.applied_total) finding('central_vs_edge_applied_total', { central: inbox.length, edge_applied_total: final.applied_total, edge: final });
  for (const m of M.maybe) {
    if (!m.tx) continue;
    if ((inboxById.get(m.tx)?.n ?? 0) > 1) finding('maybe_kept_applied_twice', m);
    // "GET /api/transactions/{id} tells: 404 means it was not kept".
    const r = await call(S.edgeUrl, 'GET', `/api/transactions/${m.tx}`, S.edgeAdmin);
    const atCentral = inboxById.has(m.tx);
    if ((r.status === 404 && atCentral) || (r.status === 200 && !atCentral) || (r.status !== 200 && r.status !== 404)) {
      finding('maybe_kept_lookup_wrong', { ...m, edge: r.status, state: r.body?.state, atCentral });
    }
  }

  // 2. Order (§2.3): seqs gapless 1..accepted (less the discarded), applied in seq order, dependents after parents.
  const seqRows = await q<{ id: string; seq: number }>('SELECT transaction_id::text AS id, seq::int FROM applied_transaction WHERE site = $1 ORDER BY applied_at, seq', [S.site]);
  // Seq order over those that never met a failure (a retried one applies after later, unrelated ones).
  const poisonTx = new Set(M.acked.filter((a) => a.client === S.opts.clients).map((a) => a.tx));
  const plain = new Set(ackedIds.filter((id) => !poisonTx.has(id)));
  const seqsPlain = seqRows.filter((r) => plain.has(r.id)).map((r) => r.seq);
  const bad = seqsPlain.findIndex((s, i) => i > 0 && s <= seqsPlain[i - 1]!);
  if (bad >= 0) finding('applied_out_of_order', { at: bad, around: seqsPlain.slice(Math.max(0, bad - 5), bad + 5) });
  const rank = new Map(seqRows.map((r, k) => [r.id, { k, seq: r.seq }]));
  let depBad = 0;
  for (const d of M.deps) {
    const c = rank.get(d.tx);
    for (const p of d.parents) {
      const pr = rank.get(p);
      if (c && pr && (pr.k >= c.k || pr.seq >= c.seq) && ++depBad <= 5) {
        finding('dependent_before_parent', { child: d.tx, op: d.op, childSeq: c.seq, childRank: c.k, parent: p, parentSeq: pr.seq, parentRank: pr.k });
      }
    }
  }
  const sorted = seqRows.map((r) => r.seq).sort((a, b) => a - b);
  const discardedSeqs = new Set(poison.discarded.values());
  const expectedSeqs = final ? Array.from({ length: final.accepted_total }, (_, k) => k + 1).filter((x) => !discardedSeqs.has(x)) : sorted;
  const gaps = sorted.filter((s, i) => s !== expectedSeqs[i]);
  if (gaps.length || (final && sorted.length !== final.accepted_total - final.discarded_total)) {
    finding('seq_gaps_or_extra', { count: sorted.length, accepted: final?.accepted_total, first_off: gaps.slice(0, 5), max: sorted.at(-1) });
  }
  for (const o of M.obs.values()) {
    const c = inboxById.get(o.tx);
    for (const f of o.finishes) {
      const fi = inboxById.get(f.tx);
      if (c && fi && fi.seq <= c.seq) finding('finish_before_create', { obs: o.id, create: c.seq, finish: fi.seq });
    }
  }

  await checkRows();
  return { acked: ackedIds.length, applied: inbox.length };
}

/** 3. Rows at central with the acknowledged values; the last applied update wins (unknown-outcome ones widen the set). */
async function checkRows(): Promise<void> {
  const obsIds = [...M.obs.keys()];
  const cObs = new Map((await q(`SELECT id::text, obs_unit_id, site, status, start_time, end_time, mean_pwv, mean_elevation, instrument_module_configuration_id AS imc
    FROM executed_obs_unit WHERE id = ANY($1::uuid[])`, [obsIds])).map((r: any) => [r.id, r]));
  const appliedAt = new Map((await q(`SELECT transaction_id::text AS id, applied_at FROM applied_transaction WHERE transaction_id = ANY($1::uuid[])`, [[
    ...[...M.obs.values()].flatMap((o) => [...o.finishes.map((f) => f.tx), ...o.central.map((c) => c.tx)]),
    ...[...M.prefs.values()].flatMap((st) => [st.tx, ...(st.central ?? []).map((c) => c.tx)]),
  ].filter((t) => t && t !== '?')])).map((r: any) => [r.id as string, new Date(r.applied_at).getTime()]));
  for (const o of M.obs.values()) {
    const c: any = cObs.get(o.id);
    if (!c) {
      finding('obs_missing_at_central', { id: o.id, tx: o.tx });
      continue;
    }
    const base = [c.obs_unit_id === o.obs_unit_id, iso(c.start_time) === o.start_time, c.site === S.site, c.mean_elevation === o.mean_elevation, c.imc === o.imc];
    if (base.includes(false)) finding('obs_values_wrong', { id: o.id, central: c, model: { ...o, finishes: undefined } });
    const lastEdge = o.finishes.at(-1);
    const candidates = [lastEdge ? { status: lastEdge.status, end_time: lastEdge.end_time as string | null, at: appliedAt.get(lastEdge.tx) ?? -1 } : { status: o.status, end_time: o.end_time, at: -1 }];
    for (const cf of o.central) candidates.push({ status: cf.status, end_time: cf.end_time, at: cf.tx === '?' ? -2 : appliedAt.get(cf.tx) ?? -1 });
    const got = { status: c.status, end_time: iso(c.end_time) };
    let ok: boolean;
    if (o.unknownAfter.length > 0 || o.central.some((x) => x.tx === '?')) {
      ok = [...candidates, ...o.unknownAfter].some((x) => x.status === got.status && x.end_time === got.end_time);
    } else {
      const latest = candidates.reduce((a, b) => (b.at > a.at ? b : a));
      ok = latest.status === got.status && latest.end_time === got.end_time;
    }
    if (!ok) finding('obs_final_state_wrong', { id: o.id, central: got, candidates, unknownAfter: o.unknownAfter, finishes: o.finishes, centralFinishes: o.central });
  }
  const cPkgs = new Map((await q(`SELECT id::text, name, executed_obs_unit_id::text AS obs, state, size, checksum FROM raw_data_package WHERE id = ANY($1::uuid[])`, [[...M.pkgs.keys()]]))
    .map((r: any) => [r.id, r]));
  for (const p of M.pkgs.values()) {
    const c: any = cPkgs.get(p.id);
    if (!c) {
      finding('pkg_missing_at_central', { id: p.id, tx: p.tx });
      continue;
    }
    if (c.name !== p.name || c.obs !== p.obs) finding('pkg_values_wrong', { id: p.id, central: c, model: p });
    if (!p.unknownFinalize && !p.centralFinalize) {
      const want = p.finalized ? { state: 'finalized', size: p.finalized.size, checksum: p.finalized.checksum } : { state: 'open', size: null, checksum: null };
      if (c.state !== want.state || c.size !== want.size || c.checksum !== want.checksum) finding('pkg_final_state_wrong', { id: p.id, central: c, want });
    } else if (p.finalized && c.state !== 'finalized') finding('pkg_final_state_wrong', { id: p.id, central: c, model: p });
  }
  const cFiles = new Map((await q(`SELECT id::text, name, path, size, checksum, file_type, executed_obs_unit_id::text AS obs, raw_data_package_id::text AS pkg
    FROM raw_data_file WHERE id = ANY($1::uuid[])`, [[...M.files.keys()]])).map((r: any) => [r.id, r]));
  let fileMissing = 0;
  for (const f of M.files.values()) {
    const c: any = cFiles.get(f.id);
    if (!c) {
      if (++fileMissing <= 5) finding('file_missing_at_central', { id: f.id, tx: f.tx });
      continue;
    }
    if (c.name !== f.name || c.path !== f.path || c.size !== f.size || c.checksum !== f.checksum || c.obs !== f.obs || c.pkg !== f.pkg) finding('file_values_wrong', { central: c, model: f });
  }
  const fileCount = (await q(`SELECT count(*)::int AS n FROM raw_data_file f JOIN executed_obs_unit o ON o.id = f.executed_obs_unit_id WHERE o.site = $1`, [S.site]))[0].n;
  const obsCount = (await q(`SELECT count(*)::int AS n FROM executed_obs_unit WHERE site = $1`, [S.site]))[0].n;
  if (obsCount < M.obs.size || fileCount < M.files.size) finding('row_counts_low', { obsCount, obs: M.obs.size, fileCount, files: M.files.size });
  const prefRows = new Map((await q(`SELECT user_id, preferences FROM user_preference WHERE user_id = ANY($1::int[])`, [[...M.prefs.keys()]])).map((r: any) => [r.user_id, r.preferences]));
  for (const [uid, st] of M.prefs) {
    const got = prefRows.get(uid) ?? null;
    const central = st.central ?? [];
    let ok: boolean;
    if (st.unknownAfter.length || central.some((c) => c.tx === '?')) {
      ok = [st.last, ...st.unknownAfter, ...central.map((c) => c.prefs)].some((x) => canon(x) === canon(got));
    } else {
      const cands = [{ prefs: st.last, at: st.tx ? appliedAt.get(st.tx) ?? -1 : -1 }, ...central.map((c) => ({ prefs: c.prefs, at: appliedAt.get(c.tx) ?? -1 }))];
      const latest = cands.reduce((a, b) => (b.at > a.at ? b : a));
      ok = canon(latest.prefs) === canon(got);
    }
    if (!ok && (st.last !== null || st.unknownAfter.length)) finding('prefs_wrong', { user: uid, central: got, last: st.last, unknownAfter: st.unknownAfter });
  }
}
