// Helpers for tests that need the throwaway PostgreSQL / Redis started by
// scripts/test.mjs (`npm test`). Nothing here skips a test: a missing service
// is an error.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { freePort } from './ports.js';

function requireEnv(name: string): string {
  const v = process.env[name];
  if (!v) {
    throw new Error(
      `${name} is not set: run the tests with \`npm test\` (scripts/test.mjs starts ` +
        `PostgreSQL and Redis and sets it), or export it yourself`,
    );
  }
  return v;
}

const rand = (bytes = 4) => randomBytes(bytes).toString('hex');

function sanitize(label: string, max: number): string {
  const s = label
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .replace(/^_+|_+$/g, '');
  return (s || 'x').slice(0, max);
}

// ------------------------------------------------------------------ PostgreSQL

/** URL of the test PostgreSQL server's `postgres` database, as superuser. */
export function pgAdminUrl(): string {
  return requireEnv('OPSDB_TEST_PG_URL');
}

/** Directory with initdb, pg_ctl, postgres (for tests that run their own server). */
export function pgBinDir(): string {
  return requireEnv('OPSDB_TEST_PG_BINDIR');
}

export interface TestDatabase {
  /** Connection URL of the new database. */
  url: string;
  /** Database name (`t_<label>_<random>`). */
  name: string;
  /** Terminates its connections and drops it. Safe to call twice. */
  drop(): Promise<void>;
}

const quoteIdent = (s: string) => `"${s.replace(/"/g, '""')}"`;

async function withAdmin<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: pgAdminUrl() });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Creates a uniquely named, empty database for one test (or file). */
export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const name = `t_${sanitize(label, 40)}_${rand(6)}`; // <= 63 bytes
  await withAdmin(async (c) => {
    for (let attempt = 1; ; attempt++) {
      try {
        await c.query(`CREATE DATABASE ${quoteIdent(name)}`);
        return;
      } catch (err) {
        // 55006: "source database template1 is being accessed by other users"
        if ((err as { code?: string }).code === '55006' && attempt < 10) {
          await new Promise((r) => setTimeout(r, 100 * attempt));
          continue;
        }
        throw err;
      }
    }
  });
  const u = new URL(pgAdminUrl());
  u.pathname = `/${name}`;
  const url = u.toString();
  let dropped = false;
  return {
    url,
    name,
    async drop() {
      if (dropped) return;
      await withAdmin(async (c) => {
        await c.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
          [name],
        );
        await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
      });
      dropped = true;
    },
  };
}

// ----------------------------------------------------------------------- Redis

/** URL of the shared test Redis server. Isolate keys with `redisKeyPrefix`. */
export function redisUrl(): string {
  return requireEnv('OPSDB_TEST_REDIS_URL');
}

/** Unique key prefix `t:<label>:<random>:` so tests sharing one Redis do not collide. */
export function redisKeyPrefix(label: string): string {
  return `t:${sanitize(label, 40)}:${rand(6)}:`;
}

export interface RedisServer {
  url: string;
  port: number;
  pid: number;
  dir: string;
  /** SIGTERM (clean shutdown; AOF is fsynced) and wait until the process is gone. */
  stop(): Promise<void>;
  /** SIGKILL (simulated crash) and wait until the process is gone. */
  kill(): Promise<void>;
}

/** True while `pid` is a live, non-zombie process (PID 1 here may not reap orphans). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const i = stat.lastIndexOf(')');
    const st = stat.slice(i + 2, i + 3);
    return st !== 'Z' && st !== 'X';
  } catch {
    return false;
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (pidAlive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
}

/** One inline command over a raw socket; resolves with the reply text. */
function redisRaw(port: number, command: string, until: (buf: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (err: Error | null, val?: string) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(val ?? '');
    };
    const timer = setTimeout(() => done(new Error('timeout')), 1000);
    sock.on('connect', () => sock.write(`${command}\r\n`));
    sock.on('data', (b) => {
      buf += b.toString();
      if (until(buf)) done(null, buf);
    });
    sock.on('error', (err) => done(err));
    sock.on('close', () => done(new Error('connection closed')));
  });
}

const liveServers = new Set<number>();
let exitHookInstalled = false;
function trackServer(pid: number) {
  liveServers.add(pid);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // A test that forgot stop(): do not leave the daemon behind.
    process.on('exit', () => {
      for (const p of liveServers) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {}
      }
    });
  }
}

/**
 * Starts an extra, durable redis-server (same flags as the shared one) with its
 * data in `dir`, for tests that must stop/crash/restart Redis. Pass the `port`
 * of a previous server to restart it on the same address (its AOF in `dir` is
 * reloaded). `config` adds redis.conf settings after those flags, which it
 * overrides (e.g. `['--appendfsync', 'everysec']`).
 */
export async function startRedisServer(dir: string, opts: { port?: number; config?: string[] } = {}): Promise<RedisServer> {
  const bin = requireEnv('OPSDB_TEST_REDIS_SERVER');
  await mkdir(dir, { recursive: true });
  const pidFile = path.join(dir, 'redis.pid');
  const logFile = path.join(dir, 'redis.log');
  let lastError = '';
  // A port of its own: three tries on fresh ports. A given port (a restart where a killed server ran): a few
  // tries on it, while the killed server's last process lets the port go (seen under load: "bind: Address
  // already in use" a moment after the server's pid was gone).
  for (let attempt = 1; attempt <= (opts.port ? 6 : 3); attempt++) {
    if (opts.port && attempt > 1) {
      if (!/Address already in use/.test(lastError)) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const port = opts.port ?? (await freePort());
    await rm(pidFile, { force: true });
    const args = [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes',
      '--appendfsync', 'always', '--daemonize', 'yes', '--dir', dir, '--pidfile', pidFile,
      '--logfile', logFile, ...(opts.config ?? []),
    ];
    const code = await new Promise<number>((resolve) => {
      const child = spawn(bin, args, { stdio: 'ignore' });
      child.on('error', () => resolve(127));
      child.on('exit', (c) => resolve(c ?? 1));
    });
    if (code !== 0) {
      lastError = `redis-server exited with ${code}`;
      continue;
    }
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      const pid = Number.parseInt((await readFile(pidFile, 'utf8').catch(() => '')).trim(), 10);
      if (pid > 1 && !pidAlive(pid)) break; // died, e.g. port taken
      if (pid > 1) {
        try {
          const info = await redisRaw(port, 'INFO server', (b) => /process_id:\d+\r\n/.test(b));
          if (Number(/process_id:(\d+)/.exec(info)?.[1]) === pid) {
            trackServer(pid);
            return makeHandle(dir, port, pid);
          }
        } catch {}
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const pid = Number.parseInt((await readFile(pidFile, 'utf8').catch(() => '')).trim(), 10);
    if (pid > 1 && pidAlive(pid)) {
      process.kill(pid, 'SIGKILL');
      await waitGone(pid, 5000);
    }
    lastError = `redis-server on port ${port} did not come up:\n${await readFile(logFile, 'utf8').catch(() => '')}`;
  }
  throw new Error(`startRedisServer(${dir}) failed: ${lastError}`);
}

function makeHandle(dir: string, port: number, pid: number): RedisServer {
  const end = async (signal: NodeJS.Signals) => {
    if (pidAlive(pid)) {
      try {
        process.kill(pid, signal);
      } catch {}
      if (!(await waitGone(pid, 15000))) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
        await waitGone(pid, 5000);
      }
    }
    liveServers.delete(pid);
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pid,
    dir,
    stop: () => end('SIGTERM'),
    kill: () => end('SIGKILL'),
  };
}

// ---------------------------------------------------------------- temp dirs

export interface TempDir {
  path: string;
  /** Removes the directory and everything in it. */
  cleanup(): Promise<void>;
}

/** A fresh directory under OPSDB_TEST_TMP (removed by the runner too) or os.tmpdir(). */
export async function tempDir(label: string): Promise<TempDir> {
  const base = process.env.OPSDB_TEST_TMP || os.tmpdir();
  const dir = await mkdtemp(path.join(base, `${sanitize(label, 40)}-`));
  return {
    path: dir,
    cleanup: () => rm(dir, { recursive: true, force: true, maxRetries: 3 }),
  };
}

// ----------------------------------------------------------------- Chromium

/** Path of the Chromium binary for playwright-core (`executablePath`). */
export function chromiumPath(): string {
  return requireEnv('OPSDB_TEST_CHROMIUM');
}
