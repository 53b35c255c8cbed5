// Found in review: with Redis at maxmemory (noeviction) every write got 507, rightly, but /health said
// healthy, /buffer-stats showed the buffer far from its cap, and the log had one error line per group
// (a flood: thousands while it lasted). /health is now degraded and names it until a write is stored
// again; the failure is logged once a minute while it lasts, and its end once. A real edge process and
// a real redis-server.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedisServer, tempDir } from '../support/services.js';
import { edgeDataDir, localClient, spawnEdge } from '../support/edge.js';
import { client } from '../support/http.js';
import { until } from '../support/daemon.js';

describe('Redis out of memory', () => {
  it('is 507 to writers, degraded in /health, and logged once', { timeout: 120_000 }, async () => {
    const dir = await tempDir('redis-oom-edge');
    const redis = await startRedisServer(join(dir.path, 'redis'));
    const dataDir = edgeDataDir('redis-oom-edge');
    const token = (await localClient(dataDir, 'http://unused', ['observer'], 'w')).token!;
    const edge = await spawnEdge({ DATA_DIR: dataDir, SITE_NAME: 'observatory', BUFFER_BACKEND: 'redis', REDIS_URL: redis.url });
    const admin = new Redis(redis.url);
    try {
      const api = client(edge.url, token);
      assert.equal((await api.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).status, 201);
      // Below what Redis already uses: with noeviction it refuses every write (how much a write still fits
      // near the limit depends on its size and Redis's own buffers, so the test does not fill it up).
      await admin.config('SET', 'maxmemory', '1');
      const last = await api.post('/api/demo/create-observation', {
        body: { obs_data: { obs_unit_id: 1, start_time: '2026-01-01T00:00:00Z', package_name: 'p' }, raw_files: [] },
      });
      assert.equal(last.status, 507, JSON.stringify(last.body));
      assert.equal(last.body.error.details.backend, 'redis');
      for (let i = 0; i < 5; i++) assert.equal((await api.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).status, 507);
      const h = (await client(edge.url).get('/health')).body;
      assert.equal(h.status, 'degraded');
      assert.match(h.redis, /^connected \(out of memory: .*OOM/);
      const failed = edge.lines.filter((l) => l.includes('"buffer append failed"'));
      assert.equal(failed.length, 1, 'one line, not one per refused group');

      await admin.config('SET', 'maxmemory', '0');
      assert.equal((await api.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).status, 201);
      assert.equal((await client(edge.url).get('/health')).body.status, 'healthy');
      await until('the end logged', async () => edge.lines.some((l) => l.includes('"buffer appends work again"')), 5_000);
    } finally {
      admin.disconnect();
      await edge.kill('SIGTERM');
      await redis.stop().catch(() => {});
      await dir.cleanup();
    }
  });
});
