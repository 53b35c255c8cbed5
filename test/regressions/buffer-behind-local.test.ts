// Found in review: a buffer rolled back behind the local store went unnoticed. The local store records the
// highest seq it applied; a buffer.db restored from an older backup next to a newer local.db (or a Redis
// that came back without its data) counted seqs again from its own last one, so new writes got seqs the
// local store had already applied and were skipped there: acknowledged, then 404 when read, and a finish of
// them refused. The transactions the buffer lost vanished without a word, and their records read `synced`.
// Now the edge notices at start: it raises the buffer's seq counter past the local store's, reports the
// loss in the log, /buffer-stats and /health until `opsdb buffer accept-loss`, and shows the lost records
// as `failed`; a Redis that comes back empty while the edge runs is found by the next append. A real SQLite
// buffer file restored from a copy, and a real redis-server restarted empty.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startTestEdge, edgeDataDir, type TestEdge } from '../support/edge.js';
import { startRedisServer, tempDir } from '../support/services.js';
import { runCli } from '../support/cli.js';
import { until } from '../support/daemon.js';
import { Redis } from 'ioredis';

async function withRedis<T>(url: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

const edges: TestEdge[] = [];
after(async () => {
  for (const e of edges) await e.stop().catch(() => {});
});

async function start(label: string, dataDir: string, overrides: Record<string, string> = {}): Promise<TestEdge> {
  const e = await startTestEdge(label, { dataDir, seed: false, overrides });
  edges.push(e);
  return e;
}

async function stop(e: TestEdge): Promise<void> {
  await e.stop();
  edges.splice(edges.indexOf(e), 1);
}

const startObs = async (e: TestEdge, unit: number) => {
  const r = await e.admin.post('/executed_obs_units/start', { body: { obs_unit_id: unit } });
  assert.equal(r.status, 201, r.text);
  return r.body as { id: string; transaction_id: string };
};

describe('a buffer behind the local store', { timeout: 120_000 }, () => {
  it('SQLite buffer restored from an older copy: the loss is reported until accepted, and new writes are readable', async () => {
    const dataDir = edgeDataDir('behind-sqlite');
    let e = await startTestEdge('behind-sqlite', { dataDir });
    edges.push(e);
    const kept = [await startObs(e, 1), await startObs(e, 2)];
    await stop(e);
    // A copy of the stopped buffer: its file and its WAL.
    const files = ['buffer.db', 'buffer.db-wal'].filter((f) => existsSync(join(dataDir, f)));
    for (const f of files) copyFileSync(join(dataDir, f), join(dataDir, `${f}.bak`));

    e = await start('behind-sqlite', dataDir);
    const lost = [await startObs(e, 3), await startObs(e, 4), await startObs(e, 1)];
    await stop(e);
    // The operator restores the older copy of the buffer next to the newer local store.
    for (const f of ['buffer.db-wal', 'buffer.db-shm']) rmSync(join(dataDir, f), { force: true });
    for (const f of files) copyFileSync(join(dataDir, `${f}.bak`), join(dataDir, f));
    const env = { SITE_TYPE: 'secondary', SITE_NAME: 'observatory', DATA_DIR: dataDir };
    const before = await runCli(['buffer', 'verify'], env);
    assert.equal(before.code, 1, 'verify finds it while the daemon is stopped');
    assert.match(before.stdout, /PROBLEM: the buffer ends at seq 2 but the local store has applied transactions up to seq 5: 3 transactions \(seq 3–5\)/);

    e = await start('behind-sqlite', dataDir);
    const stats = (await e.anonymous.get('/buffer-stats')).body;
    assert.equal(stats.lost_transactions, 3);
    assert.equal(stats.accepted_total, 2, 'the ledger is the buffer\'s own, and still adds up');
    assert.equal((await e.anonymous.get('/health')).body.status, 'degraded');
    for (const o of kept) assert.equal((await e.admin.get(`/executed_obs_units/${o.id}`)).body.sync_status, 'pending');
    for (const o of lost) {
      const r = await e.admin.get(`/executed_obs_units/${o.id}`);
      assert.equal(r.body.sync_status, 'failed', 'a record whose transaction the buffer lost does not read synced');
      assert.equal((await e.admin.get(`/api/transactions/${o.transaction_id}`)).status, 404);
    }
    const audit = (await e.admin.get('/api/buffer/audit')).body as { action: string; seq: number; reason: string }[];
    assert.ok(audit.some((a) => a.action === 'seq_gap' && a.seq === 5 && /seq 3–5/.test(a.reason)), JSON.stringify(audit));

    // New writes go on after the local store's seqs: readable at once, and their finish accepted.
    const fresh = await startObs(e, 1);
    assert.equal((await e.admin.get(`/api/transactions/${fresh.transaction_id}`)).body.seq, 6);
    const read = await e.admin.get(`/executed_obs_units/${fresh.id}`);
    assert.equal(read.status, 200, read.text);
    assert.equal(read.body.sync_status, 'pending');
    assert.equal((await e.admin.put(`/executed_obs_units/${fresh.id}/finish`, { body: { status: 'success' } })).status, 202);

    const verify = await runCli(['buffer', 'verify'], env);
    assert.equal(verify.code, 1);
    assert.match(verify.stdout, /PROBLEM: .*seq 3–5.*opsdb buffer accept-loss/);
    const accept = await runCli(['buffer', 'accept-loss'], env);
    assert.equal(accept.code, 0, accept.stderr);
    assert.match(accept.stdout, /accepted the loss of seq 3–5/);
    assert.equal((await runCli(['buffer', 'verify'], env)).code, 0);
    assert.equal((await e.anonymous.get('/buffer-stats')).body.lost_transactions, 0);
    assert.equal((await e.anonymous.get('/health')).body.status, 'healthy');
    assert.equal((await e.admin.get(`/executed_obs_units/${lost[0]!.id}`)).body.sync_status, 'failed', 'still not synced');
    assert.match((await runCli(['buffer', 'accept-loss'], env)).stdout, /nothing to accept/);

    // A restart finds nothing new.
    await stop(e);
    e = await start('behind-sqlite', dataDir);
    assert.equal((await e.anonymous.get('/buffer-stats')).body.lost_transactions, 0);
    await startObs(e, 2);
    assert.equal((await e.anonymous.get('/buffer-stats')).body.accepted_total, 5, 'the two kept, the new start and finish, and this one');
  });

  it('Redis that comes back without its data while the edge runs: noticed at the next write, which is kept and readable', async () => {
    const dir = await tempDir('behind-redis-live');
    let redis = await startRedisServer(join(dir.path, 'redis-a'));
    try {
      const e = await startTestEdge('behind-redis-live', { overrides: { BUFFER_BACKEND: 'redis', REDIS_URL: redis.url } });
      edges.push(e);
      const gone = [await startObs(e, 1), await startObs(e, 2)];
      await redis.kill();
      redis = await startRedisServer(join(dir.path, 'redis-b'), { port: redis.port });
      // The edge reconnects by itself; the first write after that finds the counter behind.
      let fresh: { status: number; body: { id: string; transaction_id: string } } | null = null;
      let last = '';
      for (const end = Date.now() + 15_000; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) {
        const r = await e.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 3 } });
        if (r.status === 201) {
          fresh = r;
          break;
        }
        last = `${r.status} ${r.text}`;
      }
      assert.ok(fresh, `a write succeeds once Redis is back (last answer: ${last})`);
      assert.equal((await e.admin.get(`/api/transactions/${fresh.body.transaction_id}`)).body.seq, 3, 'after the seqs given out before');
      assert.equal((await e.admin.get(`/executed_obs_units/${fresh.body.id}`)).status, 200, 'readable at once');
      assert.equal((await e.anonymous.get('/buffer-stats')).body.lost_transactions, 2);
      assert.equal((await e.anonymous.get('/health')).body.status, 'degraded');
      for (const o of gone) assert.equal((await e.admin.get(`/executed_obs_units/${o.id}`)).body.sync_status, 'failed');
      await stop(e);
    } finally {
      await redis.stop().catch(() => {});
      await dir.cleanup();
    }
  });

  it('Redis emptied while the edge is idle: noticed within seconds, with no write needed', async () => {
    const dir = await tempDir('behind-redis-idle');
    const redis = await startRedisServer(join(dir.path, 'redis'));
    try {
      const e = await startTestEdge('behind-redis-idle', { overrides: { BUFFER_BACKEND: 'redis', REDIS_URL: redis.url } });
      edges.push(e);
      const gone = [await startObs(e, 1), await startObs(e, 2)];
      await withRedis(redis.url, (r) => r.flushall());
      await until('the loss reported', async () => (await e.anonymous.get('/buffer-stats')).body.lost_transactions === 2, 10_000);
      assert.equal((await e.anonymous.get('/health')).body.status, 'degraded');
      for (const o of gone) assert.equal((await e.admin.get(`/executed_obs_units/${o.id}`)).body.sync_status, 'failed', 'not "synced"');
      await stop(e);
    } finally {
      await redis.stop().catch(() => {});
      await dir.cleanup();
    }
  });

  it('Redis that came back without its data: the same', async () => {
    const dir = await tempDir('behind-redis');
    const dataDir = edgeDataDir('behind-redis');
    let redis = await startRedisServer(join(dir.path, 'redis-a'));
    const overrides = { BUFFER_BACKEND: 'redis', REDIS_URL: redis.url };
    try {
      let e = await startTestEdge('behind-redis', { dataDir, overrides });
      edges.push(e);
      const gone = [await startObs(e, 1), await startObs(e, 2)];
      await stop(e);
      await redis.kill();
      // A new, empty Redis on the same address: its data directory is not the old one.
      redis = await startRedisServer(join(dir.path, 'redis-b'), { port: redis.port });

      e = await start('behind-redis', dataDir, overrides);
      assert.equal((await e.anonymous.get('/buffer-stats')).body.lost_transactions, 2);
      assert.equal((await e.anonymous.get('/health')).body.status, 'degraded');
      for (const o of gone) assert.equal((await e.admin.get(`/executed_obs_units/${o.id}`)).body.sync_status, 'failed');
      const fresh = await startObs(e, 3);
      assert.equal((await e.admin.get(`/api/transactions/${fresh.transaction_id}`)).body.seq, 3);
      assert.equal((await e.admin.get(`/executed_obs_units/${fresh.id}`)).status, 200);
      await stop(e);
    } finally {
      await redis.stop().catch(() => {});
      await dir.cleanup();
    }
  });
});
