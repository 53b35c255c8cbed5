/**
 * The fault schedule: every CHAOS_EVENT_GAP_MS a kind drawn by weight (options.ts FAULT_WEIGHTS) is
 * injected, unless the component it hits is still busy with an earlier fault. Faults that last (a stopped
 * process, a frozen one, a full disk) run in the background; the next event does not wait for them.
 */
import { closeSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { FaultMode } from '../../test/support/fault-proxy.js';
import { runCli } from '../../test/support/cli.js';
import { startRedisServer } from '../../test/support/services.js';
import { call } from './http.js';
import { M } from './model.js';
import { checkRecentReadable } from './monitor.js';
import type { FaultKind } from './options.js';
import { expectedFailure, poison, poisonWindow } from './poison.js';
import { between, pick, sleep, weighted, type Rnd } from './random.js';
import { finding, log } from './report.js';
import { dumps, restoreCentral, restores, takeDump } from './restore.js';
import { S, busy, ensurePg, faultCounts, startCentral, startEdge, stopCentral, stopEdge } from './system.js';

const PROXY_MODES: [string, (r: Rnd) => FaultMode][] = [
  ['refuse', () => 'refuse'], ['blackhole', () => 'blackhole'], ['reset', () => 'reset'], ['drop-response', () => 'drop-response'],
  ['reset-mid-body', () => 'reset-mid-body'], ['stall-body', () => 'stall-body'], ['delay', (r) => ({ delay: 50 + Math.floor(r() * 800) })],
  ['rate', (r) => ({ rate: 20_000 + Math.floor(r() * 100_000) })], ['downRate', (r) => ({ downRate: 20_000 + Math.floor(r() * 100_000) })],
  ['gateway-502', () => ({ respond: { status: 502, body: '<html>bad gateway</html>', headers: { 'content-type': 'text/html' } } })],
  ['portal-200', () => ({ respond: { status: 200, body: '<html>login</html>', headers: { 'content-type': 'text/html' } } })],
];
/** Modes in which no batch gets through: the edge must show the link as broken. */
const BREAKING = ['refuse', 'blackhole', 'reset', 'reset-mid-body', 'drop-response', 'gateway-502', 'portal-200'];

/** Runs `fn` in the background with `flags` of `busy` set, cleared when it ends. */
function background(flags: (keyof typeof busy)[], what: string, fn: () => Promise<void>): void {
  for (const f of flags) busy[f] = true;
  void fn()
    .catch((err) => log(`${what} failed: ${(err as Error).stack}`))
    .finally(() => {
      for (const f of flags) busy[f] = false;
    });
}

function skipped(kind: FaultKind): boolean {
  switch (kind) {
    case 'edge-kill': case 'edge-term': case 'edge-freeze': return busy.edge;
    case 'poison': return busy.poison;
    case 'redis-kill': case 'redis-freeze': return busy.redis;
    case 'disk-full': return busy.disk;
    case 'pg-restart': case 'pg-down': return busy.pg;
    case 'central-dump': return busy.central || busy.pg || busy.restore;
    case 'central-restore': return busy.pg || busy.central || busy.poison || busy.restore || dumps.length === 0;
    case 'central-kill': case 'central-term': case 'central-down': case 'central-freeze': return busy.central;
    default: return false;
  }
}

async function centralAdmin(rnd: Rnd): Promise<void> {
  // An admin at central finishes/aborts an observation the edge created, finalizes one of its packages,
  // or changes a writer's preferences: central's copy changes under the edge's feet.
  const obs = [...M.obs.values()];
  if (!obs.length) return;
  const c = S.centrals[rnd() < 0.5 ? 0 : 1] ?? S.centrals[0] ?? S.centrals[1];
  if (!c) return;
  const burst = 1 + Math.floor(rnd() * 4);
  for (let b = 0; b < burst; b++) {
    const x = rnd();
    if (x < 0.6) {
      // Mostly recent observations: the ones whose finishes may still be on their way from the edge.
      const o = rnd() < 0.7 ? obs[Math.max(0, obs.length - 1 - Math.floor(rnd() * 80))]! : obs[Math.floor(rnd() * obs.length)]!;
      const status = pick(rnd, ['aborted', 'failed', 'success']);
      const end_time = new Date(Date.parse(o.start_time) + 1000 * (10_000 + Math.floor(rnd() * 5000))).toISOString();
      const mark = { tx: '?', status, end_time };
      o.central.push(mark); // before the call: the edge may read central's copy before the answer is here
      const res = await call(c.url, 'PUT', `/executed_obs_units/${o.id}/finish`, S.centralAdminToken, { status, end_time });
      log(`central admin finish ${o.id} ${status} -> ${res.status}${res.status >= 300 ? ' ' + JSON.stringify(res.body).slice(0, 200) : ''}`);
      if (res.status >= 200 && res.status < 300) mark.tx = res.body.transaction_id;
      else if (res.status !== 0 && res.status !== 503) { // lost or 503: it may have applied ('?')
        o.central.splice(o.central.indexOf(mark), 1);
        if (res.status !== 404) finding('central_admin_unexpected', { status: res.status, body: res.body });
      }
    } else if (x < 0.85) {
      const pkgs = [...M.pkgs.values()];
      const p = rnd() < 0.7 ? pkgs[Math.max(0, pkgs.length - 1 - Math.floor(rnd() * 80))]! : pkgs[Math.floor(rnd() * pkgs.length)]!;
      const was = p.centralFinalize;
      p.centralFinalize = true;
      const res = await call(c.url, 'PUT', `/raw_data_package/${p.id}/finalize`, S.centralAdminToken, { size: 42, checksum: 'sha256:central' });
      log(`central admin finalize ${p.id} -> ${res.status}`);
      if (!((res.status >= 200 && res.status < 300) || res.status === 0 || res.status === 503)) {
        p.centralFinalize = was;
        if (res.status !== 404) finding('central_admin_unexpected', { status: res.status, body: res.body });
      }
    } else {
      const uid = pick(rnd, [...M.prefs.keys()]);
      if (uid === undefined) continue;
      const st = M.prefs.get(uid)!;
      const prefs = { theme: 'central', n: Math.floor(rnd() * 1e6) };
      const mark = { tx: '?', prefs };
      (st.central ??= []).push(mark);
      const res = await call(c.url, 'POST', '/api/demo/update-user-preferences', S.centralAdminToken, { user_id: uid, preferences: prefs });
      log(`central admin preferences of user ${uid} -> ${res.status}`);
      if (res.status >= 200 && res.status < 300) mark.tx = res.body.transaction_id;
      else if (res.status !== 0 && res.status !== 503) {
        st.central.splice(st.central.indexOf(mark), 1);
        finding('central_admin_unexpected', { status: res.status, body: res.body });
      }
    }
  }
}

/** Fills the edge's tmpfs to `leave` bytes for `ms`, taking back what the edge frees meanwhile. */
async function fillDisk(leave: number, ms: number): Promise<void> {
  const dir = S.disk!.path;
  const file = join(dir, `filler-${Date.now()}`);
  try {
    const st = statfsSync(dir);
    const size = Math.max(0, st.bavail * st.bsize - leave);
    log(`disk full: ${Math.round(size / 1e6)} MB filler, ${leave} bytes left, for ${ms} ms`);
    S.diskFullUntil = Infinity;
    const fd = openSync(file, 'w');
    const chunk = Buffer.alloc(1 << 20, 1);
    let written = 0;
    try {
      while (written < size) written += writeSync(fd, chunk, 0, Math.min(chunk.length, size - written));
    } catch (err) {
      log(`disk full: filler stopped at ${written} bytes (${(err as Error).message})`);
    }
    // Another program keeps writing: what the edge frees (its disk reserve) is taken too.
    const until = Date.now() + ms;
    while (Date.now() < until) {
      await sleep(300);
      const st2 = statfsSync(dir);
      const more = st2.bavail * st2.bsize - leave;
      try {
        for (let w = 0; w < more; ) w += writeSync(fd, chunk, 0, Math.min(chunk.length, more - w));
      } catch {}
    }
    closeSync(fd);
  } finally {
    rmSync(file, { force: true });
    S.diskFullUntil = Date.now() + 35_000;
    log('disk full: filler removed');
  }
}

/** SIGSTOP a process for `ms`, then SIGCONT (in the background). */
function freeze(pid: number, ms: number, flag: 'edge' | 'central'): void {
  process.kill(pid, 'SIGSTOP');
  background([flag], 'freeze', async () => {
    await sleep(ms);
    try {
      process.kill(pid, 'SIGCONT');
    } catch {}
  });
}

async function inject(kind: FaultKind, rnd: Rnd): Promise<void> {
  switch (kind) {
    case 'central-dump':
      return background(['restore'], 'central dump', takeDump);
    case 'central-restore': {
      const d = rnd() < 0.6 ? dumps.at(-1)! : pick(rnd, dumps);
      const down = Math.floor(rnd() * 4000);
      return background(['restore', 'central', 'pg', 'poison'], 'central restore', () =>
        restoreCentral(d, down).catch((err) => finding('restore_fault_failed', String((err as Error).message).slice(0, 500))));
    }
    case 'proxy-fault': {
      const [name, m] = pick(rnd, PROXY_MODES);
      const mode = m(rnd);
      log(`proxy -> ${name} ${JSON.stringify(mode)}`);
      S.linkBrokenSince = BREAKING.includes(name) ? Date.now() : null;
      S.brokenMode = name;
      faultCounts[`proxy:${name}`] = (faultCounts[`proxy:${name}`] ?? 0) + 1;
      return S.proxy.setMode(mode);
    }
    case 'proxy-pass':
      log('proxy -> pass');
      S.linkBrokenSince = null;
      return S.proxy.setMode('pass');
    case 'proxy-switch-central':
      S.target = S.target === 0 ? 1 : 0;
      log(`proxy target -> central ${S.target}`);
      return S.proxy.setTarget(S.centralPorts[S.target]);
    case 'edge-kill':
    case 'edge-term': {
      const down = rnd() < 0.5 ? 0 : Math.floor(rnd() * 3000);
      const sig = kind === 'edge-kill' ? 'SIGKILL' : 'SIGTERM';
      log(`edge ${sig}, restart after ${down} ms`);
      return background(['edge'], kind, async () => {
        await stopEdge(sig);
        await sleep(down);
        await startEdge();
        await checkRecentReadable();
      });
    }
    case 'central-kill':
    case 'central-term':
    case 'central-down': {
      const which = rnd() < 0.7 ? S.target : S.target === 0 ? 1 : 0;
      const sig = kind === 'central-term' ? 'SIGTERM' : 'SIGKILL';
      const down = kind === 'central-down' ? 3000 + Math.floor(rnd() * 12_000) : Math.floor(rnd() * 1500);
      log(`central ${which} ${sig}, restart after ${down} ms${which === S.target ? ' (the proxy target)' : ''}`);
      return background(['central'], kind, async () => {
        await stopCentral(which, sig);
        await sleep(down);
        await startCentral(which);
      });
    }
    case 'pg-restart':
    case 'pg-down': {
      const m = rnd() < 0.5 ? 'fast' : 'immediate';
      const down = kind === 'pg-down' ? 2000 + Math.floor(rnd() * 8000) : 0;
      log(`PostgreSQL stop -m ${m}, start after ${down} ms`);
      return background(['pg'], kind, async () => {
        await S.cluster.stop(m).catch((err) => log((err as Error).message.slice(0, 300)));
        await sleep(down);
        await ensurePg();
      });
    }
    case 'pg-terminate': {
      try {
        const { rows } = await S.adminPool.query(
          `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name NOT LIKE 'chaos%'`,
          [S.db.database.name],
        );
        log(`pg_terminate_backend: ${rows[0].n} central connections`);
      } catch (err) {
        log(`pg_terminate_backend failed: ${(err as Error).message}`);
      }
      return;
    }
    case 'cli': {
      // The operator's CLI beside the running daemon, on the same buffer.
      const cmd = pick(rnd, [['buffer', 'stats'], ['buffer', 'verify'], ['buffer', 'ls', '--json'], ['buffer', 'ls', '--state', 'failed']]);
      const res = await runCli(cmd, S.bufEnv, 120_000).catch((e) => ({ code: -1, stdout: '', stderr: String(e) }));
      log(`opsdb ${cmd.join(' ')} -> exit ${res.code}`);
      if (res.code !== 0) finding('cli_failed_live', { cmd: cmd.join(' '), code: res.code, out: (res.stdout + res.stderr).slice(0, 1500) });
      return;
    }
    case 'central-admin':
      return centralAdmin(rnd);
    case 'disk-full': {
      const leave = Math.floor(rnd() * 600_000);
      const ms = 2000 + Math.floor(rnd() * 10_000);
      return background(['disk'], 'disk full', () => fillDisk(leave, ms));
    }
    case 'central-freeze': {
      const which = rnd() < 0.7 ? S.target : S.target === 0 ? 1 : 0;
      const c = S.centrals[which];
      if (!c) return;
      const ms = 2000 + Math.floor(rnd() * 8000);
      log(`central ${which} SIGSTOP for ${ms} ms`);
      return freeze(c.pid, ms, 'central');
    }
    case 'edge-freeze': {
      const e = S.edge;
      if (!e) return;
      const ms = 1000 + Math.floor(rnd() * 5000);
      log(`edge SIGSTOP for ${ms} ms`);
      return freeze(e.pid, ms, 'edge');
    }
    case 'poison':
      return background(['poison'], 'poison window', () => poisonWindow(rnd));
    case 'redis-kill':
    case 'redis-freeze': {
      const r0 = S.redis;
      if (!r0) return;
      const ms = kind === 'redis-kill' ? Math.floor(rnd() * 3000) : 1000 + Math.floor(rnd() * 6000);
      log(kind === 'redis-kill' ? `redis SIGKILL, restart after ${ms} ms` : `redis SIGSTOP for ${ms} ms`);
      return background(['redis'], kind, async () => {
        if (kind === 'redis-kill') {
          S.redis = null;
          await r0.kill();
          await sleep(ms);
          S.redis = await startRedisServer(S.redisDir, { port: S.redisPort });
        } else {
          process.kill(r0.pid, 'SIGSTOP');
          await sleep(ms);
          process.kill(r0.pid, 'SIGCONT');
        }
      });
    }
    case 'edge-dead-letters': {
      // The operator looks at the dead letters: nothing but poison may be failed or blocked.
      const res = await call(S.edgeUrl, 'GET', '/api/buffer/failed', S.edgeAdmin);
      const blocked = await call(S.edgeUrl, 'GET', '/api/buffer/failed?state=blocked', S.edgeAdmin);
      const odd = res.status === 200 && Array.isArray(res.body) ? res.body.filter((t: any) => !expectedFailure(t)) : [];
      if (odd.length) finding('failed_transactions', odd.slice(0, 3).map((t: any) => ({ seq: t.seq, endpoint: t.endpoint, last_error: t.last_error })));
      if (blocked.status === 200 && Array.isArray(blocked.body) && blocked.body.length && poison.units.size === 0) {
        finding('blocked_transactions', blocked.body.slice(0, 3).map((t: any) => ({ seq: t.seq, endpoint: t.endpoint, depends_on: t.depends_on })));
      }
      log(`edge dead letters: failed ${res.status === 200 ? res.body.length : res.status}, blocked ${blocked.status === 200 ? blocked.body.length : blocked.status}`);
      return;
    }
  }
}

/**
 * Injects faults until `endAt`. With restores on, one dump early and one restore later happen in every run
 * besides the drawn ones.
 */
export async function runFaults(rnd: Rnd, endAt: number): Promise<void> {
  const kinds = S.opts.kinds as Record<FaultKind, number>;
  if (kinds['central-restore']) {
    const duration = S.opts.durationMs;
    const dumpAt = duration * between(rnd, 0.12, 0.35);
    const restoreAt = duration * between(rnd, 0.5, 0.8);
    void (async () => {
      await sleep(dumpAt);
      while (busy.pg || busy.restore) await sleep(200);
      busy.restore = true;
      await takeDump().finally(() => (busy.restore = false));
      await sleep(Math.max(0, restoreAt - dumpAt));
      if (restores.length || !dumps.length) return;
      while (busy.pg || busy.central || busy.poison || busy.restore) await sleep(200);
      if (Date.now() >= endAt) return;
      background(['restore', 'central', 'pg', 'poison'], 'central restore', () =>
        restoreCentral(dumps[0]!, 1000).catch((err) => finding('restore_fault_failed', String((err as Error).message).slice(0, 500))));
    })();
  }
  const [gapMin, gapMax] = S.opts.gapMs;
  while (Date.now() < endAt) {
    await sleep(between(rnd, gapMin, gapMax));
    if (Date.now() >= endAt) break;
    const kind = weighted(rnd, kinds);
    if (skipped(kind)) continue;
    faultCounts[kind] = (faultCounts[kind] ?? 0) + 1;
    try {
      await inject(kind, rnd);
    } catch (err) {
      log(`event ${kind} failed: ${(err as Error).stack}`);
    }
  }
}

export const faultEvents = (): number => Object.entries(faultCounts).filter(([k]) => !k.includes(':')).reduce((s, [, n]) => s + n, 0);
