/**
 * bench:sync — drain a backlog of create-observation transactions (1
 * observation, 1 package, 3 files each) from an edge into central's
 * PostgreSQL, against a plain multi-row INSERT of the same rows into an
 * identical database in the same run.
 *
 *   npm run bench:sync          (BENCH_TRANSACTIONS=100000)
 *
 * Then the same drain over a slow link (a proxy adding BENCH_LINK_DELAY_MS=50
 * each way, BENCH_LINK_TRANSACTIONS=10000), one batch at a time
 * (SYNC_PIPELINE=1) against the next batch sent early (SYNC_PIPELINE=2).
 * Runs under scripts/test.mjs --with-services, which starts a throwaway PostgreSQL.
 * BENCH_TRACE=1 prints the drain's progress and the edge's memory (RSS, V8
 * heap, external buffers) to stderr every 250 ms.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createPool, withTransaction } from '../src/central/db.js';
import { migrate } from '../src/central/migrate.js';
import { seed } from '../src/central/seed.js';
import { createSite } from '../src/central/sync.js';
import { SqliteBuffer } from '../src/edge/buffer/sqlite.js';
import { LocalStore } from '../src/edge/local-store.js';
import type { NewTransaction } from '../src/edge/buffer/buffer.js';
import { uuidv7 } from '../src/lib/uuid.js';
import { FaultProxy } from '../test/support/fault-proxy.js';
import { EDGE_UNIT_ENV, OPSDB, cpuSeconds, machine, memoryTrace, recordFigures, rssMb, spawnServer, writeSection } from './support.js';

const N = Number(process.env.BENCH_TRANSACTIONS ?? 100_000);
const ROWS_PER_TX = 5;
const SITE = 'bench';
/** The long-link comparison: fewer transactions, LINK_DELAY_MS added each way by a proxy. */
const LINK_N = Number(process.env.BENCH_LINK_TRANSACTIONS ?? Math.min(N, 10_000));
const LINK_DELAY_MS = Number(process.env.BENCH_LINK_DELAY_MS ?? 50);
const admin = process.env.OPSDB_TEST_PG_URL;
if (!admin) throw new Error('run through `npm run bench:sync` (it starts PostgreSQL), or set OPSDB_TEST_PG_URL');

function observation(i: number, site = SITE) {
  const obs = uuidv7();
  const pkg = uuidv7();
  const start = new Date(1.7e12 + i * 1000).toISOString();
  return {
    obs: { id: obs, obs_unit_id: 1 + (i % 5), site, status: 'success', start_time: start, end_time: start, mean_pwv: 1.2, mean_elevation: 50, instrument_module_configuration_id: 1 },
    pkg: { id: pkg, name: `pkg-${i}`, executed_obs_unit_id: obs, state: 'open' },
    files: ['a', 'b', 'c'].map((n) => ({ id: uuidv7(), name: `${n}-${i}.fits`, path: `/data/${i}/${n}.fits`, size: 1_000_000, checksum: `sha:${i}${n}`, file_type: 'fits', executed_obs_unit_id: obs, raw_data_package_id: pkg })),
  };
}

async function database(name: string): Promise<string> {
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await c.query(`CREATE DATABASE ${name}`);
  await c.end();
  const url = admin!.replace(/\/[^/]*$/, `/${name}`);
  const pool = createPool(url, 2);
  await migrate(pool);
  await seed(pool);
  await pool.end();
  return url;
}

/** The baseline: the same rows, 200 observations' worth per multi-row INSERT statement set, one commit each. */
async function plainInsert(url: string): Promise<number> {
  const pool = createPool(url, 1);
  const insert = async (c: pg.PoolClient, table: string, rows: Record<string, unknown>[]) => {
    const cols = Object.keys(rows[0]!);
    const params: unknown[] = [];
    const values = rows.map((r) => `(${cols.map((col) => (params.push(r[col]), `$${params.length}`)).join(', ')})`);
    await c.query(`INSERT INTO ${table} (${cols.join(', ')}) VALUES ${values.join(', ')}`, params);
  };
  const t0 = performance.now();
  for (let done = 0; done < N; done += 200) {
    const batch = Array.from({ length: Math.min(200, N - done) }, (_, i) => observation(1e7 + done + i));
    await withTransaction(pool, async (c) => {
      await insert(c, 'executed_obs_unit', batch.map((b) => b.obs));
      await insert(c, 'raw_data_package', batch.map((b) => b.pkg));
      await insert(c, 'raw_data_file', batch.flatMap((b) => b.files));
    });
  }
  const s = (performance.now() - t0) / 1000;
  await pool.end();
  return s;
}

/** An edge's buffer and local store as if N create-observation writes had been accepted while central was unreachable. */
async function fillEdge(dataDir: string, n: number, site: string): Promise<void> {
  mkdirSync(dataDir, { recursive: true });
  const buffer = new SqliteBuffer(join(dataDir, 'buffer.db'));
  const local = new LocalStore(join(dataDir, 'local.db'));
  for (let done = 0; done < n; done += 2000) {
    const txs: NewTransaction[] = Array.from({ length: Math.min(2000, n - done) }, (_, i) => {
      const o = observation(done + i, site);
      return {
        transaction_id: uuidv7(), site, created_at: new Date().toISOString(), endpoint: 'POST /api/demo/create-observation', depends_on: [],
        steps: [
          { step_id: 'obs', op: 'create', table: 'executed_obs_unit', id: o.obs.id, data: o.obs },
          { step_id: 'pkg', op: 'create', table: 'raw_data_package', id: o.pkg.id, data: o.pkg },
          { step_id: 'files', op: 'bulk_create', table: 'raw_data_file', rows: o.files },
        ],
      };
    });
    local.applyBuffered(await buffer.append(txs));
  }
  await buffer.close();
  local.close();
}

/** V8 heap in use right after each full (mark-compact) GC, from a log written with --trace-gc, in MB. */
function retainedHeap(logFile: string): number[] {
  const out: number[] = [];
  for (const m of readFileSync(logFile, 'utf8').matchAll(/Mark-Compact [\d.]+ \([\d.]+\) -> ([\d.]+) \(/g)) out.push(Number(m[1]));
  return out;
}

function retainedSummary(mb: number[]): string {
  if (mb.length === 0) return 'no full GC happened';
  const q = (f: number) => mb[Math.min(mb.length - 1, Math.floor(f * mb.length))]!.toFixed(0);
  return `first ${q(0)} MB, at a quarter ${q(0.25)}, half ${q(0.5)}, three quarters ${q(0.75)}, last ${mb.at(-1)!.toFixed(0)} MB, most ${Math.max(...mb).toFixed(0)} MB`;
}

/** A drain: a fresh edge holding `n` transactions and a central on `url`, optionally over a link with `delayMs` each way. */
async function drain(name: string, url: string, n: number, env: Record<string, string>, delayMs = 0) {
  const pool = createPool(url, 1);
  const token = (await createSite(pool, `${SITE}-${name}`.slice(0, 63), null)).token;
  await pool.end();
  const site = `${SITE}-${name}`.slice(0, 63);
  const dataDir = join(work, name);
  await fillEdge(dataDir, n, site);

  const centralProf = process.env.BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF}/central`] : [];
  const central = await spawnServer([...centralProf, OPSDB, 'serve'], { SITE_TYPE: 'main', DATABASE_URL: url, PORT: '0', LOG_LEVEL: 'info' }, /central listening/, join(work, `${name}-central.log`));
  const proxy = delayMs ? await FaultProxy.start(Number(new URL(central.url).port), { delay: delayMs }) : null;
  const prof = process.env.BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF}`] : [];
  const edge = await spawnServer(
    // --trace-gc: the heap left after each full GC is what the edge really holds (see retainedHeap).
    [...prof, '--trace-gc', OPSDB, 'serve'],
    { ...EDGE_UNIT_ENV, SITE_TYPE: 'secondary', SITE_NAME: site, DATA_DIR: dataDir, PORT: '0', CENTRAL_URL: proxy?.url ?? central.url, SITE_TOKEN: token, LOG_LEVEL: 'info', ...(process.env.BENCH_TRACE ? { METRICS_PUBLIC: 'true' } : {}), ...env },
    /edge listening/,
    join(work, `${name}-edge.log`),
  );
  // The link opens when the edge's engine starts, right as it listens.
  const t0 = performance.now();
  const edgeCpu0 = cpuSeconds(edge.child.pid!);
  const centralCpu0 = cpuSeconds(central.child.pid!);
  const rss: number[] = [];
  const centralRss: number[] = [];
  /** Edge RSS against how far the drain had got: memory that grows with the backlog would rise quarter by quarter. */
  const progress: { applied: number; rss: number }[] = [];
  let applied = 0;
  for (;;) {
    const s = (await (await fetch(`${edge.url}/buffer-stats`)).json()) as { applied_total: number; failed_transactions: number };
    applied = s.applied_total;
    if (process.env.BENCH_TRACE) console.error(`${((performance.now() - t0) / 1000).toFixed(1)} s applied=${applied} ${await memoryTrace(edge)}`);
    rss.push(rssMb(edge.child.pid!));
    progress.push({ applied, rss: rss.at(-1)! });
    centralRss.push(rssMb(central.child.pid!));
    if (applied >= n || s.failed_transactions > 0) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = { edge: cpuSeconds(edge.child.pid!) - edgeCpu0, central: cpuSeconds(central.child.pid!) - centralCpu0 };
  // Then the pull brings central's copy of every row back and the buffer is compacted.
  for (;;) {
    const s = (await (await fetch(`${edge.url}/buffer-stats`)).json()) as { synced_awaiting_replica: number };
    if (s.synced_awaiting_replica === 0 || applied < n) break;
    rss.push(rssMb(edge.child.pid!));
    await new Promise((r) => setTimeout(r, 250));
  }
  const caughtUp = (performance.now() - t0) / 1000 - seconds;
  await edge.stop();
  await central.stop();
  await proxy?.close();
  if (applied < n) throw new Error(`drain stopped at ${applied} of ${n}: failed transactions, see ${work}`);
  const quarters = [0, 1, 2, 3].map((q) => Math.max(0, ...progress.filter((p) => p.applied >= (q * n) / 4 && p.applied < ((q + 1) * n) / 4).map((p) => p.rss)));
  return { seconds, caughtUp, rss, quarters, centralRss, cpu, retained: retainedHeap(join(work, `${name}-edge.log`)) };
}

const work = mkdtempSync(join(tmpdir(), 'opsdb-bench-sync-'));
try {
  const plainUrl = await database('bench_plain');
  const syncUrl = await database('bench_sync');
  const plainS = await plainInsert(plainUrl);
  const batchEnv: Record<string, string> = process.env.SYNC_BATCH_SIZE ? { SYNC_BATCH_SIZE: process.env.SYNC_BATCH_SIZE } : {};
  const { seconds: drainS, caughtUp, rss, quarters, centralRss, cpu, retained } = await drain('loopback', syncUrl, N, batchEnv);

  // Over a long link (LINK_DELAY_MS each way), with the next batch sent early (SYNC_PIPELINE=2) and without.
  const linkUrl = await database('bench_link');
  const serial = await drain('link-serial', linkUrl, LINK_N, { ...batchEnv, SYNC_PIPELINE: '1' }, LINK_DELAY_MS);
  const piped = await drain('link-pipelined', linkUrl, LINK_N, { ...batchEnv, SYNC_PIPELINE: '2' }, LINK_DELAY_MS);

  const check = new pg.Client({ connectionString: syncUrl });
  await check.connect();
  const { rows } = await check.query(`SELECT (SELECT count(*) FROM raw_data_file)::int AS files, (SELECT count(*) FROM applied_transaction WHERE site = $1)::int AS txs`, [`${SITE}-loopback`]);
  await check.end();

  const plainRows = (N * ROWS_PER_TX) / plainS;
  const syncRows = (N * ROWS_PER_TX) / drainS;
  const md = `## Sync drain into PostgreSQL (\`npm run bench:sync\`)

Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}; PostgreSQL 15 (throwaway, fsync on) on the same machine.
${N.toLocaleString('en')} create-observation transactions (1 observation, 1 package, 3 files = ${ROWS_PER_TX} rows each) were
buffered at an edge while central was unreachable, then an edge process and a central process were started and the
edge drained its buffer over loopback HTTP (batches of SYNC_BATCH_SIZE=200, two at central at once, one database transaction per batch;
these batches only create rows, so central inserts each table's rows with one statement, inbox rows and change-feed notes
included, and falls back to one savepoint per transaction only for a batch with a repeat or a failing row). The baseline inserts the same rows
into an identical, migrated database with plain multi-row INSERTs, 200 observations per commit, in the same run.

| run | seconds | transactions/s | rows/s |
|---|---:|---:|---:|
| plain multi-row INSERT (baseline) | ${plainS.toFixed(1)} | ${Math.round(N / plainS)} | ${Math.round(plainRows)} |
| edge → central sync drain | ${drainS.toFixed(1)} | ${Math.round(N / drainS)} | ${Math.round(syncRows)} |

**Ratio sync / plain insert: ${(syncRows / plainRows).toFixed(2)}** (target ≥ 0.5).
The replica had central's copy of every row, and the buffer was compacted, ${caughtUp.toFixed(1)} s after the drain ended
(while a backlog drains, the edge pulls only a few pages now and then).
Central holds ${rows[0].txs} applied transactions and ${rows[0].files} raw data files (expected ${N} and ${N * 3}).
CPU time during the drain: edge process ${cpu.edge.toFixed(1)} s, central's Node.js process ${cpu.central.toFixed(1)} s (PostgreSQL: the rest of the two cores).
Edge RSS during the drain and the catch-up: ${Math.min(...rss)}–${Math.max(...rss)} MB over ${rss.length} samples (first ${rss[0]}, last ${rss.at(-1)}).
Highest edge RSS in each quarter of the drain (by transactions applied): ${quarters.join(', ')} MB; memory that grew with the backlog
drained would rise from quarter to quarter (**second half / first half: ${(Math.max(quarters[2]!, quarters[3]!) / Math.max(quarters[0]!, quarters[1]!)).toFixed(2)}**, flat ≤ 1.10).
What the edge holds, its V8 heap after each full GC (\`--trace-gc\`, ${retained.length} full GCs): ${retainedSummary(retained)};
central RSS ${Math.min(...centralRss)}–${Math.max(...centralRss)} MB.

Over a long link: the same drain of ${LINK_N.toLocaleString('en')} transactions through a proxy that adds ${LINK_DELAY_MS} ms each way
(a ${2 * LINK_DELAY_MS} ms round trip; the site's real link is longer), into a fresh database, in the same run:

| run | seconds | transactions/s | rows/s | then the replica caught up in |
|---|---:|---:|---:|---:|
| one batch at central at a time (SYNC_PIPELINE=1) | ${serial.seconds.toFixed(1)} | ${Math.round(LINK_N / serial.seconds)} | ${Math.round((LINK_N * ROWS_PER_TX) / serial.seconds)} | ${serial.caughtUp.toFixed(1)} s |
| next batch sent while the last is applied (SYNC_PIPELINE=2, the default) | ${piped.seconds.toFixed(1)} | ${Math.round(LINK_N / piped.seconds)} | ${Math.round((LINK_N * ROWS_PER_TX) / piped.seconds)} | ${piped.caughtUp.toFixed(1)} s |

**Pipelined / one at a time: ${(serial.seconds / piped.seconds).toFixed(2)}×** the drain rate over a ${2 * LINK_DELAY_MS} ms round trip.
`;
  console.log(md);
  writeSection('sync', md);
  recordFigures('sync', [
    { what: `sync drain of ${N.toLocaleString('en')} create-observation transactions`, value: Math.round(syncRows), unit: 'rows/s', baseline_what: 'plain multi-row INSERT', baseline: Math.round(plainRows), target: 'ratio ≥ 0.5' },
    { what: 'edge RSS, highest in the second half of the drain', value: Math.max(quarters[2]!, quarters[3]!), unit: 'MB', baseline_what: 'highest in the first half', baseline: Math.max(quarters[0]!, quarters[1]!), target: 'flat (ratio ≤ 1.10)' },
    ...(retained.length >= 2
      // The first full GCs come while the drain starts (batches in flight, caches filling); a quarter in, it has settled.
      ? [{ what: 'edge heap held after the last full GC of the drain and catch-up', value: Math.round(retained.at(-1)!), unit: 'MB', baseline_what: 'a quarter of the way through', baseline: Math.round(retained[Math.floor(retained.length / 4)]!), target: 'flat' }]
      : []),
    { what: `sync drain over a ${2 * LINK_DELAY_MS} ms round trip, next batch sent early`, value: Math.round((LINK_N * ROWS_PER_TX) / piped.seconds), unit: 'rows/s', baseline_what: 'one batch at a time (SYNC_PIPELINE=1)', baseline: Math.round((LINK_N * ROWS_PER_TX) / serial.seconds), target: 'ratio > 1' },
  ]);
} finally {
  if (!process.env.BENCH_KEEP) rmSync(work, { recursive: true, force: true });
  else console.log(`kept ${work}`);
}
