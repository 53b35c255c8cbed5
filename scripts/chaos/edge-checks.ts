/**
 * The final checks at the edge: its reads agree with central (rows, updates, sync_status synced, the
 * listing page by page), acknowledged transactions read synced, /health healthy, /metrics equal to
 * /buffer-stats, central's view of the site caught up, and `opsdb buffer verify` clean with the daemon
 * running and stopped (§2.5, §2.7).
 */
import { runCli } from '../../test/support/cli.js';
import { call, iso } from './http.js';
import { M } from './model.js';
import { poison } from './poison.js';
import { pick, sleep, type Rnd } from './random.js';
import { finding, log } from './report.js';
import { S, q, stopEdge } from './system.js';

async function compareEdge(): Promise<string[]> {
  const problems: string[] = [];
  const obsIds = [...M.obs.keys()];
  const ids = [...obsIds];
  for (const id of poison.discardedRows) {
    if (!poison.obs.has(id)) continue;
    const r = await call(S.edgeUrl, 'GET', `/executed_obs_units/${id}`, S.edgeAdmin);
    // "Rows a discarded transaction created stay visible in the local store, with sync_status failed."
    if (r.status !== 200 || r.body.sync_status !== 'failed') problems.push(`discarded obs ${id}: edge ${r.status} ${r.body?.sync_status}`);
  }
  const cPkgNow = new Map((await q(`SELECT id::text, state, size, checksum FROM raw_data_package WHERE id = ANY($1::uuid[])`, [[...M.pkgs.keys()]])).map((r: any) => [r.id, r]));
  const cObsNow = new Map((await q(`SELECT id::text, status, end_time, mean_pwv, mean_elevation FROM executed_obs_unit WHERE id = ANY($1::uuid[])`, [obsIds])).map((r: any) => [r.id, r]));
  const filesOf = new Map<string, string[]>();
  for (const f of M.files.values()) filesOf.set(f.obs, [...(filesOf.get(f.obs) ?? []), f.id]);
  await Promise.all(Array.from({ length: 6 }, async () => {
    for (let id = ids.pop(); id; id = ids.pop()) {
      const r = await call(S.edgeUrl, 'GET', `/executed_obs_units/${id}`, S.edgeAdmin);
      const c: any = cObsNow.get(id);
      if (r.status !== 200) {
        problems.push(`obs ${id}: edge ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
        continue;
      }
      const e = r.body;
      if (e.sync_status !== 'synced') problems.push(`obs ${id}: sync_status ${e.sync_status}`);
      if (c && (e.status !== c.status || iso(e.end_time) !== iso(c.end_time) || e.mean_pwv !== c.mean_pwv)) {
        problems.push(`obs ${id}: edge ${e.status}/${e.end_time}/${e.mean_pwv} central ${c.status}/${iso(c.end_time)}/${c.mean_pwv}`);
      }
      const have = new Set((e.raw_data_files as any[]).map((f) => f.id));
      for (const f of filesOf.get(id) ?? []) if (!have.has(f)) problems.push(`obs ${id}: file ${f} not listed at the edge`);
      for (const f of e.raw_data_files as any[]) {
        const m = M.files.get(f.id);
        if (m && (f.name !== m.name || f.path !== m.path || f.size !== m.size || f.checksum !== m.checksum || (f.raw_data_package_id ?? null) !== m.pkg)) {
          problems.push(`file ${f.id}: edge ${JSON.stringify(f)} vs acked ${JSON.stringify(m)}`);
        }
        if (f.sync_status !== 'synced' && m) problems.push(`file ${f.id}: sync_status ${f.sync_status}`);
      }
      for (const p of e.raw_data_packages as any[]) {
        const cp: any = cPkgNow.get(p.id);
        if (cp && (p.state !== cp.state || (p.size ?? null) !== cp.size || (p.checksum ?? null) !== cp.checksum)) {
          problems.push(`pkg ${p.id}: edge ${p.state}/${p.size}/${p.checksum} central ${cp.state}/${cp.size}/${cp.checksum}`);
        }
        if (p.sync_status !== 'synced' && M.pkgs.has(p.id)) problems.push(`pkg ${p.id}: sync_status ${p.sync_status}`);
      }
    }
  }));
  return problems;
}

/** Every page of the site's observations, following X-Next-Cursor with a drawn page size. */
async function listAll(base: string, token: string, rnd: Rnd): Promise<string[] | string> {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 1000; page++) {
    const r = await call(base, 'GET', `/executed_obs_units/?site=${S.site}&limit=${pick(rnd, [7, 100, 1000])}${cursor ? `&cursor=${cursor}` : ''}`, token);
    if (r.status !== 200) return `page ${page}: ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`;
    ids.push(...(r.body as any[]).map((o) => o.id as string));
    cursor = r.headers?.get('x-next-cursor') ?? null;
    if (!cursor) return ids;
  }
  return 'more than 1000 pages';
}

async function compareListings(rnd: Rnd): Promise<void> {
  const c = S.centrals[0] ?? S.centrals[1];
  const [atEdge, atCentral] = await Promise.all([listAll(S.edgeUrl, S.edgeAdmin, rnd), listAll(c!.url, S.centralAdminToken, rnd)]);
  if (typeof atEdge === 'string' || typeof atCentral === 'string') {
    finding('listing_failed', { atEdge: typeof atEdge === 'string' ? atEdge : 'ok', atCentral: typeof atCentral === 'string' ? atCentral : 'ok' });
    return;
  }
  const dupE = atEdge.length - new Set(atEdge).size;
  const edgeIds = atEdge.filter((x) => !poison.discardedRows.has(x));
  const central = new Set(atCentral);
  const edge = new Set(edgeIds);
  const onlyE = edgeIds.filter((x) => !central.has(x));
  const onlyC = atCentral.filter((x) => !edge.has(x));
  const missingAcked = [...M.obs.keys()].filter((x) => !edge.has(x));
  const sameOrder = edgeIds.join() === atCentral.join();
  if (dupE || onlyE.length || onlyC.length || missingAcked.length || !sameOrder) {
    finding('listings_disagree', { edge: edgeIds.length, central: atCentral.length, dupE, onlyE: onlyE.slice(0, 5), onlyC: onlyC.slice(0, 5), missingAcked: missingAcked.slice(0, 5), sameOrder });
  }
}

/** Runs the edge checks; stops the edge (SIGTERM) for the offline verify. Returns `opsdb buffer stats` offline. */
export async function checkEdge(rnd: Rnd, final: any): Promise<string> {
  let problems: string[] = [];
  for (let attempt = 0; attempt < 10; attempt++) {
    problems = await compareEdge();
    if (problems.length === 0) break;
    log(`edge vs central: ${problems.length} differences (attempt ${attempt + 1}); e.g. ${problems[0]}`);
    await sleep(3000);
  }
  if (problems.length) finding('edge_disagrees_with_central', { count: problems.length, sample: problems.slice(0, 15) });
  await compareListings(rnd);
  // A sample of the acknowledged transactions reads synced at the edge.
  let notSynced = 0;
  for (const a of M.acked.filter((a, k) => k % 7 === 0 && !poison.discarded.has(a.tx))) {
    const r = await call(S.edgeUrl, 'GET', `/api/transactions/${a.tx}`, S.edgeAdmin);
    if ((r.status !== 200 || r.body.state !== 'synced') && ++notSynced <= 5) finding('acked_tx_not_synced_at_edge', { tx: a.tx, status: r.status, body: r.body });
  }
  const health = await call(S.edgeUrl, 'GET', '/health', null);
  if (health.status !== 200 || health.body?.status !== 'healthy') finding('edge_not_healthy', health);
  for (const i of [0, 1] as const) {
    const c = S.centrals[i];
    const h = c ? await call(c.url, 'GET', '/health', null) : null;
    if (h && (h.status !== 200 || h.body?.status !== 'healthy')) finding('central_not_healthy', { central: i, h });
  }
  const v1 = await runCli(['buffer', 'verify'], S.bufEnv, 300_000);
  if (v1.code !== 0) finding('buffer_verify_live', (v1.stdout + v1.stderr).slice(0, 3000));
  const sites = await call((S.centrals[0] ?? S.centrals[1])!.url, 'GET', '/api/sites/', S.centralAdminToken);
  const siteInfo = Array.isArray(sites.body) ? sites.body.find((s: any) => s.name === S.site) : null;
  if (!siteInfo) finding('site_not_listed_at_central', { status: sites.status, body: sites.body });
  else {
    if (siteInfo.edge_conflict) finding('central_reports_edge_conflict', siteInfo);
    if (siteInfo.lag_transactions !== 0) finding('site_lag_after_drain', { lag: siteInfo.lag_transactions, reported_backlog: siteInfo.reported_backlog });
    if (final && siteInfo.last_applied_seq !== final.accepted_total) finding('site_last_applied_seq', { site: siteInfo.last_applied_seq, accepted: final.accepted_total });
  }
  const metrics = await call(S.edgeUrl, 'GET', '/metrics', S.edgeAdmin);
  if (metrics.status === 200 && typeof metrics.body === 'string') {
    const text = metrics.body;
    const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
    const st = (await call(S.edgeUrl, 'GET', '/buffer-stats', null)).body;
    const pairs: [string, number][] = [['opsdb_buffer_pending_transactions', st.pending_transactions], ['opsdb_buffer_failed_transactions', st.failed_transactions],
      ['opsdb_buffer_accepted_total', st.accepted_total], ['opsdb_sync_applied_total', st.applied_total], ['opsdb_buffer_in_flight_transactions', st.in_flight_transactions]];
    const off = pairs.filter(([n, v]) => metric(n) !== v).map(([n, v]) => ({ n, metric: metric(n), stats: v }));
    if (off.length) finding('metrics_disagree_with_buffer_stats', off);
  } else finding('metrics_unreadable', { status: metrics.status });
  await stopEdge('SIGTERM');
  const v2 = await runCli(['buffer', 'verify'], S.bufEnv, 300_000);
  if (v2.code !== 0) finding('buffer_verify_stopped', (v2.stdout + v2.stderr).slice(0, 3000));
  return (await runCli(['buffer', 'stats'], S.bufEnv)).stdout;
}
