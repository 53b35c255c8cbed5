#!/usr/bin/env node
// Test runner for ops-db-api: `npm test [-- files... | node-test-flags...]`.
//
// 1. Makes sure PostgreSQL server binaries, redis-server and chromium exist
//    (installs the missing ones with apt-get when running as root).
// 2. Starts a throwaway PostgreSQL and Redis in a fresh temp dir on free
//    loopback ports (unless OPSDB_TEST_PG_URL / OPSDB_TEST_REDIS_URL are given).
// 3. Runs `node --import tsx --test` on an explicit, sorted list of test files.
// 4. Always stops the servers by PID and removes the temp dir.
//
// Arguments: test files or directories (default: every test/**/*.test.ts
// outside test/support, sorted); arguments starting with "-" go to node, e.g.
// `npm test -- --test-name-pattern=durable` (use the --flag=value form).
// OPSDB_TEST_CONCURRENCY overrides --test-concurrency (default 2).
// `--with-services CMD…` runs CMD beside the same servers (benchmarks);
// `--with-tools CMD…` only finds (or installs) the PostgreSQL and Redis
// binaries and runs CMD (npm run chaos, which starts servers of its own).
//
// Plain Node ESM, node: builtins only.

import { spawn } from 'node:child_process';
import {
  chownSync,
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TEST_DIR = path.join(ROOT, 'test');
const SUPPORT_DIR = path.join(TEST_DIR, 'support');
const CHROMIUM = '/usr/bin/chromium';
const PG_ROOT = '/usr/lib/postgresql';
const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;

const log = (msg) => process.stderr.write(`[test] ${msg}\n`);

// ---------------------------------------------------------------- utilities

const sleepSync = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** True while `pid` is a live (non-zombie) process. PID 1 here may not reap orphans. */
function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return err.code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false; // vanished between the two checks
  }
}

function procName(pid) {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** Signal `pid`, wait (synchronously) up to `ms` for it to go, escalate to SIGKILL. */
function stopPidSync(pid, signal, what, ms = 15000) {
  if (!Number.isInteger(pid) || pid <= 1 || !alive(pid)) return;
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  const deadline = Date.now() + ms;
  while (alive(pid) && Date.now() < deadline) sleepSync(50);
  if (alive(pid)) {
    log(`${what} (pid ${pid}) did not exit after ${signal}; sending SIGKILL`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
    const d2 = Date.now() + 5000;
    while (alive(pid) && Date.now() < d2) sleepSync(50);
  }
}

function readPid(file) {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').split('\n')[0].trim(), 10);
    return Number.isInteger(pid) && pid > 1 ? pid : null;
  } catch {
    return null;
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

let currentChild = null;

/**
 * Run a command to completion. `stdio` defaults to capturing output (returned
 * as `output`); resolves on 'exit' so that a daemon holding a pipe cannot hang us.
 */
function run(cmd, args, { env = process.env, cwd = '/', stdio, capture = true } = {}) {
  return new Promise((resolve) => {
    let output = '';
    const child = spawn(cmd, args, {
      env,
      cwd,
      stdio: stdio ?? (capture ? ['ignore', 'pipe', 'pipe'] : 'inherit'),
    });
    currentChild = child;
    const take = (b) => {
      output += b.toString();
      if (output.length > 2_000_000) output = output.slice(-1_000_000);
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);
    child.on('error', (err) => {
      currentChild = null;
      resolve({ code: 127, output: `${output}\n${cmd}: ${err.message}\n` });
    });
    child.on('exit', (code, signal) => {
      currentChild = null;
      // Let buffered pipe data arrive, but do not wait for pipe close.
      setImmediate(() => resolve({ code: code ?? 128 + (os.constants.signals[signal] ?? 0), output }));
    });
  });
}

/** Quote for /bin/sh (pg_ctl passes -o through a shell). */
const shq = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

// ------------------------------------------------------------ cleanup state

const state = {
  tmp: null, // temp dir we created
  pgData: null, // data dir of the PostgreSQL we started
  redisPidFile: null, // pidfile of the Redis we started
  starting: false, // a server start is in progress: its pid file may not exist yet
  cleaned: false,
};

/** Find pid files of servers started inside our temp dir (also by tests), to stop them too. */
function findPidFiles(dir, out = [], depth = 0) {
  if (depth > 6) return out;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory() && !e.isSymbolicLink()) findPidFiles(p, out, depth + 1);
    else if (e.isFile() && (e.name === 'postmaster.pid' || e.name.endsWith('redis.pid'))) out.push(p);
  }
  return out;
}

/** Wait briefly for a pid file that a server being started is about to write. */
function awaitPidFileSync(file) {
  const deadline = Date.now() + 5000;
  while (!existsSync(file) && Date.now() < deadline) sleepSync(50);
}

function stopPostgresSync(dataDir) {
  if (state.starting && dataDir === state.pgData) awaitPidFileSync(path.join(dataDir, 'postmaster.pid'));
  const pid = readPid(path.join(dataDir, 'postmaster.pid'));
  if (pid && alive(pid) && procName(pid).startsWith('postgres')) {
    // SIGQUIT = immediate shutdown: the cluster is thrown away anyway.
    stopPidSync(pid, 'SIGQUIT', 'PostgreSQL');
  }
}

function stopRedisSync(pidFile) {
  if (state.starting && pidFile === state.redisPidFile) awaitPidFileSync(pidFile);
  const pid = readPid(pidFile);
  if (pid && alive(pid) && procName(pid).startsWith('redis')) stopPidSync(pid, 'SIGTERM', 'Redis');
}

/** Idempotent, synchronous: safe from 'exit' and signal handlers. */
function cleanup() {
  if (state.cleaned) return;
  state.cleaned = true;
  if (state.pgData) stopPostgresSync(state.pgData);
  if (state.redisPidFile) stopRedisSync(state.redisPidFile);
  if (state.tmp) {
    // Servers that tests started under OPSDB_TEST_TMP and left running.
    for (const f of findPidFiles(state.tmp)) {
      if (path.basename(f) === 'postmaster.pid') stopPostgresSync(path.dirname(f));
      else stopRedisSync(f);
    }
    try {
      rmSync(state.tmp, { recursive: true, force: true, maxRetries: 3 });
    } catch (err) {
      log(`could not remove ${state.tmp}: ${err.message}`);
    }
  }
}

process.on('exit', cleanup);
process.stdout.on('error', () => {}); // e.g. `npm test | head`: keep going, still clean up
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    log(`received ${sig}; stopping tests and servers`);
    if (currentChild && currentChild.exitCode === null) {
      try {
        currentChild.kill(sig);
      } catch {}
      const c = currentChild;
      const deadline = Date.now() + 5000;
      while (c.exitCode === null && c.signalCode === null && alive(c.pid) && Date.now() < deadline) sleepSync(50);
      if (alive(c.pid)) {
        try {
          c.kill('SIGKILL');
        } catch {}
      }
    }
    cleanup();
    process.exit(128 + os.constants.signals[sig]);
  });
}

// ------------------------------------------------------------ prerequisites

function findPgBinDir() {
  let versions;
  try {
    versions = readdirSync(PG_ROOT).filter((v) => /^\d+(\.\d+)?$/.test(v));
  } catch {
    return null;
  }
  versions.sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
  for (const v of versions) {
    const bin = path.join(PG_ROOT, v, 'bin');
    if (['initdb', 'pg_ctl', 'postgres'].every((b) => existsSync(path.join(bin, b)))) return bin;
  }
  return null;
}

function findRedisServer() {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  dirs.push('/usr/bin', '/usr/local/bin');
  for (const d of dirs) {
    const p = path.join(d, 'redis-server');
    try {
      if (statSync(p).isFile()) return p;
    } catch {}
  }
  return null;
}

function findTools() {
  return {
    pgBin: findPgBinDir(),
    redis: findRedisServer(),
    chromium: existsSync(CHROMIUM) ? CHROMIUM : null,
    // The systemd tests use systemd-notify and systemd-analyze (no running systemd needed).
    systemd: existsSync('/usr/bin/systemd-notify') && existsSync('/usr/bin/systemd-analyze'),
    python: existsSync('/usr/bin/python3'),
  };
}

/** Debian package of each tool. `--with-tools` needs only the servers; the tests need them all. */
const PACKAGES = { pgBin: 'postgresql', redis: 'redis-server', chromium: 'chromium', systemd: 'systemd', python: 'python3' };

function missingPackages(t, need) {
  return need.filter((k) => !t[k]).map((k) => PACKAGES[k]);
}

async function ensureTools(need = Object.keys(PACKAGES)) {
  let tools = findTools();
  const missing = missingPackages(tools, need);
  if (missing.length === 0) return tools;
  if (!IS_ROOT) {
    log(`missing test prerequisites: ${missing.join(', ')}`);
    log(`install them first, e.g.: sudo apt-get install -y --no-install-recommends ${missing.join(' ')}`);
    process.exit(1);
  }
  log(`installing missing test prerequisites with apt-get: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const aptOpts = ['-q', '-o', 'Dpkg::Use-Pty=0'];
  const upd = await run('apt-get', [...aptOpts, 'update'], { env });
  if (upd.code !== 0) {
    process.stderr.write(upd.output);
    log(`apt-get update failed (exit ${upd.code})`);
    process.exit(1);
  }
  const inst = await run(
    'apt-get',
    [...aptOpts, 'install', '-y', '--no-install-recommends', ...missing],
    { env },
  );
  if (inst.code !== 0) {
    process.stderr.write(inst.output);
    log(`apt-get install ${missing.join(' ')} failed (exit ${inst.code})`);
    process.exit(1);
  }
  tools = findTools();
  const still = missingPackages(tools, need);
  if (still.length) {
    log(`still missing after apt-get install: ${still.join(', ')}`);
    process.exit(1);
  }
  return tools;
}

// --------------------------------------------------------------- PostgreSQL

async function startPostgres(pgBin, tmp) {
  const dataDir = path.join(tmp, 'pg');
  let sockDir = path.join(tmp, 'pgsock');
  const pgLog = path.join(tmp, 'postgres.log');
  const ctlLog = path.join(tmp, 'pg_ctl.log');
  const initLog = path.join(tmp, 'initdb.log');
  // Unix socket paths are limited to ~107 bytes.
  if (sockDir.length > 80) sockDir = mkdtempSync('/tmp/opsdb-pgsock-');
  mkdirSync(dataDir, { mode: 0o700, recursive: true });
  mkdirSync(sockDir, { recursive: true });
  writeFileSync(pgLog, '');
  const asPg = (bin, args) => (IS_ROOT ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args]);
  if (IS_ROOT) {
    const { uid, gid } = postgresUser();
    for (const p of [dataDir, sockDir, pgLog]) chownSync(p, uid, gid);
  }

  const showLogs = (...files) => {
    for (const f of files) {
      try {
        const text = readFileSync(f, 'utf8');
        if (text.trim()) process.stderr.write(`----- ${f} -----\n${text}\n`);
      } catch {}
    }
  };

  const init = await run(...asPg(path.join(pgBin, 'initdb'), [
    '-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C',
  ]));
  writeFileSync(initLog, init.output);
  if (init.code !== 0) {
    showLogs(initLog);
    throw new Error(`initdb failed (exit ${init.code})`);
  }

  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const opts = `-p ${port} -k ${shq(sockDir)} -c listen_addresses=127.0.0.1 -c max_connections=300`;
    const fd = openSync(ctlLog, 'a');
    state.pgData = dataDir; // from here on, cleanup must look for a postmaster
    state.starting = true;
    const res = await run(
      ...asPg(path.join(pgBin, 'pg_ctl'), ['-D', dataDir, '-w', '-t', '90', '-l', pgLog, '-o', opts, 'start']),
      { stdio: ['ignore', fd, fd] },
    );
    closeSync(fd);
    if (res.code === 0) {
      state.starting = false;
      return { port, dataDir, sockDir };
    }
    stopPostgresSync(dataDir);
    state.starting = false;
    const logText = (() => {
      try {
        return readFileSync(pgLog, 'utf8');
      } catch {
        return '';
      }
    })();
    if (attempt < 3 && /could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(logText)) {
      log(`PostgreSQL could not bind port ${port}; retrying on another port`);
      writeFileSync(pgLog, '');
      continue;
    }
    showLogs(ctlLog, pgLog);
    throw new Error(`pg_ctl start failed (exit ${res.code})`);
  }
}

function postgresUser() {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('no "postgres" OS user (is the postgresql package installed?)');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

// -------------------------------------------------------------------- Redis

/** Send one inline command over a raw socket; resolves with the raw reply text. */
function redisRaw(port, command, { timeout = 1000, until } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (err, val) => {
      sock.destroy();
      clearTimeout(t);
      err ? reject(err) : resolve(val);
    };
    const t = setTimeout(() => done(new Error('timeout')), timeout);
    sock.on('connect', () => sock.write(`${command}\r\n`));
    sock.on('data', (b) => {
      buf += b.toString();
      if (until ? until(buf) : buf.includes('\r\n')) done(null, buf);
    });
    sock.on('error', (err) => done(err));
    sock.on('close', () => done(new Error(`connection closed: ${JSON.stringify(buf)}`)));
  });
}

async function startRedis(redisBin, tmp) {
  const dir = path.join(tmp, 'redis');
  mkdirSync(dir, { recursive: true });
  const pidFile = path.join(dir, 'redis.pid');
  const logFile = path.join(dir, 'redis.log');
  const showLog = () => {
    try {
      process.stderr.write(`----- ${logFile} -----\n${readFileSync(logFile, 'utf8')}\n`);
    } catch {}
  };
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    rmSync(pidFile, { force: true });
    state.redisPidFile = pidFile;
    state.starting = true;
    const res = await run(redisBin, [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes',
      '--appendfsync', 'always', '--daemonize', 'yes', '--dir', dir, '--pidfile', pidFile,
      '--logfile', logFile,
    ]);
    if (res.code !== 0) {
      process.stderr.write(res.output);
      showLog();
      throw new Error(`redis-server failed (exit ${res.code})`);
    }
    const deadline = Date.now() + 20000;
    let ok = false;
    while (Date.now() < deadline) {
      const pid = readPid(pidFile);
      if (pid && !alive(pid)) break; // it died (port taken?)
      try {
        if ((await redisRaw(port, 'PING')).startsWith('+PONG') && pid) {
          // Make sure it is *our* server answering on that port.
          const info = await redisRaw(port, 'INFO server', {
            until: (b) => /process_id:\d+\r\n/.test(b) && b.endsWith('\r\n'),
          });
          const m = /process_id:(\d+)/.exec(info);
          if (m && Number(m[1]) === pid) {
            ok = true;
            break;
          }
        }
      } catch {}
      await sleep(100);
    }
    if (ok) {
      state.starting = false;
      return { port, dir };
    }
    stopRedisSync(pidFile);
    state.starting = false;
    if (attempt < 3) {
      log(`Redis did not come up on port ${port}; retrying on another port`);
      continue;
    }
    showLog();
    throw new Error('redis-server did not answer PING');
  }
}

// -------------------------------------------------------------------- files

/** Path relative to the repo root when inside it, else absolute. */
function displayPath(f) {
  const r = path.relative(ROOT, f);
  return r && !r.startsWith('..') && !path.isAbsolute(r) ? r : f;
}

function walk(dir, out = []) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (path.resolve(p) === SUPPORT_DIR || e.name === 'node_modules' || e.name.startsWith('.')) continue;
      walk(p, out);
    } else if (e.isFile() && e.name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

function selectFiles(args) {
  const nodeFlags = args.filter((a) => a.startsWith('-'));
  const explicit = args.filter((a) => !a.startsWith('-'));
  let files;
  if (explicit.length) {
    files = [];
    for (const a of explicit) {
      // npm runs scripts in the package root; INIT_CWD is where `npm test` was typed.
      const abs = path.resolve(process.env.INIT_CWD || process.cwd(), a);
      if (!existsSync(abs)) {
        log(`no such test file: ${a}`);
        process.exit(1);
      }
      if (statSync(abs).isDirectory()) files.push(...walk(abs).sort());
      else files.push(abs);
    }
  } else {
    files = existsSync(TEST_DIR) ? walk(TEST_DIR) : [];
    files.sort();
  }
  files = files.map(displayPath);
  return { files, nodeFlags };
}

// --------------------------------------------------------------------- main

async function runTests(files, nodeFlags, env, concurrency) {
  const args = [
    '--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec',
    // A test file's process exits once its tests and hooks are done. Without this, one run hung for
    // 15 min after faults.test.ts had passed: Node spun in its exit-time handle cleanup (seen with gdb).
    '--test-force-exit',
    ...nodeFlags, ...files,
  ];
  const absFiles = new Set(files.map((f) => path.resolve(ROOT, f)));
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['inherit', 'pipe', 'inherit'] });
    currentChild = child;
    let partial = '';
    let lastCount = null; // N from the last "ℹ tests N" line
    const emptyFiles = []; // files that node reports as a single passing "test": they ran none
    const scan = (line) => {
      const plain = line.replace(/\x1b\[[0-9;]*m/g, '').replace(/\r$/, '');
      const m = /^\S+ tests (\d+)$/.exec(plain);
      if (m) lastCount = Number(m[1]);
      const f = /^✔ (\/.+) \([\d.]+m?s\)$/.exec(plain);
      if (f && absFiles.has(f[1])) emptyFiles.push(displayPath(f[1]));
    };
    child.stdout.on('data', (b) => {
      process.stdout.write(b);
      const lines = (partial + b.toString()).split('\n');
      partial = lines.pop();
      if (partial.length > 65536) partial = '';
      lines.forEach(scan);
    });
    child.on('error', (err) => {
      log(`could not start node: ${err.message}`);
      resolve({ code: 1, lastCount, emptyFiles });
    });
    child.on('close', (code, signal) => {
      currentChild = null;
      scan(partial);
      resolve({ code: code ?? 128 + (os.constants.signals[signal] ?? 0), lastCount, emptyFiles });
    });
  });
}

/**
 * `node scripts/test.mjs --with-tools CMD ARGS…`: PostgreSQL and Redis binaries installed if missing, their
 * places in OPSDB_TEST_PG_BINDIR / OPSDB_TEST_REDIS_SERVER, and no servers: for `npm run chaos`, which
 * starts (and stops, as a fault) servers of its own and keeps their data when a run fails.
 */
async function withTools(cmd) {
  const tools = await ensureTools(['pgBin', 'redis']);
  const env = { ...process.env, OPSDB_TEST_PG_BINDIR: tools.pgBin, OPSDB_TEST_REDIS_SERVER: tools.redis };
  const res = await run(cmd[0], cmd.slice(1), { env, cwd: ROOT, stdio: 'inherit', capture: false });
  process.exit(res.code ?? 1);
}

async function main() {
  if (process.argv[2] === '--with-tools') return withTools(process.argv.slice(3));
  // `node scripts/test.mjs --with-services CMD ARGS…`: the same throwaway servers, for a benchmark.
  const withServices = process.argv[2] === '--with-services' ? process.argv.slice(3) : null;
  const { files, nodeFlags } = withServices ? { files: ['(none)'], nodeFlags: [] } : selectFiles(process.argv.slice(2));
  if (files.length === 0) {
    log('no test files found (looked for test/**/*.test.ts outside test/support)');
    process.exit(1);
  }
  if (!existsSync(path.join(ROOT, 'node_modules', 'tsx', 'package.json'))) {
    log('tsx is not installed in node_modules; run `npm ci` first');
    process.exit(1);
  }
  const concRaw = process.env.OPSDB_TEST_CONCURRENCY ?? '2';
  const concurrency = Number.parseInt(concRaw, 10);
  if (!/^\d+$/.test(concRaw.trim()) || concurrency < 1) {
    log(`OPSDB_TEST_CONCURRENCY must be a positive integer, got ${JSON.stringify(concRaw)}`);
    process.exit(1);
  }

  const tools = await ensureTools();

  state.tmp = mkdtempSync(path.join(os.tmpdir(), 'opsdb-test-'));
  chmodSync(state.tmp, 0o711); // let the postgres user reach its data dir

  const env = {
    ...process.env,
    OPSDB_TEST_PG_BINDIR: tools.pgBin,
    OPSDB_TEST_REDIS_SERVER: tools.redis,
    OPSDB_TEST_CHROMIUM: tools.chromium,
    OPSDB_TEST_TMP: state.tmp,
  };
  if (process.stdout.isTTY && !('NO_COLOR' in process.env) && !('FORCE_COLOR' in process.env)) {
    env.FORCE_COLOR = '1'; // stdout is piped through us; keep colours for humans
  }

  if (process.env.OPSDB_TEST_PG_URL) {
    log(`using existing PostgreSQL at ${process.env.OPSDB_TEST_PG_URL}`);
  } else {
    const pg = await startPostgres(tools.pgBin, state.tmp);
    env.OPSDB_TEST_PG_URL = `postgres://postgres@127.0.0.1:${pg.port}/postgres`;
    log(`PostgreSQL (${path.basename(path.dirname(tools.pgBin))}) on 127.0.0.1:${pg.port}`);
  }
  if (process.env.OPSDB_TEST_REDIS_URL) {
    log(`using existing Redis at ${process.env.OPSDB_TEST_REDIS_URL}`);
  } else {
    const r = await startRedis(tools.redis, state.tmp);
    env.OPSDB_TEST_REDIS_URL = `redis://127.0.0.1:${r.port}`;
    log(`Redis on 127.0.0.1:${r.port}`);
  }
  if (withServices) {
    const res = await run(withServices[0], withServices.slice(1), { env, cwd: ROOT, stdio: 'inherit', capture: false });
    cleanup();
    process.exit(res.code ?? 1);
  }
  log(`running ${files.length} test file(s), concurrency ${concurrency}`);

  const { code, lastCount, emptyFiles } = await runTests(files, nodeFlags, env, concurrency);

  // Sanity checks on node's spec reporter output: it ends with "ℹ tests N".
  let exitCode = code;
  if (lastCount === null) {
    log('could not find the test summary ("ℹ tests N") in the output');
    if (exitCode === 0) exitCode = 1;
  } else if (lastCount === 0) {
    log('0 tests ran: treating as a failure');
    if (exitCode === 0) exitCode = 1;
  }
  const noTests = [...new Set(emptyFiles)];
  if (noTests.length) {
    log(`test file(s) that defined no tests: ${noTests.join(', ')}`);
    if (exitCode === 0) exitCode = 1;
  }
  cleanup();
  process.exit(exitCode);
}

main().catch((err) => {
  log(`error: ${err?.stack ?? err}`);
  cleanup();
  process.exit(1);
});
