// Found in review: a buffer found behind the local store (a Redis that came back empty, a buffer.db
// restored from an older copy) had every seq it lacked counted as lost, though most of them had
// reached central and been compacted out of the buffer long before: the normal state of an edge with
// a working link. Their records, which central holds, flipped from `synced` to `failed`, /health went
// degraded, and the operator was told to restore a backup or accept a loss, and might well have
// entered the "lost" observations again by hand: duplicates at central. The local store now records
// the seqs the sync engine compacts as synced, and only the others count as lost. A real central on
// PostgreSQL, a real edge, a real redis-server restarted empty.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startTestCentral } from '../support/central.js';
import { startTestEdge, edgeDataDir, type TestEdge } from '../support/edge.js';
import { startRedisServer, tempDir } from '../support/services.js';
import { until } from '../support/daemon.js';

const stats = async (e: TestEdge) => (await e.anonymous.get('/buffer-stats')).body;

describe('a buffer behind the local store, after syncing', () => {
  it('counts as lost only what had not reached central', { timeout: 120_000 }, async () => {
    const central = await startTestCentral('behind-synced');
    const token = (await central.admin.post('/api/sites/', { body: { name: 'behindsynced' } })).body.token;
    const dir = await tempDir('behind-synced');
    let redis = await startRedisServer(join(dir.path, 'redis-a'));
    const dataDir = edgeDataDir('behind-synced');
    const base = { SITE_NAME: 'behindsynced', BUFFER_BACKEND: 'redis' as const, SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 200 };
    const online = { ...base, REDIS_URL: redis.url, CENTRAL_URL: central.url, SITE_TOKEN: token };
    let edge: TestEdge | null = await startTestEdge('behind-synced', { dataDir, overrides: online });
    try {
      // Two observations reach central and leave the buffer.
      const synced = [];
      for (const unit of [1, 2]) synced.push((await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: unit } })).body);
      await until('both synced and compacted', async () => {
        const s = await stats(edge!);
        return s.applied_total === 2 && s.synced_awaiting_replica === 0;
      }, 20_000);
      await edge.stop();

      // One more while central is out of reach: it is only in the buffer.
      edge = await startTestEdge('behind-synced', { dataDir, seed: false, overrides: { ...base, REDIS_URL: redis.url } });
      const unsent = (await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 3 } })).body;
      await edge.stop();
      edge = null;

      // Redis comes back empty.
      await redis.kill();
      redis = await startRedisServer(join(dir.path, 'redis-b'), { port: redis.port });
      edge = await startTestEdge('behind-synced', { dataDir, seed: false, overrides: { ...base, REDIS_URL: redis.url } });

      const s = await stats(edge);
      assert.equal(s.lost_transactions, 1, 'only the one that never reached central');
      for (const o of synced) {
        assert.equal((await edge.admin.get(`/executed_obs_units/${o.id}`)).body.sync_status, 'synced', 'central has it');
      }
      assert.equal((await edge.admin.get(`/executed_obs_units/${unsent.id}`)).body.sync_status, 'failed');
      const audit = (await edge.admin.get('/api/buffer/audit')).body as { action: string; reason: string }[];
      const gap = audit.find((a) => a.action === 'seq_gap');
      assert.ok(gap, JSON.stringify(audit));
      assert.match(gap.reason, /1 transaction \(seq 3\) acknowledged at this edge is no longer in the buffer .*; the other 2 in between had reached central/);
      // New writes go on after every seq the local store has seen.
      const fresh = (await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 4 } })).body;
      assert.equal((await edge.admin.get(`/api/transactions/${fresh.transaction_id}`)).body.seq, 4);
    } finally {
      await edge?.stop().catch(() => {});
      await redis.stop().catch(() => {});
      await dir.cleanup();
      await central.stop();
    }
  });

  it('reports nothing lost when everything it lacks had reached central', { timeout: 120_000 }, async () => {
    const central = await startTestCentral('behind-all-synced');
    const token = (await central.admin.post('/api/sites/', { body: { name: 'allsynced' } })).body.token;
    const dir = await tempDir('behind-all-synced');
    let redis = await startRedisServer(join(dir.path, 'redis-a'));
    const dataDir = edgeDataDir('behind-all-synced');
    const base = { SITE_NAME: 'allsynced', BUFFER_BACKEND: 'redis' as const, SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 200, CENTRAL_URL: central.url, SITE_TOKEN: token };
    let edge: TestEdge | null = await startTestEdge('behind-all-synced', { dataDir, overrides: { ...base, REDIS_URL: redis.url } });
    try {
      const o = (await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).body;
      await until('synced and compacted', async () => {
        const s = await stats(edge!);
        return s.applied_total === 1 && s.synced_awaiting_replica === 0;
      }, 20_000);
      await edge.stop();
      edge = null;
      await redis.kill();
      redis = await startRedisServer(join(dir.path, 'redis-b'), { port: redis.port });
      edge = await startTestEdge('behind-all-synced', { dataDir, seed: false, overrides: { ...base, REDIS_URL: redis.url } });
      assert.equal((await stats(edge)).lost_transactions, 0);
      assert.equal((await edge.anonymous.get('/health')).body.status, 'healthy');
      assert.equal((await edge.admin.get(`/executed_obs_units/${o.id}`)).body.sync_status, 'synced');
      const fresh = (await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 2 } })).body;
      assert.equal((await edge.admin.get(`/api/transactions/${fresh.transaction_id}`)).body.seq, 2, 'seq 1 is not given out again');
      await until('the new one at central', async () => (await stats(edge!)).applied_total === 1, 20_000);
    } finally {
      await edge?.stop().catch(() => {});
      await redis.stop().catch(() => {});
      await dir.cleanup();
      await central.stop();
    }
  });
});
