// Central's PostgreSQL restored from a backup taken before the edge's last syncs. The edge had synced
// and compacted those transactions, so central lost observations the edge had acknowledged, for good:
// the edge said so in its log, and nothing more. It now keeps each synced transaction whole for
// SYNCED_RETENTION_HOURS after compaction, and once it sees that central went back in time it sends
// them again, in seq order, before anything newer: central applies what it lost and answers
// `duplicate` for the rest. A real central process on a real PostgreSQL, dumped with pg_dump and
// restored with pg_restore; a real edge process on each backend.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import {
  centralDatabase, createObservation, killAllProcesses, spawnCentral, startScenario, waitFor, type Scenario,
} from '../support/processes.js';
import { pgAdminUrl, pgBinDir, redisUrl, tempDir } from '../support/services.js';
import { feedBlocker } from '../support/feed-blocker.js';

const run = promisify(execFile);

interface ReplayStats {
  synced_awaiting_replica: number;
  applied_total: number;
  accepted_total: number;
  pending_transactions: number;
  central_replay: { applied: number; duplicate: number; rejected: number; through_seq: number } | null;
}
const stats = async (s: Scenario) => (await (await fetch(`${s.edge.url}/buffer-stats`)).json()) as ReplayStats;

/** Synced, and compacted: the buffer holds none of it, only receipts. */
const untilCompacted = (s: Scenario, applied: number) =>
  waitFor(async () => {
    const st = await stats(s);
    return st.applied_total === applied && st.synced_awaiting_replica === 0 && st.pending_transactions === 0 ? st : null;
  }, 30_000, `${applied} applied and compacted`);

async function restore(s: Scenario, dbUrl: string, dbName: string, dump: string): Promise<void> {
  await s.proxy.setMode('refuse');
  await s.central.kill('SIGKILL');
  const admin = new pg.Client({ connectionString: pgAdminUrl() });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE "${dbName}" WITH (FORCE)`);
    await admin.query(`CREATE DATABASE "${dbName}"`);
  } finally {
    await admin.end();
  }
  await run(join(pgBinDir(), 'pg_restore'), ['--no-owner', '-d', dbUrl, dump]);
  s.central = await spawnCentral({ DATABASE_URL: dbUrl });
  s.proxy.setTarget(s.central.port);
  await s.proxy.setMode('pass');
}

for (const backend of ['sqlite', 'redis'] as const) {
  describe(`central restored from an older backup (${backend} buffer)`, () => {
    after(() => killAllProcesses());

    it('the edge sends again what central lost, exactly once and in order, before anything newer', async () => {
      const db = await centralDatabase(`restore-${backend}`);
      const edgeEnv: Record<string, string> = backend === 'redis' ? { BUFFER_BACKEND: 'redis', REDIS_URL: redisUrl() } : {};
      const s = await startScenario(db, `restore-${backend}`, { edgeEnv });
      const dir = await tempDir('opsdb-restore-');
      try {
        const admin = s.admin();
        for (let i = 0; i < 4; i++) assert.equal((await createObservation(admin, s.acked)).status, 201);
        await untilCompacted(s, 4);
        const dump = join(dir.path, 'central.dump');
        await run(join(pgBinDir(), 'pg_dump'), ['-Fc', '-f', dump, db.url]);

        // Synced after the backup, and compacted at the edge: lost with the restore, but for the copies kept.
        for (let i = 0; i < 5; i++) assert.equal((await createObservation(admin, s.acked)).status, 201);
        await untilCompacted(s, 9);
        await restore(s, db.url, db.database.name, dump);
        assert.equal(await s.centralApplied(), 4, 'the restored central has only what the backup had');

        // Written after the restore: sent after the replay.
        for (let i = 0; i < 3; i++) assert.equal((await createObservation(admin, s.acked)).status, 201);
        const seen = await waitFor(async () => ((await stats(s)).central_replay ? true : null), 30_000, 'the replay to begin');
        assert.ok(seen);
        const done = await waitFor(async () => {
          const st = await stats(s);
          return st.central_replay === null && st.pending_transactions === 0 && st.applied_total === 12 ? st : null;
        }, 30_000, 'the replay to end and the new writes to sync');
        assert.equal(done.accepted_total, 12);

        await s.verify(); // every acknowledged transaction at central exactly once, readable at the edge
        const { rows } = await db.pool.query<{ seq: string }>(
          'SELECT seq FROM applied_transaction WHERE site = $1 ORDER BY applied_at, seq', [s.site]);
        assert.deepEqual(rows.map((r) => Number(r.seq)), Array.from({ length: 12 }, (_, i) => i + 1), 'applied in seq order');
        const summary = s.edge.lines.find((l) => l.includes('sent again to central what it may have lost'));
        assert.ok(summary, 'the edge logs what the replay did');
        assert.match(summary, /5 applied again \(central had lost them\), 4 it still had, 0 refused/);
        assert.ok(s.edge.lines.some((l) => l.includes('"level":50') && l.includes('went back in time')), 'and that central went back, at level error');
      } finally {
        await s.stop();
        await db.drop();
        await dir.cleanup();
      }
    });
  });
}

for (const backend of ['sqlite', 'redis'] as const) describe(`central restored from a backup that lacks a row the edge's transactions need (${backend} buffer)`, () => {
  after(() => killAllProcesses());

  // Found in review: central refused such a transaction when the replay sent it again, and the edge only
  // logged it; it kept the transaction as synced, so an acknowledged observation was gone from central with
  // nothing to see in /buffer-stats and no way to send it again.
  it('the refused transactions are failed again at the edge, and sent once central has the row again', async () => {
    const db = await centralDatabase(`restore-refused-${backend}`);
    const edgeEnv: Record<string, string> = backend === 'redis' ? { BUFFER_BACKEND: 'redis', REDIS_URL: redisUrl() } : {};
    const s = await startScenario(db, `restore-refused-${backend}`, { edgeEnv });
    const dir = await tempDir('opsdb-restore-refused-');
    try {
      const admin = s.admin();
      assert.equal((await createObservation(admin, s.acked)).status, 201);
      await untilCompacted(s, 1);
      const dump = join(dir.path, 'central.dump');
      await run(join(pgBinDir(), 'pg_dump'), ['-Fc', '-f', dump, db.url]);

      // An observation unit made at central after the backup, and two observations of it made at the edge.
      const { rows: [unit] } = await db.pool.query<{ id: number; observing_program_id: number }>(
        `INSERT INTO obs_unit (name, observing_program_id) SELECT 'after-the-backup', id FROM observing_program ORDER BY id LIMIT 1
         RETURNING id, observing_program_id`);
      const write = () => createObservation(admin, s.acked, unit!.id);
      await waitFor(async () => ((await write()).status === 201 ? true : null), 30_000, 'the edge to know the new unit (from the feed)');
      assert.equal((await write()).status, 201);
      assert.equal((await createObservation(admin, s.acked)).status, 201);
      await untilCompacted(s, 4);
      await restore(s, db.url, db.database.name, dump);

      const after = await waitFor(async () => {
        const st = await stats(s) as ReplayStats & { failed_transactions: number };
        return st.central_replay === null && st.failed_transactions === 2 ? st : null;
      }, 30_000, 'the replay to end with the two refused');
      assert.equal(after.applied_total, 2, 'the two refused are failed, not applied');
      assert.equal(await s.centralApplied(), 2);
      const failed = (await admin.get('/api/buffer/failed')).body as { transaction_id: string }[];
      assert.deepEqual(failed.map((t) => t.transaction_id).sort(), s.acked.transactions.slice(1, 3).sort(), 'the two, in the dead-letter queue');
      const obs = await admin.get(`/executed_obs_units/${s.acked.observations[1]}`);
      assert.equal(obs.body.sync_status, 'failed', 'and their rows say so');

      // The operator gives central the unit back (same id), and retries: every acknowledged write is at central once.
      await db.pool.query('INSERT INTO obs_unit (id, name, observing_program_id) VALUES ($1, $2, $3)',
        [unit!.id, 'after-the-backup', unit!.observing_program_id]);
      const retried = await admin.post('/api/buffer/retry-failed', {});
      assert.equal(retried.status, 200, retried.text);
      assert.equal(retried.body.count, 2);
      await s.verify();
      assert.ok(s.edge.lines.some((l) => l.includes('"level":50') && l.includes('it is failed again, in the dead-letter queue')),
        'each refusal is logged at level error');
    } finally {
      await s.stop();
      await db.drop();
      await dir.cleanup();
    }
  });
});

describe('central restored to a point between the edge\'s replica and its last batches', () => {
  after(() => killAllProcesses());

  // Pulls held (a drain pulls rarely; here the feed is blocked), pushes going through: the replica's
  // position is still in the restored central's history, and only the last batch's position tells.
  it('is found at the next batch all the same, and what central lost is sent again first', async () => {
    const db = await centralDatabase('restore-gap');
    const s = await startScenario(db, 'restore-gap');
    const blocker = await feedBlocker(s.proxy.url);
    const dir = await tempDir('opsdb-restore-gap-');
    try {
      s.env.CENTRAL_URL = blocker.url;
      await s.restartEdge();
      const admin = s.admin();
      for (let i = 0; i < 4; i++) assert.equal((await createObservation(admin, s.acked)).status, 201);
      await untilCompacted(s, 4);
      const dump = join(dir.path, 'central.dump');
      await run(join(pgBinDir(), 'pg_dump'), ['-Fc', '-f', dump, db.url]);

      blocker.blocked = true;
      for (let i = 0; i < 5; i++) assert.equal((await createObservation(admin, s.acked)).status, 201);
      await waitFor(async () => ((await stats(s)).applied_total === 9 ? true : null), 30_000, 'the five applied at central (not compacted: no pull)');
      await restore(s, db.url, db.database.name, dump);
      for (let i = 0; i < 3; i++) assert.equal((await createObservation(admin, s.acked)).status, 201);
      await waitFor(async () => {
        const st = await stats(s);
        return st.central_replay === null && st.applied_total === 12 && st.pending_transactions === 0 ? st : null;
      }, 30_000, 'the replay to end and the new writes to sync, with the feed still held');
      blocker.blocked = false;

      await s.verify();
      const { rows } = await db.pool.query<{ seq: string }>('SELECT seq FROM applied_transaction WHERE site = $1 ORDER BY applied_at, seq', [s.site]);
      assert.deepEqual(rows.map((r) => Number(r.seq)), Array.from({ length: 12 }, (_, i) => i + 1), 'applied in seq order');
      assert.match(s.edge.lines.find((l) => l.includes('sent again to central what it may have lost')) ?? '', /5 applied again/);
    } finally {
      await blocker.close();
      await s.stop();
      await db.drop();
      await dir.cleanup();
    }
  });
});
