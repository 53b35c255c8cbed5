// Found in review: Redis reports appendonly yes / appendfsync always as soon as `CONFIG SET appendonly yes`
// (the fix the edge's own refusal message names) returns, but until the AOF rewrite that command starts has
// finished, Redis logs new writes only to a temporary file that a restart does not load. The edge took writes
// again within a second, answered them 201, and a Redis crash before the rewrite ended lost them. The edge now
// counts a rewrite it has not seen the end of as a gap: it refuses writes (503, "nothing to do: …") until the
// file is written, also when it starts during one (it starts, refusing writes, and takes them once it is done).
// The rewrite is made slow with rdb-key-save-delay, standing in for a large buffer (a rewrite takes time
// proportional to the data held). Real Redis servers, real edge processes, Redis killed with SIGKILL.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startRedisServer, tempDir } from '../support/services.js';
import { edgeDataDir, localClient, spawnEdge } from '../support/edge.js';
import { client } from '../support/http.js';
import { until } from '../support/daemon.js';

describe('writes while Redis writes its first AOF after appendonly yes', () => {
  it('every write answered 201 survives a Redis crash', { timeout: 120_000 }, async (t) => {
    const dir = await tempDir('first-aof-runtime');
    let redis = await startRedisServer(join(dir.path, 'redis'));
    const dataDir = edgeDataDir('first-aof-runtime');
    const token = (await localClient(dataDir, 'http://unused', ['admin'], 'w')).token!;
    const edge = await spawnEdge({ DATA_DIR: dataDir, SITE_NAME: 'observatory', BUFFER_BACKEND: 'redis', REDIS_URL: redis.url });
    const admin = new Redis(redis.url);
    admin.on('error', () => {});
    const api = client(edge.url, token);
    const start = () => api.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    try {
      for (let i = 0; i < 3; i++) assert.equal((await start()).status, 201);
      await admin.config('SET', 'rdb-key-save-delay', '200000'); // 0.2 s per key in the rewrite child
      await admin.config('SET', 'appendonly', 'no');
      await until('the edge to refuse writes', async () => (await start()).status === 503, 10_000);
      // The fix the refusal message names:
      await admin.config('SET', 'appendonly', 'yes');
      const rewriting = async () => /aof_rewrite_in_progress:1/.test(await admin.info('persistence'));
      assert.ok(await rewriting(), 'Redis writes the AOF whole first');
      await new Promise((r) => setTimeout(r, 1200)); // past the edge's next look at the settings
      const refused = await start();
      assert.ok(await rewriting(), 'still writing it (the rewrite is slowed down), so the next answer is from that time');
      assert.equal(refused.status, 503, `a write while the first AOF is written: ${refused.text}`);
      assert.match(refused.body.error.message, /writing its append-only file whole.*nothing to do/);
      await until('the edge to take writes again', async () => (await start()).status === 201, 30_000);
      assert.ok(!(await rewriting()), 'only once the file is written');
      await new Promise((r) => setTimeout(r, 1500)); // well past the edge's next look at the settings
      const acked: string[] = [];
      for (let i = 0; i < 5; i++) {
        const r = await start();
        assert.equal(r.status, 201, r.text);
        acked.push(r.body.transaction_id);
      }
      const info = await admin.info('persistence');
      t.diagnostic(info.split('\r\n').filter((l) => /aof_(enabled|rewrite_in_progress)/.test(l)).join(' '));
      // Redis crashes (power cut, OOM killer): the server and its rewrite child.
      const children = readFileSync(`/proc/${redis.pid}/task/${redis.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      await redis.kill();
      for (const c of children) { try { process.kill(c, 'SIGKILL'); } catch {} }
      admin.disconnect();
      redis = await startRedisServer(join(dir.path, 'redis'), { port: redis.port });
      const missing: string[] = [];
      await until('the edge to answer again', async () => (await api.get(`/api/transactions/${acked[0]}`)).status !== 503, 15_000);
      for (const id of acked) {
        const r = await api.get(`/api/transactions/${id}`);
        if (r.status !== 200) missing.push(`${id}: ${r.status}`);
      }
      const stats = (await client(edge.url).get('/buffer-stats')).body;
      t.diagnostic(`after restart: accepted ${stats.accepted_total} lost ${stats.lost_transactions}`);
      await new Promise((r) => setTimeout(r, 3000));
      const s2 = (await client(edge.url).get('/buffer-stats')).body;
      t.diagnostic(`3 s later: accepted ${s2.accepted_total} lost ${s2.lost_transactions}; health ${JSON.stringify((await client(edge.url).get('/health')).body)}`);
      t.diagnostic(edge.lines.filter((l) => /lost acknowledged|behind/.test(l)).map((l) => l.slice(0, 400)).join('\n'));
      assert.deepEqual(missing, [], `${missing.length} of ${acked.length} writes answered 201 are gone after the Redis crash`);
    } finally {
      admin.disconnect();
      await edge.kill('SIGTERM');
      await redis.stop().catch(() => {});
      await dir.cleanup();
    }
  });
});

describe('an edge started right after `CONFIG SET appendonly yes` on a Redis that ran without it', () => {
  it('every write answered 201 survives a Redis crash', { timeout: 120_000 }, async (t) => {
    const dir = await tempDir('first-aof-start');
    let redis = await startRedisServer(join(dir.path, 'redis'), { config: ['--appendonly', 'no'] });
    const admin = new Redis(redis.url);
    admin.on('error', () => {});
    for (let i = 0; i < 20; i++) await admin.set(`other:${i}`, 'x'); // some other data in this Redis
    const dataDir = edgeDataDir('first-aof-start');
    const token = (await localClient(dataDir, 'http://unused', ['admin'], 'w')).token!;
    let edge: Awaited<ReturnType<typeof spawnEdge>> | null = null;
    try {
      await assert.rejects(spawnEdge({ DATA_DIR: dataDir, SITE_NAME: 'observatory', BUFFER_BACKEND: 'redis', REDIS_URL: redis.url }), /appendonly is no/);
      await admin.config('SET', 'rdb-key-save-delay', '200000');
      await admin.config('SET', 'appendonly', 'yes'); // the fix the refusal names
      // The edge starts, refusing writes until Redis has written the file.
      edge = await spawnEdge({ DATA_DIR: dataDir, SITE_NAME: 'observatory', BUFFER_BACKEND: 'redis', REDIS_URL: redis.url });
      const api = client(edge.url, token);
      const first = await api.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
      assert.match(await admin.info('persistence'), /aof_rewrite_in_progress:1/, 'still writing it');
      assert.equal(first.status, 503, first.text);
      assert.match(first.body.error.message, /writing its append-only file whole.*nothing to do/);
      assert.match((await client(edge.url).get('/health')).body.redis, /^connected \(refusing writes: .*writing its append-only file whole/);
      assert.ok(edge.lines.some((l) => l.includes('Redis is writing its append-only file whole: new writes are refused (503) until it is done')));
      const acked: string[] = [];
      await until('writes taken once the file is written', async () => {
        const r = await api.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
        if (r.status === 201) acked.push(r.body.transaction_id);
        return r.status === 201;
      }, 30_000);
      assert.doesNotMatch(await admin.info('persistence'), /aof_rewrite_in_progress:1/);
      for (let i = 0; i < 4; i++) {
        const r = await api.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
        assert.equal(r.status, 201, r.text);
        acked.push(r.body.transaction_id);
      }
      const children = readFileSync(`/proc/${redis.pid}/task/${redis.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      await redis.kill();
      for (const c of children) { try { process.kill(c, 'SIGKILL'); } catch {} }
      redis = await startRedisServer(join(dir.path, 'redis'), { port: redis.port });
      await until('the edge to answer again', async () => (await api.get(`/api/transactions/${acked[0]}`)).status !== 503, 15_000);
      const missing: string[] = [];
      for (const id of acked) {
        const r = await api.get(`/api/transactions/${id}`);
        if (r.status !== 200) missing.push(`${id}: ${r.status}`);
      }
      t.diagnostic(`missing ${missing.length}`);
      assert.deepEqual(missing, [], `${missing.length} of ${acked.length} writes answered 201 are gone after the Redis crash`);
    } finally {
      admin.disconnect();
      await edge?.kill('SIGTERM');
      await redis.stop().catch(() => {});
      await dir.cleanup();
    }
  });
});
