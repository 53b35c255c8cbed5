/**
 * npm run chaos — a seeded soak under faults (docs/testing.md, "Soak under faults"). Run through
 * `node scripts/test.mjs --with-tools`, which finds or installs PostgreSQL and Redis; everything else
 * (a PostgreSQL cluster of its own, Redis, centrals, proxy, edge) is started here in a run directory that
 * is removed after a pass and kept after a failure. Exit 0 only when every check passed; the last line
 * is `RESULT seed N: PASS|FAIL (kinds)|ERROR …`.
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../test/support/services.js';
import { checkCentral, type CentralSummary } from './checks.js';
import { createCluster, type PgCluster } from './cluster.js';
import { drain, heal } from './drain.js';
import { checkEdge } from './edge-checks.js';
import { faultEvents, runFaults } from './faults.js';
import { M } from './model.js';
import { startMonitor, statsSeen } from './monitor.js';
import { helpText, readOptions } from './options.js';
import { poison } from './poison.js';
import { dumps, restores } from './restore.js';
import { finding, findingCounts, findingSummary, findings, log, openEventLog, sinceStart } from './report.js';
import { S, faultCounts, setUp, stopCentral, tearDown } from './system.js';
import { startWriters } from './writers.js';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log(helpText());
  process.exit(0);
}
const { options: opts, rnd, problems } = readOptions(process.env, process.getuid?.() === 0);
if (!process.env.OPSDB_TEST_PG_BINDIR || !process.env.OPSDB_TEST_REDIS_SERVER) {
  problems.push('OPSDB_TEST_PG_BINDIR / OPSDB_TEST_REDIS_SERVER are not set: run it as `npm run chaos` (scripts/test.mjs --with-tools finds them)');
}
if (problems.length) {
  for (const p of problems) console.error(`chaos: ${p}`);
  console.error('(npm run chaos -- --help lists the variables)');
  console.log(`RESULT seed ${opts.seed}: ERROR invalid settings (${problems.length} problem${problems.length > 1 ? 's' : ''})`);
  process.exit(2);
}

// Only this run's own cluster and directory: never a PostgreSQL the caller's environment names.
delete process.env.OPSDB_TEST_PG_URL;
if (opts.outBase) process.env.OPSDB_TEST_TMP = opts.outBase;
else delete process.env.OPSDB_TEST_TMP;
const run = await tempDir(`opsdb-chaos-${opts.seed}`); // opsdb_chaos_<seed>-XXXXXX
const runDir = run.path;
chmodSync(runDir, 0o711); // the postgres user reaches its data dir inside
openEventLog(join(runDir, 'events.log'));
process.env.OPSDB_TEST_TMP = runDir; // the edge's DATA_DIR goes in here

let cluster: PgCluster | null = null;
const onExit = () => cluster?.killSync(); // children and Redis: the exit hooks of test/support
process.on('exit', onExit);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    log(`${sig}: stopping; run directory kept: ${runDir}`);
    console.log(`RESULT seed ${opts.seed}: ERROR interrupted by ${sig}`);
    process.exit(2);
  });
}

log(`seed ${opts.seed}; backend ${opts.backend}; duration ${opts.durationMs / 1000}s; clients ${opts.clients}; SYNC_BATCH_SIZE ${opts.batch}; SYNC_PIPELINE ${opts.pipeline}; ` +
  `SYNC_TIMEOUT_MS ${opts.syncTimeoutMs}; BUFFER_MAX_BYTES ${opts.bufferMax || 'default'}; small disk ${opts.smallDiskMb || 'no'}; restores ${opts.restore ? 'on' : 'off'}; ` +
  `event gap ${opts.gapMs.join('-')} ms; run directory ${runDir}`);

let central: CentralSummary | null = null;
let offlineStats = '';
let finalStats: any = null;
let harnessError: string | null = null;
try {
  cluster = await createCluster(runDir);
  process.env.OPSDB_TEST_PG_URL = cluster.adminUrl;
  log(`PostgreSQL cluster ${cluster.dataDir} at ${cluster.adminUrl}`);
  await setUp(opts, runDir, cluster);
  const monitor = startMonitor();
  const writers = startWriters();
  await runFaults(rnd, Date.now() + opts.durationMs);
  log(`fault phase over; acked ${M.acked.length}; faults ${JSON.stringify(faultCounts)}`);
  await writers.stop();
  await heal();
  finalStats = await drain();
  log('verifying');
  central = await checkCentral(finalStats);
  offlineStats = await checkEdge(rnd, finalStats);
  // Centrals stop cleanly on SIGTERM (stopCentral reports a bad exit code).
  await stopCentral(0, 'SIGTERM');
  await stopCentral(1, 'SIGTERM');
  await monitor.stop();
  if (faultEvents() === 0) finding('no_faults_injected', faultCounts);
} catch (err) {
  harnessError = (err as Error).stack ?? String(err);
  log(`harness error: ${harnessError}`);
  finding('harness_error', String((err as Error).message).slice(0, 500));
}

const ok = findings.length === 0;
const result = {
  seed: opts.seed, ok, options: opts, run_dir: runDir, acked: M.acked.length, central_applied: central?.applied ?? null,
  observations: M.obs.size, packages: M.pkgs.size, files: M.files.size, discarded: poison.discarded.size, poison_windows: poison.windows,
  lost_responses: M.lostResponses, maybe_kept: M.maybe.length, refused: M.refused, not_stored_503: M.stoppingRefusals,
  restores, dumps: dumps.map((d) => ({ n: d.n, at: sinceStart(d.t0), applied_after: d.applied })), faults: faultCounts, fault_events: faultEvents(),
  ops: M.ops, stats_seen: statsSeen, final_stats: finalStats, findings, finding_counts: Object.fromEntries(findingCounts),
  offline_stats: offlineStats.slice(0, 2000), error_log_lines: S?.errorLines ?? {}, harness_error: harnessError,
};
writeFileSync(join(runDir, 'result.json'), JSON.stringify(result, null, 2));
if (opts.restore && restores.length === 0) log('note: no restore from a dump happened in this run (too short, or central/PostgreSQL always busy)');

const keep = !ok || opts.keep;
await tearDown(keep).catch((err) => log(`tear-down: ${(err as Error).message}`));
if (cluster) {
  await cluster.stop('fast').catch(() => cluster?.killSync());
}
if (keep) {
  log(`kept: ${runDir} (events.log, result.json, central*.log, edge-*.log, postgres.log, dumps; PostgreSQL data in pg/)`);
  const asPostgres = process.getuid?.() === 0 ? 'runuser -u postgres -- ' : '';
  if (S) log(`  central database ${S.db.database.name}: ${asPostgres}${join(process.env.OPSDB_TEST_PG_BINDIR!, 'pg_ctl')} -D ${join(runDir, 'pg')} -l ${join(runDir, 'postgres.log')} start`);
  if (S) log(`  edge DATA_DIR ${S.edgeDataDir}${S.disk ? ` (on a tmpfs still mounted at ${S.disk.path}: umount it when done)` : ''}`);
} else await run.cleanup();

const summary = `acked ${M.acked.length}${poison.discarded.size ? ` (${poison.discarded.size} discarded by the operator)` : ''}, central ${central?.applied ?? '?'}, restores ${restores.length}, ${faultEvents()} fault events`;
const verdict = harnessError ? `ERROR (${findingSummary()})` : ok ? 'PASS' : `FAIL (${findingSummary()})`;
console.log(`RESULT seed ${opts.seed}: ${verdict}; ${summary}`);
process.exit(harnessError ? 2 : ok ? 0 : 1);
