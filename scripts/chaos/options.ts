/**
 * The CHAOS_* variables: read once, checked once (every problem listed), with the parameters a seed
 * draws when a variable leaves them open. `npm run chaos -- --help` prints VARIABLES.
 */
import { mulberry32, pick, type Rnd } from './random.js';

/** Fault kinds and their relative weights in the schedule (see docs/testing.md for what each does). */
export const FAULT_WEIGHTS = {
  'proxy-fault': 14, 'proxy-pass': 8, 'proxy-switch-central': 4, 'edge-kill': 7, 'edge-term': 4, 'central-kill': 5, 'central-term': 3,
  'central-down': 3, 'pg-restart': 3, 'pg-down': 2, 'pg-terminate': 4, cli: 6, 'central-admin': 8, 'edge-dead-letters': 3,
  'central-freeze': 3, 'edge-freeze': 2, poison: 4, 'redis-kill': 5, 'redis-freeze': 3, 'disk-full': 5, 'central-dump': 6, 'central-restore': 7,
} as const;
export type FaultKind = keyof typeof FAULT_WEIGHTS;

/** name, default, meaning. */
export const VARIABLES: readonly [string, string, string][] = [
  ['CHAOS_SEED', 'random, printed', 'fixes the drawn parameters, the fault schedule and each writer\'s mix of operations'],
  ['CHAOS_DURATION_S', '180', 'length of the fault phase in seconds (set-up, drain and checks add 1–3 min)'],
  ['CHAOS_BACKEND', 'sqlite', 'the edge\'s buffer: sqlite or redis'],
  ['CHAOS_RESTORE', '1', '0 turns off central-dump / central-restore (central restored from an older pg_dump)'],
  ['CHAOS_EVENT_GAP_MS', '1500-6000', 'pause between two fault events, drawn in MIN-MAX'],
  ['CHAOS_KINDS', 'all', `comma list of fault kinds allowed: ${Object.keys(FAULT_WEIGHTS).join(', ')}`],
  ['CHAOS_CLIENTS', '8-16 from the seed', 'concurrent writers at the edge (plus one that writes into poison windows)'],
  ['CHAOS_BATCH', '4, 16 or 100 from the seed', 'the edge\'s SYNC_BATCH_SIZE'],
  ['CHAOS_PIPELINE', '1 or 2 from the seed', 'the edge\'s SYNC_PIPELINE'],
  ['CHAOS_BUFFER_MAX', '3-8 MB in 30% of seeds, else the default', 'the edge\'s BUFFER_MAX_BYTES (507s are then expected)'],
  ['CHAOS_SMALL_DISK_MB', '200 in 35% of sqlite seeds when root, else 0', 'DATA_DIR on a tmpfs of this size, with disk-full faults (needs root; 0 = off)'],
  ['CHAOS_OUT', '$TMPDIR', 'where the run directory opsdb_chaos_<seed>-XXXXXX is made'],
  ['CHAOS_KEEP', '0', '1 keeps the run directory (cluster, logs, edge data) after a passing run too'],
];

export function helpText(): string {
  const w = Math.max(...VARIABLES.map(([n]) => n.length));
  return [
    'npm run chaos [-- --help]',
    '',
    'A seeded soak under faults: its own PostgreSQL cluster, two centrals, a fault proxy, a real edge daemon and',
    'writers on every write endpoint, with faults injected for CHAOS_DURATION_S; then every acknowledged',
    'transaction is checked at central (exactly once, in seq order, with its values). Exit 0 only when every check',
    'passed; the last line says RESULT. See docs/testing.md, "Soak under faults".',
    '',
    'Variables (default):',
    ...VARIABLES.map(([n, d, what]) => `  ${n.padEnd(w)}  ${what} (${d})`),
    '',
    'e.g.  CHAOS_SEED=204 CHAOS_BACKEND=redis CHAOS_DURATION_S=90 CHAOS_EVENT_GAP_MS=1000-4000 npm run chaos',
  ].join('\n');
}

export interface Options {
  seed: number;
  durationMs: number;
  backend: 'sqlite' | 'redis';
  restore: boolean;
  gapMs: [number, number];
  kinds: Partial<Record<FaultKind, number>>;
  clients: number;
  batch: string;
  pipeline: string;
  syncTimeoutMs: string;
  /** '' = the edge's default. */
  bufferMax: string;
  smallDiskMb: number;
  outBase: string | null;
  keep: boolean;
}

const int = (v: string) => (/^\d+$/.test(v.trim()) ? Number(v) : NaN);

/**
 * Reads the variables; parameters left open are drawn from the seed's stream, in a fixed order, and the
 * stream goes on to draw the fault schedule (so one seed replays the same run as closely as timing allows).
 */
export function readOptions(env: NodeJS.ProcessEnv, isRoot: boolean): { options: Options; rnd: Rnd; problems: string[] } {
  const problems: string[] = [];
  const num = (name: string, dflt: number, min: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return dflt;
    const n = int(raw);
    if (!(n >= min)) problems.push(`${name} must be an integer ≥ ${min}, got ${JSON.stringify(raw)}`);
    return n;
  };
  const seed = num('CHAOS_SEED', Math.floor(Math.random() * 1e9), 0);
  const rnd = mulberry32(seed);
  const durationS = num('CHAOS_DURATION_S', 180, 10);
  const backend = env.CHAOS_BACKEND || 'sqlite';
  if (backend !== 'sqlite' && backend !== 'redis') problems.push(`CHAOS_BACKEND must be sqlite or redis, got ${JSON.stringify(backend)}`);
  const restoreRaw = env.CHAOS_RESTORE || '1';
  if (restoreRaw !== '0' && restoreRaw !== '1') problems.push(`CHAOS_RESTORE must be 0 or 1, got ${JSON.stringify(restoreRaw)}`);
  const gap = (env.CHAOS_EVENT_GAP_MS || '1500-6000').split('-').map(int);
  if (gap.length !== 2 || !(gap[0]! >= 0) || !(gap[1]! >= gap[0]!)) problems.push(`CHAOS_EVENT_GAP_MS must be MIN-MAX in ms, got ${JSON.stringify(env.CHAOS_EVENT_GAP_MS)}`);
  const allowed = env.CHAOS_KINDS ? env.CHAOS_KINDS.split(',').map((k) => k.trim()).filter(Boolean) : null;
  for (const k of allowed ?? []) if (!(k in FAULT_WEIGHTS)) problems.push(`CHAOS_KINDS: unknown fault kind ${JSON.stringify(k)}`);
  // Drawn in this order (the order of the first chaos script, so its seeds keep their parameters).
  const clients = env.CHAOS_CLIENTS ? num('CHAOS_CLIENTS', 8, 1) : 8 + Math.floor(rnd() * 9);
  const batch = env.CHAOS_BATCH || pick(rnd, ['4', '16', '100']);
  const pipeline = env.CHAOS_PIPELINE || pick(rnd, ['1', '2', '2']);
  const syncTimeoutMs = pick(rnd, ['1500', '3000', '5000']);
  if (!(int(batch) >= 1)) problems.push(`CHAOS_BATCH must be an integer ≥ 1, got ${JSON.stringify(batch)}`);
  if (!(int(pipeline) >= 1)) problems.push(`CHAOS_PIPELINE must be an integer ≥ 1, got ${JSON.stringify(pipeline)}`);
  let smallDiskMb: number;
  if (env.CHAOS_SMALL_DISK_MB) {
    smallDiskMb = num('CHAOS_SMALL_DISK_MB', 0, 0);
    if (smallDiskMb > 0 && !isRoot) problems.push('CHAOS_SMALL_DISK_MB needs root (it mounts a tmpfs)');
    if (smallDiskMb > 0 && backend !== 'sqlite') problems.push('CHAOS_SMALL_DISK_MB is for the sqlite backend');
  } else smallDiskMb = backend === 'sqlite' && rnd() < 0.35 && isRoot ? 200 : 0;
  const bufferMax = env.CHAOS_BUFFER_MAX || (rnd() < 0.3 ? String(3_000_000 + Math.floor(rnd() * 5_000_000)) : '');
  if (bufferMax && !(int(bufferMax) >= 1)) problems.push(`CHAOS_BUFFER_MAX must be a number of bytes, got ${JSON.stringify(bufferMax)}`);
  const restore = restoreRaw !== '0';
  const kinds = Object.fromEntries(
    Object.entries(FAULT_WEIGHTS).filter(([k]) =>
      (!allowed || allowed.includes(k)) && (backend === 'redis' || !k.startsWith('redis')) && (smallDiskMb > 0 || k !== 'disk-full') &&
      (restore || (k !== 'central-dump' && k !== 'central-restore'))),
  ) as Partial<Record<FaultKind, number>>;
  if (Object.keys(kinds).length === 0) problems.push('no fault kind left to inject (CHAOS_KINDS, CHAOS_BACKEND, CHAOS_RESTORE)');
  const options: Options = {
    seed, durationMs: durationS * 1000, backend: backend as Options['backend'], restore, gapMs: [gap[0]!, gap[1]!], kinds, clients,
    batch, pipeline, syncTimeoutMs, bufferMax, smallDiskMb, outBase: env.CHAOS_OUT || null, keep: env.CHAOS_KEEP === '1',
  };
  return { options: Object.freeze(options), rnd, problems };
}
