/**
 * Real processes for fault-injection tests: central (`opsdb serve` with
 * SITE_TYPE=main) next to `spawnEdge`, a database made with the CLI, sites,
 * edge data directories with a local admin, bounded polling, and the two
 * invariants every fault scenario ends with (the edge ledger; exactly one
 * copy at central of every acknowledged transaction).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import pg from 'pg';
import { createTestDatabase, type TestDatabase } from './services.js';
import { runCli } from './cli.js';
import { edgeDataDir, localClient, spawnEdge, type EdgeProcess } from './edge.js';
import { spawnDaemon, type DaemonProcess } from './daemon.js';
import { client, type Client } from './http.js';
import { FaultProxy, type FaultMode } from './fault-proxy.js';

// ----------------------------------------------------------------- processes

export type { DaemonProcess };

const live = new Set<ChildProcess>();
let exitHook = false;
function register(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}

/** SIGKILLs every process started here that is still running, and waits for them. */
export async function killAllProcesses(): Promise<void> {
  await Promise.all(
    [...live].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once('exit', () => resolve());
          c.kill('SIGKILL');
        }),
    ),
  );
}

/** Starts `opsdb serve` as central (SITE_TYPE=main), registered for killAllProcesses. */
export async function spawnCentral(env: Record<string, string>, timeoutMs = 20_000): Promise<DaemonProcess> {
  const central = await spawnDaemon('main', env, timeoutMs);
  register(central.child);
  return central;
}

/** spawnEdge, registered for killAllProcesses. */
export async function startEdgeProcess(env: Record<string, string>): Promise<EdgeProcess & { port: number; pid: number }> {
  const edge = await spawnEdge(env);
  register(edge.child);
  return Object.assign(edge, { port: Number(new URL(edge.url).port), pid: edge.child.pid! });
}

// ------------------------------------------------------------------ scenario

export interface CentralDatabase {
  url: string;
  /** For assertions straight against PostgreSQL. */
  pool: pg.Pool;
  database: TestDatabase;
  drop(): Promise<void>;
}

/** A fresh database, migrated and seeded with the CLI. */
export async function centralDatabase(label: string): Promise<CentralDatabase> {
  const database = await createTestDatabase(label);
  const env = { SITE_TYPE: 'main', DATABASE_URL: database.url };
  for (const cmd of [['migrate'], ['seed']]) {
    const r = await runCli(cmd, env);
    if (r.code !== 0) throw new Error(`opsdb ${cmd.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  const pool = new pg.Pool({ connectionString: database.url, max: 3 });
  pool.on('error', () => {});
  return {
    url: database.url, pool, database,
    async drop() {
      await pool.end();
      await database.drop();
    },
  };
}

/** `opsdb site add NAME`: returns the site token (its stdout). */
export async function addSite(databaseUrl: string, name: string): Promise<string> {
  const r = await runCli(['site', 'add', name], { SITE_TYPE: 'main', DATABASE_URL: databaseUrl });
  if (r.code !== 0) throw new Error(`opsdb site add ${name} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout.trim();
}

/** `opsdb token create --user NAME` at central: returns the token. */
export async function createCentralToken(databaseUrl: string, user: string): Promise<string> {
  const r = await runCli(['token', 'create', '--user', user], { SITE_TYPE: 'main', DATABASE_URL: databaseUrl });
  if (r.code !== 0) throw new Error(`opsdb token create --user ${user} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout.trim();
}

export interface EdgeDir {
  dataDir: string;
  /** A local admin token at this edge. */
  adminToken: string;
  /** An admin client for the edge at `url`. */
  admin(url: string): Client;
  remove(): void;
}

/** An edge DATA_DIR with a local admin (its replica is empty: it has never synced). */
export async function edgeDir(label: string): Promise<EdgeDir> {
  const dataDir = edgeDataDir(label);
  const c = await localClient(dataDir, 'http://unused', ['admin'], 'fault-admin');
  const adminToken = c.token!;
  return {
    dataDir, adminToken,
    admin: (url) => client(url, adminToken),
    remove: () => rmSync(dataDir, { recursive: true, force: true }),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `fn` until it returns a truthy value (returned) or `timeoutMs` passes;
 * then fails with `describe()` (e.g. the last /buffer-stats) in the message.
 */
export async function waitFor<T>(
  fn: () => Promise<T | false | null | undefined> | T | false | null | undefined,
  timeoutMs: number,
  what: string,
  describe?: () => unknown,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      lastErr = null;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= deadline) {
      let state = '';
      try {
        state = describe ? JSON.stringify(await describe(), null, 1) : '';
      } catch (err) {
        state = `(could not describe: ${(err as Error).message})`;
      }
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${(lastErr as Error).message})` : ''}\n${state}`);
    }
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------- the edge

export interface BufferStatsBody {
  pending_transactions: number;
  failed_transactions: number;
  in_flight_transactions: number;
  blocked_transactions: number;
  synced_awaiting_replica: number;
  last_error: { code: string; message: string } | null;
  consecutive_failures: number;
  central_reachable: boolean | null;
  accepted_total: number;
  applied_total: number;
  discarded_total: number;
  background_processor: 'running' | 'paused' | 'stopped' | 'disabled';
}

export async function bufferStats(edgeUrl: string): Promise<BufferStatsBody> {
  const res = await fetch(`${edgeUrl}/buffer-stats`);
  if (res.status !== 200) throw new Error(`/buffer-stats answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as BufferStatsBody;
}

/** (a) accepted = applied + pending + in_flight + blocked + failed + discarded. */
export function assertLedger(s: BufferStatsBody, where: string): void {
  const sum = s.applied_total + s.pending_transactions + s.in_flight_transactions + s.blocked_transactions + s.failed_transactions + s.discarded_total;
  assert.equal(s.accepted_total, sum, `${where}: ledger broken: accepted ${s.accepted_total} ≠ ${sum}\n${JSON.stringify(s)}`);
}

/** Waits until nothing is pending, in flight, blocked or failed and every accepted transaction is applied. */
export async function waitDrained(edgeUrl: () => string, timeoutMs: number, what = 'the edge to drain'): Promise<BufferStatsBody> {
  let last: BufferStatsBody | null = null;
  return waitFor(
    async () => {
      last = await bufferStats(edgeUrl());
      const s = last;
      return s.pending_transactions === 0 && s.in_flight_transactions === 0 && s.blocked_transactions === 0 &&
        s.failed_transactions === 0 && s.applied_total === s.accepted_total && s
        ? s
        : null;
    },
    timeoutMs,
    what,
    () => last,
  );
}

/** What the edge acknowledged: transaction ids and the ids of the rows they create. */
export class Acked {
  readonly transactions: string[] = [];
  readonly observations: string[] = [];
  readonly packages: string[] = [];
  readonly files: string[] = [];
  /** Observations finished by a later transaction: id → its finish status. */
  readonly finished = new Map<string, string>();
  /** Observation id → the transaction that created it. */
  readonly createdBy = new Map<string, string>();
}

const file = (i: number, n: number) => ({
  name: `obs${i}_${n}.fits`, path: `/data/raw/obs${i}_${n}.fits`, size: 1000 + n, checksum: `sha256:${i}-${n}`, file_type: 'fits',
});

let obsCounter = 0;

/** POST /api/demo/create-observation with 3 files; records what was acknowledged (201). Returns the body. */
export async function createObservation(edge: Client, acked: Acked, obsUnitId = 1): Promise<{ status: number; body: any }> {
  const i = ++obsCounter;
  const res = await edge.post('/api/demo/create-observation', {
    body: {
      obs_data: {
        obs_unit_id: obsUnitId, start_time: new Date(Date.UTC(2025, 0, 1, 0, 0, i)).toISOString(), mean_pwv: 1.2, mean_elevation: 45,
        package_name: `pkg-${i}`, instrument_module_configuration_id: 1,
      },
      raw_files: [file(i, 1), file(i, 2), file(i, 3)],
    },
  });
  if (res.status === 201) {
    acked.transactions.push(res.body.transaction_id);
    acked.observations.push(res.body.executed_obs_unit_id);
    acked.packages.push(res.body.raw_data_package_id);
    acked.files.push(...res.body.raw_data_file_ids);
    acked.createdBy.set(res.body.executed_obs_unit_id, res.body.transaction_id);
  }
  return res;
}

/**
 * An observation and one bulk of `count` files with long paths (≈ 470 bytes each): a transaction far
 * larger than a slow link carries in SYNC_TIMEOUT_MS. Returns the observation's id, the bulk's
 * transaction id and its size in bytes.
 */
export async function startWithBigBulk(edge: Client, acked: Acked, count: number): Promise<{ obsId: string; bulkTx: string; bytes: number }> {
  const obs = await edge.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
  assert.equal(obs.status, 201, obs.text);
  acked.transactions.push(obs.body.transaction_id);
  acked.observations.push(obs.body.id);
  acked.createdBy.set(obs.body.id, obs.body.transaction_id);
  const files = Array.from({ length: count }, (_, i) => ({
    name: `scan_${i}.fits`, path: `/data/raw/${'night-2026-11-26/'.repeat(20)}scan_${i}.fits`, size: 1_000_000 + i, checksum: `sha256:${i}`, file_type: 'fits',
  }));
  const bulk = await edge.post('/raw_data_files/bulk', { body: { executed_obs_unit_id: obs.body.id, files } });
  assert.equal(bulk.status, 201, bulk.text);
  acked.transactions.push(bulk.body.transaction_id);
  acked.files.push(...(bulk.body.ids as string[]));
  const bytes = (await edge.get(`/api/transactions/${bulk.body.transaction_id}`)).body.bytes as number;
  return { obsId: obs.body.id, bulkTx: bulk.body.transaction_id, bytes };
}

/** POST /executed_obs_units/start then PUT …/finish: two transactions, the second depending on the first. */
export async function startAndFinish(edge: Client, acked: Acked, status = 'success'): Promise<string> {
  const start = await edge.post('/executed_obs_units/start', { body: { obs_unit_id: 1, start_time: '2025-03-01T00:00:00Z' } });
  assert.equal(start.status, 201, `start: ${start.text}`);
  acked.transactions.push(start.body.transaction_id);
  acked.observations.push(start.body.id);
  acked.createdBy.set(start.body.id, start.body.transaction_id);
  const fin = await edge.put(`/executed_obs_units/${start.body.id}/finish`, { body: { status, end_time: '2025-03-01T01:00:00Z' } });
  assert.equal(fin.status, 202, `finish: ${fin.text}`);
  acked.transactions.push(fin.body.transaction_id);
  acked.finished.set(start.body.id, status);
  return start.body.id;
}

// ----------------------------------------------------------------- central

/**
 * (b) Central holds exactly one copy of every acknowledged transaction, and
 * nothing else from this site: each transaction id once in applied_transaction,
 * each created row once, finishes applied, and as many applied transactions
 * for the site as the edge counts applied.
 */
export async function assertExactlyOnce(db: pg.Pool, site: string, acked: Acked, appliedAtEdge: number): Promise<void> {
  const { rows } = await db.query<{ id: string; n: number }>(
    `SELECT transaction_id::text AS id, count(*)::int AS n FROM applied_transaction
      WHERE site = $1 AND transaction_id = ANY($2::uuid[]) GROUP BY 1`,
    [site, acked.transactions],
  );
  const counts = new Map(rows.map((r) => [r.id, r.n]));
  const missing = acked.transactions.filter((id) => !counts.has(id));
  const twice = rows.filter((r) => r.n !== 1);
  assert.deepEqual(missing, [], `${missing.length} of ${acked.transactions.length} acknowledged transactions never reached central`);
  assert.deepEqual(twice, [], 'transactions applied more than once');

  const total = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM applied_transaction WHERE site = $1', [site]);
  assert.equal(total.rows[0]!.n, appliedAtEdge, `central applied ${total.rows[0]!.n} transactions of ${site}; the edge counts ${appliedAtEdge} applied`);
  assert.ok(appliedAtEdge >= acked.transactions.length, 'the edge applied at least what it acknowledged');

  const one = async (sql: string, ids: string[], what: string) => {
    const { rows: r } = await db.query<{ n: number }>(sql, [ids]);
    assert.equal(r[0]!.n, ids.length, `${what}: ${r[0]!.n} rows at central for ${ids.length} acknowledged`);
  };
  await one('SELECT count(*)::int AS n FROM executed_obs_unit WHERE id = ANY($1::uuid[])', acked.observations, 'executed_obs_unit');
  await one('SELECT count(*)::int AS n FROM raw_data_package WHERE id = ANY($1::uuid[])', acked.packages, 'raw_data_package');
  await one('SELECT count(*)::int AS n FROM raw_data_file WHERE id = ANY($1::uuid[])', acked.files, 'raw_data_file');
  // Counted by parent, too: a row re-created under another id would show up here.
  const byParent = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM raw_data_file WHERE executed_obs_unit_id = ANY($1::uuid[])', [
    acked.observations,
  ]);
  assert.equal(byParent.rows[0]!.n, acked.files.length, 'raw_data_file rows of the acknowledged observations');
  const site_obs = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM executed_obs_unit WHERE site = $1', [site]);
  assert.ok(site_obs.rows[0]!.n >= acked.observations.length, 'observations of the site at central');

  if (acked.finished.size) {
    const { rows: st } = await db.query<{ id: string; status: string; end_time: Date | null }>(
      'SELECT id::text, status, end_time FROM executed_obs_unit WHERE id = ANY($1::uuid[])',
      [[...acked.finished.keys()]],
    );
    for (const r of st) {
      assert.equal(r.status, acked.finished.get(r.id), `observation ${r.id} at central ends ${acked.finished.get(r.id)}`);
      assert.ok(r.end_time, `observation ${r.id} has its end_time`);
    }
  }
}

/** Read-your-writes after the faults: every acknowledged observation is readable at the edge, synced, with its files. */
export async function assertReadable(edge: Client, acked: Acked): Promise<void> {
  const files = new Set(acked.files);
  const ids = [...acked.observations];
  const problems: string[] = [];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let id = ids.pop(); id; id = ids.pop()) {
        const r = await edge.get(`/executed_obs_units/${id}`);
        if (r.status !== 200) {
          problems.push(`${id}: ${r.status}`);
          continue;
        }
        if (r.body.sync_status !== 'synced') problems.push(`${id}: sync_status ${r.body.sync_status}`);
        const finished = acked.finished.get(id);
        if (finished && r.body.status !== finished) problems.push(`${id}: status ${r.body.status}, finished ${finished}`);
        for (const f of r.body.raw_data_files as { id: string; sync_status: string }[]) {
          if (files.has(f.id) && f.sync_status !== 'synced') problems.push(`file ${f.id}: sync_status ${f.sync_status}`);
        }
      }
    }),
  );
  assert.deepEqual(problems.slice(0, 10), [], `${problems.length} acknowledged observations not readable as synced at the edge`);
}

/**
 * Transactions of the site applied in seq order: ordered by applied_at (the
 * moment each inbox row was written), seq strictly increases. And by the
 * change_log id (a bigserial, taken as each row is written) of the
 * observation each created, seq strictly increases too. Returns the number
 * of database transactions (feed positions) the created observations were
 * committed in, or 0 without `acked`.
 */
export async function assertSeqOrder(db: pg.Pool, site: string, acked?: Acked): Promise<number> {
  const { rows } = await db.query<{ seq: string; applied_at: Date }>(
    'SELECT seq, applied_at FROM applied_transaction WHERE site = $1 ORDER BY applied_at, seq',
    [site],
  );
  const seqs = rows.map((r) => Number(r.seq));
  const bad = seqs.findIndex((s, i) => i > 0 && s <= seqs[i - 1]!);
  assert.equal(bad, -1, `seq ${seqs[bad]} applied after seq ${seqs[bad - 1]} (applied order: ${seqs.join(',')})`);
  if (acked?.createdBy.size) {
    const { rows: byRow } = await db.query<{ seq: string; change: string }>(
      `WITH m AS (SELECT unnest($2::text[]) AS obs, unnest($3::uuid[]) AS tx)
       SELECT a.seq, (SELECT min(c.id) FROM change_log c WHERE c.table_name = 'executed_obs_unit' AND c.row_key = m.obs) AS change
         FROM m JOIN applied_transaction a ON a.site = $1 AND a.transaction_id = m.tx ORDER BY change`,
      [site, [...acked.createdBy.keys()], [...acked.createdBy.values()]],
    );
    assert.equal(byRow.length, acked.createdBy.size, 'every creating transaction applied');
    const order = byRow.map((r) => Number(r.seq));
    const wrong = order.findIndex((s, i) => i > 0 && s <= order[i - 1]!);
    assert.equal(wrong, -1, `rows of seq ${order[wrong]} written after those of seq ${order[wrong - 1]} (write order: ${order.join(',')})`);
  }
  if (!acked?.createdBy.size) return 0;
  const { rows: commits } = await db.query<{ n: number }>(
    `SELECT count(DISTINCT f.pos)::int AS n FROM change_log c JOIN feed_tx f ON f.xid = c.xid
      WHERE c.table_name = 'executed_obs_unit' AND c.row_key = ANY($1::text[])`,
    [[...acked.createdBy.keys()]],
  );
  return commits[0]!.n;
}

/** Sum of a numeric field over central's "sync batch applied" log lines. */
export function centralLogSum(lines: string[], field: 'applied' | 'duplicate' | 'rejected'): number {
  let n = 0;
  for (const l of lines) {
    if (!l.includes('"sync batch applied"')) continue;
    try {
      n += Number((JSON.parse(l) as Record<string, unknown>)[field] ?? 0);
    } catch {}
  }
  return n;
}

// ----------------------------------------------------------------- scenario

export interface Scenario {
  site: string;
  siteToken: string;
  central: DaemonProcess;
  proxy: FaultProxy;
  dir: EdgeDir;
  /** The edge's environment (CENTRAL_URL is the proxy). */
  env: Record<string, string>;
  edge: EdgeProcess & { port: number; pid: number };
  acked: Acked;
  /** An admin client for the edge running now. */
  admin(): Client;
  /** /buffer-stats of the edge running now; the ledger is checked on every read. */
  stats(): Promise<BufferStatsBody>;
  /** SIGKILL the edge (when running) and start it again on the same DATA_DIR. */
  restartEdge(): Promise<void>;
  /** Applied transactions of the site at central, straight from PostgreSQL. */
  centralApplied(): Promise<number>;
  /** Waits for the drain, then checks (a) the ledger and (b) exactly once at central. */
  verify(timeoutMs?: number): Promise<BufferStatsBody>;
  stop(): Promise<void>;
}

let scenarios = 0;

/** A new site at central (own central process on the shared database), a fault proxy in front of it, and a real edge behind it. */
export async function startScenario(
  db: CentralDatabase,
  label: string,
  opts: { mode?: FaultMode; edgeEnv?: Record<string, string> } = {},
): Promise<Scenario> {
  const site = `${label}-${process.pid}-${++scenarios}`.slice(0, 60);
  const [siteToken, central, dir] = await Promise.all([addSite(db.url, site), spawnCentral({ DATABASE_URL: db.url }), edgeDir(label)]);
  const proxy = await FaultProxy.start(central.port, opts.mode ?? 'pass');
  const env: Record<string, string> = {
    SITE_NAME: site, DATA_DIR: dir.dataDir, CENTRAL_URL: proxy.url, SITE_TOKEN: siteToken,
    SYNC_INTERVAL_MS: '200', RETRY_BASE_MS: '100', RETRY_MAX_MS: '2000', SYNC_TIMEOUT_MS: '2000', MIN_FREE_DISK_BYTES: '0',
    ...opts.edgeEnv,
  };
  const s: Scenario = {
    site, siteToken, central, proxy, dir, env, acked: new Acked(),
    edge: await startEdgeProcess(env),
    admin: () => dir.admin(s.edge.url),
    async stats() {
      const st = await bufferStats(s.edge.url);
      assertLedger(st, site);
      return st;
    },
    async restartEdge() {
      await s.edge.kill('SIGKILL');
      s.edge = await startEdgeProcess(env);
    },
    async centralApplied() {
      const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM applied_transaction WHERE site = $1', [site]);
      return rows[0]!.n;
    },
    async verify(timeoutMs = 20_000) {
      const st = await waitDrained(() => s.edge.url, timeoutMs, `${site} to drain (proxy ${proxy.currentMode})`);
      assertLedger(st, site);
      assert.equal(st.failed_transactions, 0, 'nothing dead-lettered');
      assert.equal(st.discarded_total, 0, 'nothing discarded');
      await assertExactlyOnce(db.pool, site, s.acked, st.applied_total);
      await assertReadable(s.admin(), s.acked);
      return st;
    },
    async stop() {
      await Promise.allSettled([s.edge.kill('SIGKILL'), s.central.kill('SIGKILL'), proxy.close()]);
      dir.remove();
    },
  };
  return s;
}

/**
 * `clients` concurrent writers of create-observation against whatever edge
 * `url()` names, until `stop()`; a dead edge (connection refused) is waited
 * out. Resolves with the number of acknowledged writes; a 5xx fails it.
 */
export function writeLoop(url: () => string, token: string, acked: Acked, clients = 3, maxMs = 40_000): { stop(): Promise<number> } {
  let stopping = false;
  let n = 0;
  const deadline = Date.now() + maxMs; // a test that fails before stop() must not leave writers behind
  const one = async () => {
    while (!stopping && Date.now() < deadline) {
      let res: { status: number; body: any };
      try {
        res = await createObservation(client(url(), token), acked);
      } catch {
        await sleep(30); // the edge is down (killed): not acknowledged
        continue;
      }
      if (res.status === 201) n += 1;
      else if (res.status >= 500) throw new Error(`write answered ${res.status}: ${JSON.stringify(res.body)}`);
      await sleep(10);
    }
  };
  const all = Promise.all(Array.from({ length: clients }, one)).finally(() => {
    stopping = true;
  });
  all.catch(() => {});
  return {
    async stop() {
      stopping = true;
      await all;
      return n;
    },
  };
}

/** Polls the scenario's /buffer-stats (ledger checked each time) until `pred` holds; fails showing the last stats. */
export async function untilStats(s: Scenario, pred: (st: Awaited<ReturnType<Scenario['stats']>>) => boolean, ms: number, what: string) {
  let last: unknown = null;
  return waitFor(
    async () => {
      const st = await s.stats();
      last = st;
      return pred(st) ? st : null;
    },
    ms,
    what,
    () => last,
  );
}
