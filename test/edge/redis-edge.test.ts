// The edge on the Redis buffer when Redis goes away: clear 503s and an
// unhealthy /health instead of 500s, and back to work when Redis returns.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startRedisServer, tempDir } from '../support/services.js';
import { startTestEdge } from '../support/edge.js';

describe('edge on a Redis buffer that goes away', () => {
  it('answers 503 and reports unhealthy while Redis is down, and works again when it is back', async () => {
    const dir = await tempDir('redis-edge');
    const redis = await startRedisServer(join(dir.path, 'redis'));
    const edge = await startTestEdge('redis-edge', { overrides: { BUFFER_BACKEND: 'redis', REDIS_URL: redis.url } });
    let restarted: Awaited<ReturnType<typeof startRedisServer>> | null = null;
    try {
      const observer = await edge.as(['observer']);
      const first = await observer.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
      assert.equal(first.status, 201);
      assert.equal((await edge.anonymous.get('/health')).body.redis, 'connected');

      await redis.kill();
      const write = await observer.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
      assert.equal(write.status, 503, write.text);
      assert.equal(write.body.error.code, 'service_unavailable');
      const stats = await edge.anonymous.get('/buffer-stats');
      assert.equal(stats.status, 503, stats.text);
      const read = await observer.get(`/executed_obs_units/${first.body.id}`);
      assert.equal(read.status, 503, read.text);
      const health = await edge.anonymous.get('/health');
      assert.equal(health.status, 503);
      assert.deepEqual(health.body.transaction_buffer, { size: null, failed: null }, 'unknown, not a reassuring 0');
      assert.equal(health.body.redis, 'unreachable');
      assert.equal(health.body.status, 'unhealthy');
      assert.equal(health.body.redis, 'unreachable');

      restarted = await startRedisServer(join(dir.path, 'redis'), { port: redis.port });
      const end = Date.now() + 15_000;
      let again = await observer.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
      while (again.status !== 201 && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 100));
        again = await observer.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
      }
      assert.equal(again.status, 201, again.text);
      const s = (await edge.anonymous.get('/buffer-stats')).body;
      assert.ok(s.accepted_total >= 2, 'the write from before the outage is still there');
      assert.equal((await observer.get(`/executed_obs_units/${first.body.id}`)).status, 200);
    } finally {
      await edge.stop().catch(() => {});
      await restarted?.stop();
      await redis.stop().catch(() => {});
      await dir.cleanup();
    }
  });
});
