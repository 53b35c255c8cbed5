// Found in review: the edge checked Redis's persistence settings only at start. After
// `CONFIG SET appendfsync everysec` on the running Redis (or a Redis restarted with another
// redis.conf), every later write was still answered 201 "buffered", though a power cut could now lose
// it: the one promise of an acknowledgement, broken without a word. Now the edge looks again at most
// a second before each append and on every reconnection: while Redis may lose writes it refuses them
// with a 503 that names the setting and the fix, stores nothing, reports it in /health, and logs it
// once; it takes writes again by itself once Redis is fixed. A real edge process, a real redis-server.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedisServer, tempDir } from '../support/services.js';
import { edgeDataDir, localClient, spawnEdge } from '../support/edge.js';
import { client } from '../support/http.js';
import { until } from '../support/daemon.js';
import { runCli } from '../support/cli.js';

describe('edge on a Redis whose durability is weakened while it runs', () => {
  it('refuses writes with a 503 naming the setting, stores nothing, says so in /health, and recovers', { timeout: 90_000 }, async () => {
    const dir = await tempDir('redis-durability-runtime');
    const redis = await startRedisServer(join(dir.path, 'redis'));
    const dataDir = edgeDataDir('redis-durability');
    const token = (await localClient(dataDir, 'http://unused', ['observer'], 'w')).token!;
    const edge = await spawnEdge({ DATA_DIR: dataDir, SITE_NAME: 'observatory', BUFFER_BACKEND: 'redis', REDIS_URL: redis.url });
    const admin = new Redis(redis.url);
    try {
      const api = client(edge.url, token);
      const start = (n: number) => api.post('/executed_obs_units/start', { body: { obs_unit_id: n } });
      assert.equal((await start(1)).status, 201);
      assert.equal((await client(edge.url).get('/health')).body.redis, 'connected');

      await admin.config('SET', 'appendfsync', 'everysec');
      // Nobody writes: /health alone shows it, the settings being read again at most a second apart.
      const health = await until('/health to report the refusal', async () => {
        const h = (await client(edge.url).get('/health')).body;
        return /refusing writes/.test(h.redis) ? h : null;
      }, 10_000);
      assert.equal(health.status, 'degraded');
      assert.match(health.redis, /^connected \(refusing writes: .*appendfsync is everysec/);

      const refused = await start(2);
      assert.equal(refused.status, 503, refused.text);
      assert.equal(refused.body.error.code, 'service_unavailable', refused.text);
      assert.match(refused.body.error.message, /^Nothing was stored: /);
      assert.match(refused.body.error.message, /appendfsync is everysec/);
      assert.match(refused.body.error.message, /CONFIG SET appendfsync always/);

      const stats = (await client(edge.url).get('/buffer-stats')).body;
      assert.equal(stats.accepted_total, 1, 'the refused write is not in the ledger');
      const more = await start(3);
      assert.equal(more.status, 503, more.text);
      assert.equal((await client(edge.url).get('/buffer-stats')).body.accepted_total, 1);
      const errors = edge.lines.filter((l) => l.includes('Redis no longer fsyncs every write'));
      assert.equal(errors.length, 1, 'logged once, not at every refused write');
      assert.equal(JSON.parse(errors[0]!).level, 50);

      // The operator can still look at the buffer with the CLI, and verify names the problem.
      const cliEnv = { SITE_TYPE: 'secondary', SITE_NAME: 'observatory', DATA_DIR: dataDir, BUFFER_BACKEND: 'redis', REDIS_URL: redis.url };
      const cliStats = await runCli(['buffer', 'stats'], cliEnv);
      assert.equal(cliStats.code, 0, cliStats.stderr);
      assert.equal(JSON.parse(cliStats.stdout).accepted_total, 1);
      const verify = await runCli(['buffer', 'verify'], cliEnv);
      assert.equal(verify.code, 1, verify.stdout + verify.stderr);
      assert.match(verify.stdout, /PROBLEM: Redis at .* may lose acknowledged writes: appendfsync is everysec .*the daemon refuses new writes until it does/);

      await admin.config('SET', 'appendfsync', 'always');
      const back = await until('writes to be taken again', async () => {
        const r = await start(4);
        return r.status === 201 ? r : null;
      }, 10_000);
      assert.equal(back.body.status, 'buffered');
      const after = (await client(edge.url).get('/health')).body;
      assert.equal(after.redis, 'connected');
      assert.equal(after.status, 'healthy');
      assert.ok(edge.lines.some((l) => l.includes('Redis fsyncs every write again')));
    } finally {
      admin.disconnect();
      await edge.kill('SIGTERM');
      await redis.stop().catch(() => {});
      await dir.cleanup();
    }
  });
});
