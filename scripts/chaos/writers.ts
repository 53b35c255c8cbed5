/**
 * Writers on every write endpoint of the edge, each with its own seeded mix of operations, recording in
 * the model what was acknowledged; they also read their writes back (§2.7). The last writer only writes
 * while a poison window is open, naming the poison obs unit.
 */
import { call, iso, type Res } from './http.js';
import { M, countOp, type FileModel, type ObsModel, type PkgModel } from './model.js';
import { poison } from './poison.js';
import { between, mulberry32, pick, sleep, weighted } from './random.js';
import { finding } from './report.js';
import { S } from './system.js';

const OPS = { createObs: 26, start: 8, finish: 16, file: 10, bulk: 8, pkg: 8, finalize: 7, prefs: 9, read: 8, bigBulk: 0.6 } as const;
type Op = keyof typeof OPS;

let stopping = false;
let obsCounter = 0;

/** Classifies a write's answer and records an acknowledged one. */
function outcome(op: string, client: number, r: Res, okStatus: number[]): 'acked' | 'not' | 'unknown' {
  const poisoner = client === S.opts.clients;
  if (okStatus.includes(r.status)) {
    countOp(op, 'acked');
    M.acked.push({ tx: r.body.transaction_id, op, client, at: Date.now() });
    return 'acked';
  }
  if (r.status === 0) {
    if (r.err === 'ECONNREFUSED') {
      M.refused++;
      countOp(op, 'refused');
      return 'not';
    }
    if (r.err === 'timeout') finding('edge_request_timeout', { op, client });
    M.lostResponses++;
    countOp(op, `lost:${r.err}`);
    return 'unknown';
  }
  if (r.status === 503) {
    const msg = String(r.body?.error?.message ?? '');
    if (/may or may not/.test(msg)) {
      M.maybe.push({ tx: r.body.error.details?.transaction_id, op });
      countOp(op, '503-maybe');
      return 'unknown';
    }
    if (/nothing was stored/i.test(msg)) {
      M.stoppingRefusals++;
      countOp(op, '503-not-stored');
      return 'not';
    }
  }
  countOp(op, `http_${r.status}`);
  if (r.status === 507 && (S.opts.bufferMax || S.opts.smallDiskMb)) return 'not';
  // The poison writer, after the edge learned of the delete; or naming a row whose creation was discarded.
  if (r.status === 422 && poisoner && r.body?.error?.code === 'reference_not_found') return 'not';
  if (r.status === 404 && poisoner && poison.discarded.size) return 'not';
  // A full disk: the local store did not take some buffered writes yet (documented, operations.md), so an update naming such a row is 404.
  if (r.status === 404 && Date.now() < S.diskFullUntil && r.body?.error?.code === 'not_found') return 'not';
  finding(r.status >= 500 ? 'edge_5xx' : 'edge_unexpected_4xx', { op, client, status: r.status, body: r.body });
  return 'not';
}

/** What one writer made, to pick the targets of its updates and reads. */
interface Mine {
  obs: ObsModel[];
  pkgs: PkgModel[];
  files: FileModel[];
}

async function createObs(i: number, r: () => number, tok: string, mine: Mine): Promise<void> {
  const poisoner = i === S.opts.clients;
  const n = ++obsCounter;
  const start = new Date(Date.UTC(2025, 0, 1) + n * 10_000 + i).toISOString();
  const nfiles = Math.floor(r() * 5);
  const files = Array.from({ length: nfiles }, (_, k) => ({ name: `c${i}_${n}_${k}.fits`, path: `/data/c${i}/${n}/${k}.fits`, size: 1000 + k, checksum: `sha256:${n}:${k}`, file_type: 'fits' }));
  const ended = r() < 0.3;
  const obs_data = {
    obs_unit_id: poisoner ? poison.unit! : 1 + Math.floor(r() * 3), start_time: start, mean_pwv: Math.round(r() * 500) / 100, mean_elevation: Math.round(r() * 900) / 10,
    package_name: `pkg-c${i}-${n}`, instrument_module_configuration_id: 1, ...(ended ? { end_time: new Date(Date.parse(start) + 1800_000).toISOString() } : {}),
  };
  const res = await call(S.edgeUrl, 'POST', '/api/demo/create-observation', tok, { obs_data, raw_files: files });
  if (outcome('createObs', i, res, [201]) !== 'acked') return;
  const b = res.body;
  const om: ObsModel = {
    id: b.executed_obs_unit_id, tx: b.transaction_id, client: i, obs_unit_id: obs_data.obs_unit_id, start_time: start, mean_pwv: obs_data.mean_pwv,
    mean_elevation: obs_data.mean_elevation, imc: 1, status: ended ? 'success' : 'running', end_time: ended ? obs_data.end_time! : null,
    finishes: [], unknownAfter: [], central: [],
  };
  M.obs.set(om.id, om);
  mine.obs.push(om);
  if (poisoner) poison.obs.add(om.id);
  const pm: PkgModel = { id: b.raw_data_package_id, tx: b.transaction_id, obs: om.id, name: obs_data.package_name, finalized: null, unknownFinalize: false, centralFinalize: false };
  M.pkgs.set(pm.id, pm);
  mine.pkgs.push(pm);
  (b.raw_data_file_ids as string[]).forEach((fid, k) => {
    const f = { id: fid, tx: b.transaction_id, obs: om.id, pkg: pm.id, ...files[k]! };
    M.files.set(fid, f);
    mine.files.push(f);
  });
}

async function startObs(i: number, r: () => number, tok: string, mine: Mine): Promise<void> {
  const poisoner = i === S.opts.clients;
  const n = ++obsCounter;
  const start = new Date(Date.UTC(2025, 0, 1) + n * 10_000 + i).toISOString();
  const body = { obs_unit_id: poisoner ? poison.unit! : 1 + Math.floor(r() * 3), start_time: start, mean_pwv: 1.5, mean_elevation: 30 };
  const res = await call(S.edgeUrl, 'POST', '/executed_obs_units/start', tok, body);
  if (outcome('start', i, res, [201]) !== 'acked') return;
  const om: ObsModel = {
    id: res.body.id, tx: res.body.transaction_id, client: i, obs_unit_id: body.obs_unit_id, start_time: start, mean_pwv: 1.5, mean_elevation: 30,
    imc: null, status: 'running', end_time: null, finishes: [], unknownAfter: [], central: [],
  };
  M.obs.set(om.id, om);
  mine.obs.push(om);
  if (poisoner) poison.obs.add(om.id);
}

async function finish(i: number, r: () => number, tok: string, o: ObsModel): Promise<void> {
  const status = pick(r, ['success', 'failed', 'aborted', 'interrupted']);
  const end_time = new Date(Date.parse(o.start_time) + 1000 * (60 + Math.floor(r() * 7000))).toISOString();
  const body: { status: string; end_time: string; mean_pwv?: number } = { status, end_time };
  if (r() < 0.5) body.mean_pwv = Math.round(r() * 300) / 100;
  const res = await call(S.edgeUrl, 'PUT', `/executed_obs_units/${o.id}/finish`, tok, body);
  const out = outcome('finish', i, res, [202]);
  if (out === 'acked') {
    M.deps.push({ tx: res.body.transaction_id, op: 'finish', parents: [o.tx] });
    o.finishes.push({ tx: res.body.transaction_id, ...body });
    o.unknownAfter = [];
  } else if (out === 'unknown') o.unknownAfter.push(body);
}

async function files(i: number, r: () => number, tok: string, o: ObsModel, mine: Mine, op: 'file' | 'bulk' | 'bigBulk'): Promise<void> {
  const pkgs = mine.pkgs.filter((p) => p.obs === o.id);
  const pkg = pkgs.length && r() < 0.7 ? pick(r, pkgs).id : null;
  const pkgTx = pkg ? M.pkgs.get(pkg)!.tx : null;
  const parents = [o.tx, ...(pkgTx ? [pkgTx] : [])];
  const n = ++obsCounter;
  if (op === 'file') {
    const body = { name: `f${i}_${n}.fits`, path: `/data/f/${i}/${n}.fits`, size: 5000 + n, checksum: `sha256:f${n}`, file_type: 'fits', executed_obs_unit_id: o.id, raw_data_package_id: pkg };
    const res = await call(S.edgeUrl, 'POST', '/raw_data_files/', tok, body);
    if (outcome(op, i, res, [201]) !== 'acked') return;
    M.deps.push({ tx: res.body.transaction_id, op, parents });
    const f: FileModel = { id: res.body.id, tx: res.body.transaction_id, obs: o.id, pkg, name: body.name, path: body.path, size: body.size, checksum: body.checksum, file_type: 'fits' };
    M.files.set(f.id, f);
    mine.files.push(f);
    return;
  }
  const count = op === 'bigBulk' ? 300 + Math.floor(r() * 2500) : 2 + Math.floor(r() * 20);
  const long = op === 'bigBulk' ? 'night-2026-11-26/'.repeat(10) : '';
  const list = Array.from({ length: count }, (_, k) => ({ name: `b${i}_${n}_${k}.fits`, path: `/data/b/${long}${i}/${n}/${k}.fits`, size: 7000 + k, checksum: `sha256:b${n}:${k}`, file_type: 'fits' }));
  const res = await call(S.edgeUrl, 'POST', '/raw_data_files/bulk', tok, { executed_obs_unit_id: o.id, raw_data_package_id: pkg, files: list });
  if (outcome(op, i, res, [201]) !== 'acked') return;
  M.deps.push({ tx: res.body.transaction_id, op, parents });
  (res.body.ids as string[]).forEach((fid, k) => {
    const f: FileModel = { id: fid, tx: res.body.transaction_id, obs: o.id, pkg, ...list[k]! };
    M.files.set(fid, f);
    mine.files.push(f);
  });
}

async function pkg(i: number, tok: string, o: ObsModel, mine: Mine): Promise<void> {
  const n = ++obsCounter;
  const body = { name: `pk-${i}-${n}`, executed_obs_unit_id: o.id };
  const res = await call(S.edgeUrl, 'POST', '/raw_data_package/', tok, body);
  if (outcome('pkg', i, res, [201]) !== 'acked') return;
  M.deps.push({ tx: res.body.transaction_id, op: 'pkg', parents: [o.tx] });
  const pm: PkgModel = { id: res.body.id, tx: res.body.transaction_id, obs: o.id, name: body.name, finalized: null, unknownFinalize: false, centralFinalize: false };
  M.pkgs.set(pm.id, pm);
  mine.pkgs.push(pm);
}

async function finalize(i: number, r: () => number, tok: string, mine: Mine): Promise<void> {
  if (mine.pkgs.length === 0) return;
  const p = mine.pkgs[Math.floor(r() * mine.pkgs.length)]!;
  const body = { size: 1 + Math.floor(r() * 1e9), checksum: `sha256:fin${Math.floor(r() * 1e6)}` };
  const res = await call(S.edgeUrl, 'PUT', `/raw_data_package/${p.id}/finalize`, tok, body);
  const out = outcome('finalize', i, res, [202]);
  if (out === 'acked') {
    M.deps.push({ tx: res.body.transaction_id, op: 'finalize', parents: [p.tx] });
    p.finalized = body;
    p.unknownFinalize = false;
  } else if (out === 'unknown') p.unknownFinalize = true;
}

async function prefs(i: number, r: () => number): Promise<void> {
  const user = S.users[i]!;
  const prefs = { theme: pick(r, ['dark', 'light']), n: Math.floor(r() * 1e6), client: i };
  const res = await call(S.edgeUrl, 'POST', '/api/demo/update-user-preferences', user.token, { user_id: user.id, preferences: prefs });
  const out = outcome('prefs', i, res, [200, 201, 202]);
  const st = M.prefs.get(user.id) ?? { last: null, unknownAfter: [], tx: null };
  if (out === 'acked') {
    if (st.tx) M.deps.push({ tx: res.body.transaction_id, op: 'prefs', parents: [st.tx] });
    st.last = prefs;
    st.tx = res.body.transaction_id;
    st.unknownAfter = [];
  } else if (out === 'unknown') st.unknownAfter.push(prefs);
  M.prefs.set(user.id, st);
}

/** Read-your-writes (§2.7): an acknowledged row is readable at once, with its updates, and never flips back from synced. */
async function read(i: number, r: () => number, tok: string, o: ObsModel, mine: Mine): Promise<void> {
  const x = r();
  const target = x < 0.5 || mine.files.length === 0 ? { kind: 'obs', id: o.id }
    : x < 0.75 && mine.pkgs.length ? { kind: 'pkg', id: pick(r, mine.pkgs.slice(-30)).id } : { kind: 'file', id: pick(r, mine.files.slice(-30)).id };
  const path = target.kind === 'obs' ? `/executed_obs_units/${target.id}` : target.kind === 'pkg' ? `/raw_data_package/${target.id}` : `/raw_data_files/${target.id}`;
  const res = await call(S.edgeUrl, 'GET', path, tok);
  if (res.status === 0) return;
  countOp('read', `http_${res.status}`);
  if (res.status === 200) {
    const s = res.body.sync_status as string;
    const prev = M.lastStatus.get(target.id);
    if (prev === 'synced' && s !== 'synced') finding('sync_status_went_back', { id: target.id, kind: target.kind, prev, now: s });
    M.lastStatus.set(target.id, s);
    if ((s === 'failed' || s === 'blocked') && i !== S.opts.clients) finding('row_failed_or_blocked', { id: target.id, kind: target.kind, s });
    // Updates are read back too (finish, finalize), unless central changed the row or an update's fate is unknown.
    if (target.kind === 'obs') {
      const om = M.obs.get(target.id)!;
      const want = om.finishes.at(-1) ?? { status: om.status, end_time: om.end_time };
      if (!om.central.length && !om.unknownAfter.length && (res.body.status !== want.status || iso(res.body.end_time) !== want.end_time)) {
        finding('read_your_update', { id: target.id, edge: { status: res.body.status, end_time: res.body.end_time, sync_status: s }, want, finishes: om.finishes.length });
      }
    } else if (target.kind === 'pkg') {
      const pm = M.pkgs.get(target.id)!;
      if (!pm.centralFinalize && !pm.unknownFinalize) {
        const want = pm.finalized ? { state: 'finalized', size: pm.finalized.size, checksum: pm.finalized.checksum } : { state: 'open', size: null, checksum: null };
        if (res.body.state !== want.state || (res.body.size ?? null) !== want.size || (res.body.checksum ?? null) !== want.checksum) {
          finding('read_your_update', { id: target.id, kind: 'pkg', edge: { state: res.body.state, size: res.body.size, checksum: res.body.checksum, sync_status: s }, want });
        }
      }
    }
  } else if (res.status === 404 && Date.now() < S.diskFullUntil) countOp('read', '404-disk-full');
  else if (res.status !== 503) finding('read_your_writes', { path, status: res.status, body: res.body });
}

async function writer(i: number): Promise<void> {
  const r = mulberry32(S.opts.seed * 1000 + i + 1);
  const poisoner = i === S.opts.clients;
  const mine: Mine = { obs: [], pkgs: [], files: [] };
  const tok = r() < 0.2 ? S.edgeAdmin : S.users[i]!.token; // some write as the edge's local admin
  while (!stopping) {
    const refusedBefore = M.refused;
    let op: Op = weighted(r, OPS);
    if (poisoner && poison.unit === null) {
      await sleep(100);
      continue;
    }
    if (poisoner && op === 'prefs') op = 'createObs';
    if (op === 'bigBulk' && i !== 0) op = 'bulk';
    if (mine.obs.length === 0 && op !== 'createObs' && op !== 'start' && op !== 'prefs') op = 'createObs';
    // Mostly one of its last 30 observations.
    const o = mine.obs.length ? mine.obs[Math.floor(r() * Math.min(mine.obs.length, 30)) + Math.max(0, mine.obs.length - 30)]! : null;
    const discardedBefore = o !== null && poison.discardedRows.has(o.id);
    const ackedBefore = M.acked.length;
    switch (op) {
      case 'createObs': await createObs(i, r, tok, mine); break;
      case 'start': await startObs(i, r, tok, mine); break;
      case 'finish': await finish(i, r, tok, o!); break;
      case 'file': case 'bulk': case 'bigBulk': await files(i, r, tok, o!, mine, op); break;
      case 'pkg': await pkg(i, tok, o!, mine); break;
      case 'finalize': await finalize(i, r, tok, mine); break;
      case 'prefs': await prefs(i, r); break;
      case 'read': await read(i, r, tok, o!, mine); break;
    }
    if (discardedBefore && M.acked.length > ackedBefore && ['finish', 'file', 'bulk', 'pkg'].includes(op) && M.acked.at(-1)!.client === i) {
      finding('write_on_discarded_row_accepted', { op, obs: o!.id, tx: M.acked.at(-1)!.tx });
    }
    await sleep(between(r, 80, 350) + (M.refused > refusedBefore ? 200 : 0));
  }
}

/** Starts the writers (clients + the poison writer); `stop` waits for the writes in flight. */
export function startWriters(): { stop(): Promise<void> } {
  const all = Array.from({ length: S.opts.clients + 1 }, (_, i) => writer(i).catch((err) => finding('client_crashed', String(err?.stack ?? err))));
  return {
    async stop() {
      stopping = true;
      await Promise.all(all);
    },
  };
}
