/**
 * The system under test and its start/stop: a central database on the run's own cluster, two centrals
 * on it, a fault proxy in front of one, an edge daemon behind the proxy, and Redis for the redis backend.
 * Faults and checks reach the components through `S`.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { FaultProxy } from '../../test/support/fault-proxy.js';
import * as P from '../../test/support/processes.js';
import { freePort } from '../../test/support/ports.js';
import { startRedisServer, type RedisServer } from '../../test/support/services.js';
import { mountSmallDisk } from '../../test/support/small-disk.js';
import { PgAccounts } from '../../src/central/accounts.js';
import type { PgCluster } from './cluster.js';
import type { Options } from './options.js';
import { sleep } from './random.js';
import { finding, log } from './report.js';

export interface System {
  opts: Options;
  runDir: string;
  cluster: PgCluster;
  db: P.CentralDatabase;
  site: string;
  /** Pool for the checks (application_name chaos-*: pg-terminate spares it). */
  verifyPool: pg.Pool;
  /** Pool on the `postgres` database: drop/create for restores, pg_terminate_backend. */
  adminPool: pg.Pool;
  /** Writers 0…clients (the last writes into poison windows), as central users with their tokens. */
  users: { id: number; token: string }[];
  centralAdminToken: string;
  centralPorts: [number, number];
  centrals: [P.DaemonProcess | null, P.DaemonProcess | null];
  /** The central the proxy forwards to. */
  target: 0 | 1;
  proxy: FaultProxy;
  edgeUrl: string;
  edge: P.DaemonProcess | null;
  edgeEnv: Record<string, string>;
  /** The environment `opsdb buffer …` needs beside the daemon. */
  bufEnv: Record<string, string>;
  edgeAdmin: string;
  edgeDataDir: string;
  edgeUpSince: number;
  redis: RedisServer | null;
  redisDir: string;
  redisPort: number;
  /** The tmpfs DATA_DIR lives on (small-disk runs). */
  disk: { path: string; unmount(): void } | null;
  /** While the disk is full, and 35 s after (the local store catches up on a timer), a 404 read is documented. */
  diskFullUntil: number;
  /** Since when the proxy breaks the link (null: passing). */
  linkBrokenSince: number | null;
  brokenMode: string;
  /** Error and fatal log lines of the daemons, by message. */
  errorLines: Record<string, number>;
}

// Assigned once by setUp; every other module runs after it.
export let S: System;

/** A component some fault is stopping, restarting or restoring: other faults of it wait. */
export const busy = { edge: false, central: false, pg: false, poison: false, redis: false, disk: false, restore: false };
/** Fault events by kind (and sub-kinds such as proxy:blackhole). */
export const faultCounts: Record<string, number> = {};

/** A query for the checks, retried while PostgreSQL is restarting. */
export async function q<T = any>(sql: string, params: unknown[] = []): Promise<T[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await S.verifyPool.query(sql, params)).rows as T[];
    } catch (err) {
      if (attempt > 8) throw err;
      await sleep(1000);
    }
  }
}

function keepLog(name: string, lines: string[]): void {
  for (const l of lines) {
    if (!/"level":(50|60)/.test(l)) continue;
    let msg = l;
    try {
      msg = String(JSON.parse(l).msg);
    } catch {}
    const k = `${name.replace(/-\d+$/, '')}: ${msg.slice(0, 160)}`;
    S.errorLines[k] = (S.errorLines[k] ?? 0) + 1;
  }
  try {
    appendFileSync(join(S.runDir, `${name}.log`), lines.join('\n') + '\n');
  } catch {}
}

let centralGen = 0;
let edgeGen = 0;

export async function startCentral(i: 0 | 1): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      S.centrals[i] = await P.spawnCentral({ DATABASE_URL: S.db.url, PORT: String(S.centralPorts[i]) }, 30_000);
      return;
    } catch (err) {
      if (attempt >= 5) throw err;
      log(`central ${i} did not start (attempt ${attempt}): ${(err as Error).message.slice(0, 300)}`);
      await sleep(1000 * attempt);
    }
  }
}

export async function stopCentral(i: 0 | 1, sig: NodeJS.Signals): Promise<void> {
  const c = S.centrals[i];
  if (!c) return;
  S.centrals[i] = null;
  const code = await c.kill(sig);
  keepLog(`central${i}-${++centralGen}`, c.lines);
  if (sig === 'SIGTERM' && code !== 0) finding('central_bad_exit', { central: i, code, tail: c.lines.slice(-5) });
}

export async function startEdge(): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      S.edge = await P.startEdgeProcess(S.edgeEnv);
      S.edgeUpSince = Date.now();
      const opened = S.edge.lines.find((l) => l.includes('"buffer opened"'));
      if (opened) log(`edge up: ${opened.replace(/.*"pid":\d+,/, '').slice(0, 200)}`);
      return;
    } catch (err) {
      const msg = (err as Error).message;
      if (attempt >= 20) throw err;
      log(`edge did not start (attempt ${attempt}): ${msg.slice(0, 500)}`);
      if (/in use by another opsdb process/.test(msg)) finding('edge_restart_refused', msg.slice(0, 500));
      // Expected while Redis is down (the edge cannot open its buffer) or the disk is full; otherwise worth a look.
      const redisDown = S.opts.backend === 'redis' && /Redis/.test(msg);
      if (!redisDown && S.diskFullUntil !== Infinity) finding('edge_start_failed', { attempt, msg: msg.slice(0, 800) });
      await sleep(1000);
    }
  }
}

export async function stopEdge(sig: NodeJS.Signals): Promise<void> {
  const e = S.edge;
  if (!e) return;
  S.edge = null;
  const t = Date.now();
  const code = await e.kill(sig);
  keepLog(`edge-${++edgeGen}`, e.lines);
  if (sig === 'SIGTERM') {
    const took = Date.now() - t;
    if (code !== 0) finding('edge_term_bad_exit', { code, took, tail: e.lines.slice(-5) });
    if (took > 8000) finding('edge_term_slow', { took, tail: e.lines.slice(-5) });
  }
}

/** PostgreSQL accepting connections again (started if a fault left it stopped). */
export async function ensurePg(): Promise<void> {
  if (await S.cluster.isUp()) return;
  try {
    await S.cluster.start();
  } catch (err) {
    log((err as Error).message.slice(0, 300));
  }
  await P.waitFor(() => S.cluster.isUp(), 60_000, 'PostgreSQL up');
}

/** Everything up, and the edge holding central's users and reference data. */
export async function setUp(opts: Options, runDir: string, cluster: PgCluster): Promise<void> {
  const site = `chaos-${opts.seed}`.slice(0, 60);
  const db = await P.centralDatabase(`chaos_${opts.seed}`);
  pg.types.setTypeParser(20, (v: string) => Number(v));
  const verifyPool = new pg.Pool({ connectionString: db.url, max: 3, application_name: 'chaos-verify' });
  verifyPool.on('error', () => {});
  const adminPool = new pg.Pool({ connectionString: cluster.adminUrl, max: 1, application_name: 'chaos-admin' });
  adminPool.on('error', () => {});
  const siteToken = await P.addSite(db.url, site);
  const accounts = new PgAccounts(db.pool);
  const users: System['users'] = [];
  for (let i = 0; i <= opts.clients; i++) {
    const id = await accounts.ensureUser(`chaos-user-${i}`, ['observer']);
    users.push({ id, token: (await accounts.createToken(id, { name: 'chaos', scopes: [] })).token });
  }
  const centralAdminId = await accounts.ensureUser('chaos-central-admin', ['admin']);
  const centralAdminToken = (await accounts.createToken(centralAdminId, { name: 'chaos', scopes: [] })).token;
  let disk: System['disk'] = null;
  if (opts.smallDiskMb) {
    disk = mountSmallDisk(`chaos-${opts.seed}-disk`, opts.smallDiskMb * 1024 * 1024); // sets OPSDB_TEST_TMP
    log(`DATA_DIR on a tmpfs of ${opts.smallDiskMb} MB at ${disk.path}`);
  }
  const dir = await P.edgeDir(`chaos-${opts.seed}`);
  process.env.OPSDB_TEST_TMP = runDir;
  const centralPorts: [number, number] = [await freePort(), await freePort()];
  const proxy = await FaultProxy.start(centralPorts[0], 'pass');
  const edgePort = await freePort();
  const edgeEnv: Record<string, string> = {
    SITE_NAME: site, DATA_DIR: dir.dataDir, CENTRAL_URL: proxy.url, SITE_TOKEN: siteToken, PORT: String(edgePort),
    SYNC_INTERVAL_MS: '300', RETRY_BASE_MS: '100', RETRY_MAX_MS: '2000', SYNC_TIMEOUT_MS: opts.syncTimeoutMs, MIN_FREE_DISK_BYTES: '0',
    SYNC_BATCH_SIZE: opts.batch, SYNC_PIPELINE: opts.pipeline,
  };
  if (opts.bufferMax) edgeEnv.BUFFER_MAX_BYTES = opts.bufferMax;
  const redisDir = join(runDir, 'redis');
  let redis: RedisServer | null = null;
  if (opts.backend === 'redis') {
    mkdirSync(redisDir, { recursive: true });
    redis = await startRedisServer(redisDir);
    edgeEnv.BUFFER_BACKEND = 'redis';
    edgeEnv.REDIS_URL = redis.url;
  }
  S = {
    opts, runDir, cluster, db, site, verifyPool, adminPool, users, centralAdminToken, centralPorts, centrals: [null, null], target: 0, proxy,
    edgeUrl: `http://127.0.0.1:${edgePort}`, edge: null, edgeEnv,
    bufEnv: { SITE_TYPE: 'secondary', DATA_DIR: dir.dataDir, SITE_NAME: site, ...(redis ? { BUFFER_BACKEND: 'redis', REDIS_URL: redis.url } : {}) },
    edgeAdmin: dir.adminToken, edgeDataDir: dir.dataDir, edgeUpSince: Date.now(), redis, redisDir, redisPort: redis?.port ?? 0, disk,
    diskFullUntil: 0, linkBrokenSince: null, brokenMode: '', errorLines: {},
  };
  await startCentral(0);
  await startCentral(1);
  await startEdge();
  // Central's accounts and reference data reach the edge with a pull.
  await P.waitFor(async () => {
    const r = await fetch(`${S.edgeUrl}/auth/me`, { headers: { authorization: `Bearer ${users.at(-1)!.token}` } });
    return r.status === 200;
  }, 30_000, 'central users at the edge');
  await P.waitFor(async () => {
    const r = await fetch(`${S.edgeUrl}/obs_units/`, { headers: { authorization: `Bearer ${users[0]!.token}` } });
    return r.status === 200 && ((await r.json()) as unknown[]).length > 0;
  }, 30_000, 'reference data at the edge');
  log(`setup done: site ${site}, central ports ${centralPorts.join(',')}, edge ${S.edgeUrl}, proxy ${proxy.url}`);
}

/** Everything started here stopped; with `keep` false, the database and the edge's data removed. */
export async function tearDown(keep: boolean): Promise<void> {
  if (!S) return;
  // Through stopEdge/stopCentral, so that the logs of daemons still running are written too.
  await stopEdge('SIGKILL');
  await stopCentral(0, 'SIGKILL');
  await stopCentral(1, 'SIGKILL');
  await S.proxy.close().catch(() => {});
  await S.verifyPool.end().catch(() => {});
  await S.adminPool.end().catch(() => {});
  await P.killAllProcesses();
  if (S.redis) await S.redis.stop();
  if (keep) {
    await S.db.pool.end().catch(() => {});
    return;
  }
  await S.db.drop().catch((err) => log(`drop database: ${(err as Error).message}`));
  if (S.disk) S.disk.unmount();
}
