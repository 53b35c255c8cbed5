/**
 * npm run bench:settle — what one rejection costs the buffer when a long backlog waits behind it.
 *
 * A rejection must block the transactions that wait on the rejected one (SPEC §2.3). Finding them used
 * to mean reading every transaction after it, so with a week's backlog each batch that carried a
 * rejection held the storage thread (SQLite) or all of Redis, and every write behind it, for seconds.
 * The dependency index makes it a walk over the dependents. Measured here on both backends: the settle
 * of a batch of 200 with one rejection against the same settle with none, on a small and a large
 * backlog of pending transactions (half of them depending on the one before), in the same run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteBuffer } from '../src/edge/buffer/sqlite.js';
import { RedisBuffer } from '../src/edge/buffer/redis.js';
import type { NewTransaction, Outcome, TransactionBuffer } from '../src/edge/buffer/buffer.js';
import { uuidv7 } from '../src/lib/uuid.js';
import { machine, recordFigures, writeSection } from './support.js';

const LARGE = Number(process.env.BENCH_SETTLE_BACKLOG ?? 200_000);
const SMALL = Math.max(1000, Math.round(LARGE / 10));
const BATCH = 200;
const REPEATS = 5;

const steps = [{ step_id: 'obs', op: 'create', table: 'executed_obs_unit', id: '00000000-0000-7000-8000-000000000000', data: { obs_unit_id: 1 } }];

/** Appends `n` pending transactions; every second one depends on the one before it. */
async function fill(b: TransactionBuffer, n: number): Promise<void> {
  let seq = (await b.stats()).last_seq;
  for (let done = 0; done < n; done += 5000) {
    const chunk: NewTransaction[] = [];
    for (let i = 0; i < Math.min(5000, n - done); i++) {
      seq += 1;
      chunk.push({
        transaction_id: uuidv7(), site: 'bench', created_at: new Date().toISOString(), endpoint: 'POST /executed_obs_units/start',
        steps: steps as NewTransaction['steps'], depends_on: seq % 2 === 0 ? [seq - 1] : [],
      });
    }
    await b.append(chunk);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Median ms of settling a claimed batch, with one rejection (its first) or none. */
async function settleMs(b: TransactionBuffer, reject: boolean): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    const batch = await b.claim(BATCH, 1 << 30);
    const outcomes: Outcome[] = batch.map((t, k) =>
      reject && k === 0
        ? { seq: t.seq, outcome: 'rejected', error: { code: 'constraint', message: 'bench', at: new Date().toISOString() } }
        : { seq: t.seq, outcome: 'applied' });
    const t0 = performance.now();
    await b.settle(outcomes);
    times.push(performance.now() - t0);
  }
  return Math.round(median(times) * 10) / 10;
}

interface Row { backend: string; backlog: number; none: number; one: number }

async function measure(backend: string, open: () => Promise<TransactionBuffer>): Promise<Row[]> {
  const rows: Row[] = [];
  for (const backlog of [SMALL, LARGE]) {
    const b = await open();
    try {
      await fill(b, backlog);
      rows.push({ backend, backlog, none: await settleMs(b, false), one: await settleMs(b, true) });
      if (backlog === SMALL) {
        // The ledger and the dependency index still hold (on the small backlog: a Redis verify is one script).
        const v = await b.verify();
        if (!v.ok) throw new Error(`${backend}: verify after the bench: ${v.problems.join('; ')}`);
      }
    } finally {
      await b.close();
    }
    console.log(JSON.stringify(rows.at(-1)));
  }
  return rows;
}

const dir = mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), 'opsdb-bench-settle-'));
let n = 0;
try {
  const rows = [
    ...(await measure('SQLite', async () => new SqliteBuffer(join(dir, `buffer-${++n}.db`)))),
    ...(process.env.OPSDB_TEST_REDIS_URL
      ? await measure('Redis', () => RedisBuffer.open({ url: process.env.OPSDB_TEST_REDIS_URL!, keyPrefix: `bench:settle:${Date.now()}:${++n}:` }))
      : []),
  ];
  const large = (backend: string) => rows.find((r) => r.backend === backend && r.backlog === LARGE);
  const small = (backend: string) => rows.find((r) => r.backend === backend && r.backlog === SMALL);
  const md = `## One rejection in a long backlog (\`npm run bench:settle\`)

Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}. A buffer holds a backlog of pending
create-observation transactions (every second one depends on the one before); batches of ${BATCH} are claimed and
settled, all applied or with one rejection (which must block what waits on it), ${REPEATS} times each, median. Both
backlog sizes and both settles in the same run, on a real SQLite file (WAL, \`synchronous=FULL\`) and a real Redis
(\`appendfsync always\`).

| backend | backlog | settle, all applied | settle, one rejected | one rejected / all applied |
|---|---:|---:|---:|---:|
${rows.map((r) => `| ${r.backend} | ${r.backlog} | ${r.none} ms | ${r.one} ms | ${Math.round((r.one / r.none) * 100) / 100} |`).join('\n')}

A rejection costs about what any settle costs, whatever the backlog: its dependents are found through the
dependency index (\`docs/edge.md\`), not by reading the backlog after it.
`;
  console.log(md);
  writeSection('settle', md);
  recordFigures('settle', ['SQLite', 'Redis'].flatMap((backend) => {
    const l = large(backend);
    const s = small(backend);
    if (!l || !s) return [];
    return [{
      what: `${backend}: settle of ${BATCH} with one rejection, ${LARGE} pending behind it`, value: l.one, unit: 'ms',
      baseline_what: `the same with ${SMALL} pending`, baseline: s.one, target: 'ratio ≈ 1 (no cost per transaction of backlog)',
    }];
  }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
