/** Shared pieces of the benchmarks: child processes, autocannon runs, RSS, and the report file. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync, openSync, closeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The production form of the CLI (npm run build), as the systemd units run it. */
export const OPSDB = `${ROOT}dist/cli/main.js`;

/**
 * The environment the edge's systemd unit gives the daemon (its
 * `Environment=` lines), so benchmarks run the edge as it is deployed.
 */
export const EDGE_UNIT_ENV: Record<string, string> = Object.fromEntries(
  readFileSync(`${ROOT}systemd/opsdb-edge.service`, 'utf8')
    .split('\n')
    .map((l) => /^Environment=([A-Z_]+)=(.*)$/.exec(l.trim()))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => [m[1]!, m[2]!]),
);

export interface Proc {
  child: ChildProcess;
  url: string;
  /** The JSON log line that said the server listens. */
  ready: Record<string, unknown>;
  stop(): Promise<void>;
}

/**
 * Spawns a Node program with stdout going to a log file (so the benchmark
 * process spends no CPU reading it) and waits for a JSON line whose `msg`
 * matches `readyMsg`.
 */
export async function spawnServer(args: string[], env: Record<string, string>, readyMsg: RegExp, logFile: string): Promise<Proc & { spawnedAt: number }> {
  const spawnedAt = performance.now();
  const out = openSync(logFile, 'w');
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', out, 'inherit'] });
  closeSync(out);
  let exited: number | null | undefined;
  child.on('exit', (code) => (exited = code));
  for (;;) {
    if (exited !== undefined) throw new Error(`${args.join(' ')} exited with ${exited}; see ${logFile}`);
    for (const line of readFileSync(logFile, 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue;
      const j = JSON.parse(line) as Record<string, unknown>;
      if (!readyMsg.test(String(j.msg))) continue;
      return {
        child, url: String(j.url), ready: j, spawnedAt,
        stop: () => new Promise((r) => {
          if (exited !== undefined) return r();
          child.once('exit', () => r());
          child.kill('SIGTERM');
        }),
      };
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

export interface LoadResult {
  requests_per_s: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  non2xx: number;
  /** Responses received in the run. */
  requests: number;
}

export async function load(opts: { url: string; connections: number; seconds: number; method?: 'POST' | 'GET'; body?: string; headers?: Record<string, string> }): Promise<LoadResult> {
  const r = await autocannon({
    url: opts.url,
    connections: opts.connections,
    duration: opts.seconds,
    method: opts.method ?? 'POST',
    body: opts.body,
    headers: { 'content-type': 'application/json', ...(opts.headers ?? {}) },
  });
  return {
    requests_per_s: Math.round(r.requests.average),
    p50_ms: r.latency.p50,
    p99_ms: r.latency.p99,
    errors: r.errors + r.timeouts,
    non2xx: r.non2xx,
    requests: r.requests.total,
  };
}

/** User + system CPU seconds a process has used so far. */
export function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/**
 * CPU seconds a process has used so far, split into its main thread (the
 * event loop) and all its other threads (for the edge: the storage thread,
 * V8's GC helpers and libuv's pool). The process's own total counts threads
 * that have ended too, so "other" is that total less the main thread.
 */
export function threadCpuSeconds(pid: number): { main: number; other: number } {
  const seconds = (statPath: string) => {
    const stat = readFileSync(statPath, 'utf8');
    const f = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  };
  const main = seconds(`/proc/${pid}/task/${pid}/stat`);
  return { main, other: seconds(`/proc/${pid}/stat`) - main };
}

/** CPU per request, in µs, of one load run: the server's main thread, its other threads, and autocannon (this process). */
export interface RequestCpu {
  main_us: number;
  other_us: number;
  load_us: number;
}

/** Runs a load against a server process and says where each request's CPU went. */
export async function loadWithCpu(pid: number, opts: Parameters<typeof load>[0]): Promise<LoadResult & { cpu: RequestCpu }> {
  const before = threadCpuSeconds(pid);
  const own = process.cpuUsage();
  const result = await load(opts);
  const after = threadCpuSeconds(pid);
  const ownUs = process.cpuUsage(own);
  const n = Math.max(1, result.requests);
  const cpu = {
    main_us: Math.round(((after.main - before.main) * 1e6) / n),
    other_us: Math.round(((after.other - before.other) * 1e6) / n),
    load_us: Math.round((ownUs.user + ownUs.system) / n),
  };
  return { ...result, cpu };
}

/** One line of a server's memory: RSS (anonymous and file-backed) and, from its /metrics (METRICS_PUBLIC=true), V8's heap and external buffers. */
export async function memoryTrace(p: { child: ChildProcess; url: string }): Promise<string> {
  const status = readFileSync(`/proc/${p.child.pid}/status`, 'utf8');
  const kb = (k: string) => Math.round(Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) / 1024);
  const m = await (await fetch(`${p.url}/metrics`)).text();
  const mb = (n: string) => Math.round(Number(new RegExp(`^opsdb_process_${n}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(m)?.[1]) / 1048576);
  return `rss=${kb('VmRSS')} anon=${kb('RssAnon')} file=${kb('RssFile')} heap_total=${mb('nodejs_heap_size_total_bytes')} ` +
    `heap_used=${mb('nodejs_heap_size_used_bytes')} external=${mb('nodejs_external_memory_bytes')} (MB)`;
}

export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

/** Replaces the section between `<!-- BEGIN name -->` and `<!-- END name -->` in docs/performance.md. */
export function writeSection(name: string, markdown: string): void {
  const path = `${ROOT}docs/performance.md`;
  const begin = `<!-- BEGIN ${name} -->`;
  const end = `<!-- END ${name} -->`;
  let doc = existsSync(path) ? readFileSync(path, 'utf8') : '# Performance\n';
  const block = `${begin}\n${markdown.trim()}\n${end}`;
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  doc = i >= 0 && j > i ? doc.slice(0, i) + block + doc.slice(j + end.length) : `${doc.trimEnd()}\n\n${block}\n`;
  writeFileSync(path, doc);
}

export function machine(): string {
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU';
  return `${cpu}, ${(readFileSync('/proc/cpuinfo', 'utf8').match(/^processor/gm) ?? []).length} cores, Node ${process.version}`;
}

export interface Figure {
  bench: string;
  what: string;
  value: number;
  unit: string;
  baseline_what: string | null;
  baseline: number | null;
  /** value / baseline, when there is one. */
  ratio: number | null;
  target: string;
}

/** Keeps each benchmark's headline figures for `npm run bench`'s summary table. */
export function recordFigures(bench: string, figures: Omit<Figure, 'bench' | 'ratio'>[]): void {
  const path = `${ROOT}docs/performance.json`;
  const all: Figure[] = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : [];
  const rest = all.filter((f) => f.bench !== bench);
  const mine = figures.map((f) => ({ bench, ...f, ratio: f.baseline ? Math.round((f.value / f.baseline) * 100) / 100 : null }));
  writeFileSync(path, `${JSON.stringify([...rest, ...mine], null, 2)}\n`);
}
