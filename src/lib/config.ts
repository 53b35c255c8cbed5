/**
 * Configuration: one TOML file (keys are the variable names in lower case)
 * overridden by environment variables of the same name in upper case.
 * Parsed once into a frozen object; every problem is listed in one error.
 * This is the only module that reads process.env.
 */
import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';

const bool = z.union([z.boolean(), z.enum(['true', 'false', '1', '0', 'yes', 'no'])], {
  error: 'expected true or false (also 1/0, yes/no)',
}).transform((v) =>
  typeof v === 'boolean' ? v : ['true', '1', 'yes'].includes(v),
);
/** A whole number; `unit` names what it counts in the messages ("1GB" is not a number of bytes). */
const int = (min: number, max = Number.MAX_SAFE_INTEGER, unit = '') => {
  const whole = `must be a whole number${unit ? ` of ${unit}, with no unit after it` : ''}`;
  const of = unit ? ` ${unit}` : '';
  // Only digits become a number: z.coerce took " " and "" (a TOML `port = ""`) for 0, a random port or no
  // disk watermark, and true for 1, "0x1F90" and "1e9" for numbers.
  return z.preprocess(
    (v) => (typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) ? Number(v) : v),
    z.number({ error: whole }).int({ error: whole })
      .min(min, { error: `must be at least ${min}${of}` })
      .max(max, { error: `must be at most ${max}${of}` }),
  );
};
const bytes = (min: number, max?: number) => int(min, max, 'bytes');
const ms = (min: number, max?: number) => int(min, max, 'milliseconds');
/** Central's URL. Credentials in it are refused: fetch cannot send them, and the site token is what authenticates. */
const centralUrl = z
  .url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL, like https://ops-db.example.org' })
  .refine((u) => {
    try {
      const url = new URL(u);
      return url.username === '' && url.password === '';
    } catch {
      return true; // not a URL at all: said by the check above
    }
  }, 'must not hold a user name or password: the edge authenticates with SITE_TOKEN');

const schema = z
  .object({
    SITE_TYPE: z.enum(['main', 'secondary']).default('secondary'),
    SITE_NAME: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'lower-case letters, digits, "-" and "_", at most 63')
      .optional(),
    HOST: z.string().min(1).default('127.0.0.1'),
    PORT: int(0, 65535).optional(),
    DATA_DIR: z.string().min(1).default('./data'),
    DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must start with postgres:// or postgresql://').optional(),
    DATABASE_POOL_MAX: int(1, 1000).default(10),
    BUFFER_BACKEND: z.enum(['sqlite', 'redis']).default('sqlite'),
    REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must start with redis:// or rediss://').default('redis://127.0.0.1:6379'),
    REDIS_ALLOW_WEAK_DURABILITY: bool.default(false),
    CENTRAL_URL: centralUrl.optional(),
    SITE_TOKEN: z.string().min(1).optional(),
    SYNC_BATCH_SIZE: int(1, 10_000).default(200),
    SYNC_BATCH_MAX_BYTES: bytes(1024).default(4 * 1024 * 1024),
    SYNC_PIPELINE: int(1, 2).default(2),
    SYNCED_RETENTION_HOURS: int(0, 168, 'hours').default(72),
    SYNC_INTERVAL_MS: ms(10).default(1000),
    SYNC_TIMEOUT_MS: ms(100).default(30_000),
    RETRY_BASE_MS: ms(1).default(500),
    RETRY_MAX_MS: ms(1).default(300_000),
    BUFFER_MAX_BYTES: bytes(1024).default(1024 ** 3),
    MIN_FREE_DISK_BYTES: bytes(0).default(256 * 1024 ** 2),
    DISK_RESERVE_BYTES: bytes(0).default(32 * 1024 ** 2),
    MAX_BODY_BYTES: bytes(1024, 512 * 1024 ** 2).default(8 * 1024 ** 2),
    GROUP_COMMIT_MAX: int(1, 100_000).default(2000),
    DEMO_MODE: bool.default(false),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    METRICS_PUBLIC: bool.default(false),
    HTTP_FAST_LANE: bool.default(true),
  })
  .strict();

/** Rules across settings; checked on the raw values so they are reported with every other problem. */
function crossProblems(raw: Record<string, unknown>, serving: boolean): string[] {
  const out: string[] = [];
  const siteType = raw.SITE_TYPE ?? 'secondary';
  if (siteType === 'main' && !raw.DATABASE_URL) out.push('DATABASE_URL: required when SITE_TYPE=main');
  // Only the daemon talks to central; `opsdb buffer …` and the account commands work on DATA_DIR alone.
  if (serving && siteType === 'secondary' && raw.CENTRAL_URL && !raw.SITE_TOKEN) out.push('SITE_TOKEN: required when CENTRAL_URL is set');
  const base = Number(raw.RETRY_BASE_MS ?? 500);
  const max = Number(raw.RETRY_MAX_MS ?? 300_000);
  if (base > max) out.push('RETRY_BASE_MS: must not exceed RETRY_MAX_MS');
  return out;
}

type Parsed = z.infer<typeof schema>;

export interface Config {
  readonly siteType: 'main' | 'secondary';
  readonly siteName: string;
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly databaseUrl: string | undefined;
  readonly databasePoolMax: number;
  readonly bufferBackend: 'sqlite' | 'redis';
  readonly redisUrl: string;
  readonly redisAllowWeakDurability: boolean;
  readonly centralUrl: string | undefined;
  readonly siteToken: string | undefined;
  readonly syncBatchSize: number;
  readonly syncBatchMaxBytes: number;
  /** Batches at central at once (SYNC_PIPELINE): 2 sends the next while the last is applied. */
  readonly syncPipeline: number;
  /**
   * Edge (SYNCED_RETENTION_HOURS): how long a synced transaction is kept whole after compaction, to be sent
   * again to a central restored from an older backup; 0: not kept.
   */
  readonly syncedRetentionHours: number;
  readonly syncIntervalMs: number;
  readonly syncTimeoutMs: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  readonly bufferMaxBytes: number;
  readonly minFreeDiskBytes: number;
  /** Edge: room kept on the disk for sync, given back when the disk fills (edge/disk-reserve.ts); 0: none. */
  readonly diskReserveBytes: number;
  readonly maxBodyBytes: number;
  /** Most writes made durable by one commit (1: a commit, and an fsync, per write). */
  readonly groupCommitMax: number;
  readonly demoMode: boolean;
  readonly logLevel: Parsed['LOG_LEVEL'];
  readonly metricsPublic: boolean;
  /** Serve the hot writes without koa (src/lib/http/context.ts). */
  readonly httpFastLane: boolean;
}

export const CONFIG_KEYS = Object.keys(schema.shape) as (keyof Parsed)[];
const SECRET_KEYS = new Set(['DATABASE_URL', 'SITE_TOKEN', 'REDIS_URL', 'CENTRAL_URL']);

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export interface LoadOptions {
  /** Path of a TOML file; its keys are the variable names, any case. */
  file?: string | undefined;
  /** Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Values that win over file and environment (used by `opsdb demo`). */
  overrides?: Partial<Record<keyof Parsed, string | number | boolean>>;
  /** For the daemon (the default): settings only it needs (SITE_TOKEN with CENTRAL_URL) are required too. */
  serving?: boolean;
}

/**
 * An environment file as systemd's EnvironmentFile= reads it: KEY=VALUE
 * lines; `#` and `;` comments and blank lines skipped; a line ending in `\`
 * joined to the next; a value in single quotes taken as it is, one in double
 * quotes or none with `\x` read as `x`; a line with no `=` skipped (systemd
 * only warns). Returns the variables, or null (with the problem added) when
 * the file cannot be read.
 */
export function readEnvFile(file: string, problems: string[]): Record<string, string> | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    problems.push(`environment file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    return null;
  }
  const out: Record<string, string> = {};
  for (const raw of text.replace(/\\\r?\n/g, '').split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    const v = m[2]!;
    if (/^'.*'$/.test(v)) out[m[1]!] = v.slice(1, -1);
    else out[m[1]!] = (/^".*"$/.test(v) ? v.slice(1, -1) : v).replace(/\\(.)/g, '$1');
  }
  return out;
}

function readFile(file: string, problems: string[]): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    problems.push(`config file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    return {};
  }
  try {
    const raw = parseToml(text);
    return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k.toUpperCase(), v]));
  } catch (err) {
    problems.push(`config file ${file}: not valid TOML (${(err as Error).message.split('\n')[0]})`);
    return {};
  }
}

/** What systemd tells a service in its environment (not settings: the service manager sets them). */
export interface SystemdEnv {
  notifySocket: string | null;
  /** Watchdog interval in microseconds, when the unit has WatchdogSec= and it is meant for this process. */
  watchdogUsec: number | null;
}

export function systemdEnv(env: NodeJS.ProcessEnv = process.env, pid = process.pid): SystemdEnv {
  const usec = Number(env.WATCHDOG_USEC);
  const forUs = !env.WATCHDOG_PID || Number(env.WATCHDOG_PID) === pid;
  return {
    notifySocket: env.NOTIFY_SOCKET || null,
    watchdogUsec: Number.isFinite(usec) && usec > 0 && forUs ? usec : null,
  };
}

export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const problems: string[] = [];
  const merged: Record<string, unknown> = opts.file ? readFile(opts.file, problems) : {};
  for (const key of CONFIG_KEYS) {
    const v = env[key];
    if (v !== undefined && v !== '') merged[key] = v;
  }
  Object.assign(merged, opts.overrides ?? {});

  const result = schema.safeParse(merged);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const key = issue.path.join('.') || '(file)';
      const shown = SECRET_KEYS.has(key) ? '' : ` (got ${JSON.stringify(merged[key])})`;
      if (issue.code === 'unrecognized_keys') {
        problems.push(`unknown setting(s): ${issue.keys.join(', ')}; known: ${CONFIG_KEYS.join(', ')}`);
      } else {
        problems.push(`${key}: ${issue.message}${merged[key] === undefined ? '' : shown}`);
      }
    }
  }
  problems.push(...crossProblems(merged, opts.serving ?? true));
  if (problems.length > 0 || !result.success) throw new ConfigError(problems);
  const c = result.data;
  const main = c.SITE_TYPE === 'main';
  const config: Config = {
    siteType: c.SITE_TYPE,
    siteName: c.SITE_NAME ?? (main ? 'main' : 'observatory'),
    host: c.HOST,
    port: c.PORT ?? (main ? 8001 : 8000),
    dataDir: c.DATA_DIR,
    databaseUrl: c.DATABASE_URL,
    databasePoolMax: c.DATABASE_POOL_MAX,
    bufferBackend: c.BUFFER_BACKEND,
    redisUrl: c.REDIS_URL,
    redisAllowWeakDurability: c.REDIS_ALLOW_WEAK_DURABILITY,
    centralUrl: c.CENTRAL_URL?.replace(/\/+$/, ''),
    siteToken: c.SITE_TOKEN,
    syncBatchSize: c.SYNC_BATCH_SIZE,
    syncBatchMaxBytes: c.SYNC_BATCH_MAX_BYTES,
    syncPipeline: c.SYNC_PIPELINE,
    syncedRetentionHours: c.SYNCED_RETENTION_HOURS,
    syncIntervalMs: c.SYNC_INTERVAL_MS,
    syncTimeoutMs: c.SYNC_TIMEOUT_MS,
    retryBaseMs: c.RETRY_BASE_MS,
    retryMaxMs: c.RETRY_MAX_MS,
    bufferMaxBytes: c.BUFFER_MAX_BYTES,
    minFreeDiskBytes: c.MIN_FREE_DISK_BYTES,
    diskReserveBytes: c.DISK_RESERVE_BYTES,
    maxBodyBytes: c.MAX_BODY_BYTES,
    groupCommitMax: c.GROUP_COMMIT_MAX,
    demoMode: c.DEMO_MODE,
    logLevel: c.LOG_LEVEL,
    metricsPublic: c.METRICS_PUBLIC,
    httpFastLane: c.HTTP_FAST_LANE,
  };
  // Secrets stay usable but never show up in JSON.stringify, util.inspect or logs.
  for (const key of ['databaseUrl', 'siteToken', 'redisUrl'] as const) {
    Object.defineProperty(config, key, { value: config[key], enumerable: false });
  }
  return Object.freeze(config);
}
