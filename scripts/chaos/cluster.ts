/**
 * The run's own PostgreSQL cluster, which faults stop, restart and restore into: initdb in the run
 * directory with the binaries pgBinDir() names, run as the `postgres` user when we are root (as
 * scripts/test.mjs does), on a free port. Port, socket and listen address are in its postgresql.conf,
 * so a plain `pg_ctl start` brings it back after a fault, and a kept cluster can be started by hand.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, chownSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { pgBinDir, pidAlive } from '../../test/support/services.js';
import { freePort } from '../../test/support/ports.js';

const IS_ROOT = process.getuid?.() === 0;

export interface PgCluster {
  /** URL of the `postgres` database, as superuser. */
  adminUrl: string;
  dataDir: string;
  logFile: string;
  /** `pg_ctl start` (waits until it accepts connections). */
  start(): Promise<void>;
  /** `pg_ctl stop -m mode`. */
  stop(mode: 'fast' | 'immediate'): Promise<void>;
  /** True when a connection succeeds. */
  isUp(): Promise<boolean>;
  /** The postmaster's pid, while one runs. */
  pid(): number | null;
  /** Immediate shutdown without waiting on the event loop: for exit and signal handlers. */
  killSync(): void;
}

export interface BinResult {
  code: number;
  out: string;
}

/** Runs a PostgreSQL binary to completion, stdout and stderr together. */
export function runPgBin(bin: string, args: string[], asPostgres = false): Promise<BinResult> {
  const file = join(pgBinDir(), bin);
  const [cmd, argv] = asPostgres && IS_ROOT ? ['runuser', ['-u', 'postgres', '--', file, ...args]] : [file, args];
  return new Promise((resolve) => {
    // cwd /tmp: runuser'd binaries must be able to read their working directory.
    const c = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], cwd: '/tmp' });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (out += d));
    c.on('error', (err) => resolve({ code: 127, out: `${out}\n${err.message}` }));
    c.on('exit', (code) => resolve({ code: code ?? 1, out }));
  });
}

function postgresOwner(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('no "postgres" OS user (is the postgresql package installed?)');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** initdb into `dir`/pg and start it; `dir` must be reachable by the postgres user (mode 711). */
export async function createCluster(dir: string): Promise<PgCluster> {
  const dataDir = join(dir, 'pg');
  const sockDir = join(dir, 'pgsock'); // the run directory is short: well under the ~107-byte socket path limit
  const logFile = join(dir, 'postgres.log');
  mkdirSync(dataDir, { mode: 0o700, recursive: true });
  mkdirSync(sockDir, { recursive: true });
  appendFileSync(logFile, '');
  if (IS_ROOT) {
    const { uid, gid } = postgresOwner();
    for (const p of [dataDir, sockDir, logFile]) chownSync(p, uid, gid);
  }
  const init = await runPgBin('initdb', ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C'], true);
  if (init.code !== 0) throw new Error(`initdb failed (exit ${init.code}):\n${init.out}`);

  let port = 0;
  const pidFile = join(dataDir, 'postmaster.pid');
  const cluster: PgCluster = {
    get adminUrl() {
      return `postgres://postgres@127.0.0.1:${port}/postgres`;
    },
    dataDir,
    logFile,
    async start() {
      const r = await runPgBin('pg_ctl', ['-D', dataDir, '-w', '-t', '90', '-l', logFile, 'start'], true);
      if (r.code !== 0) throw new Error(`pg_ctl start failed (exit ${r.code}): ${r.out.trim()}`);
    },
    async stop(mode) {
      const r = await runPgBin('pg_ctl', ['-D', dataDir, '-w', '-t', '90', '-m', mode, 'stop'], true);
      if (r.code !== 0) throw new Error(`pg_ctl stop -m ${mode} failed (exit ${r.code}): ${r.out.trim()}`);
    },
    async isUp() {
      const c = new pg.Client({ connectionString: cluster.adminUrl, connectionTimeoutMillis: 2000 });
      try {
        await c.connect();
        await c.end();
        return true;
      } catch {
        return false;
      }
    },
    pid() {
      try {
        const pid = Number.parseInt(readFileSync(pidFile, 'utf8').split('\n')[0]!.trim(), 10);
        return pid > 1 && pidAlive(pid) ? pid : null;
      } catch {
        return null;
      }
    },
    killSync() {
      const pid = cluster.pid();
      if (!pid) return;
      // SIGQUIT = immediate shutdown: the data stays consistent (WAL), the postmaster ends its backends.
      process.kill(pid, 'SIGQUIT');
      const deadline = Date.now() + 5000;
      while (pidAlive(pid) && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    },
  };
  // A port taken between freePort() and the bind: try another (later lines of postgresql.conf win).
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    appendFileSync(join(dataDir, 'postgresql.conf'),
      `\n# npm run chaos\nport = ${port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '${sockDir}'\nmax_connections = 200\n`);
    try {
      await cluster.start();
      return cluster;
    } catch (err) {
      const text = readFileSync(logFile, 'utf8');
      if (attempt >= 3 || !/could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(text)) {
        throw new Error(`${(err as Error).message}\n${text.slice(-3000)}`);
      }
    }
  }
}
