// Found in review: when Redis stalled past the client's command timeout (an fsync stall under
// `appendfsync always`, an AOF rewrite's fork) while a group was being appended, the writers were
// told 503 "nothing was stored, retry later". The append had been sent, and Redis ran it as soon as
// it resumed: a client that did as told would have made a second observation at central. A write
// whose append was sent and not answered now gets the "may or may not have been kept" 503 with its
// transaction id, and the look-up that message names finds it. A real redis-server, stopped with
// SIGSTOP and resumed with SIGCONT.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startRedisServer, tempDir } from '../support/services.js';
import { startTestEdge } from '../support/edge.js';
import { until } from '../support/daemon.js';

describe('edge on a Redis buffer that stalls while a write is appended', () => {
  it('answers "may or may not have been kept" with the transaction id, which the look-up then finds', { timeout: 90_000 }, async () => {
    const dir = await tempDir('redis-stall');
    const redis = await startRedisServer(join(dir.path, 'redis'));
    const edge = await startTestEdge('redis-stall', { overrides: { BUFFER_BACKEND: 'redis', REDIS_URL: redis.url } });
    let stopped = false;
    try {
      const observer = await edge.as(['observer']);
      // The group committer reads the buffer's size at most once a second: right after a write, the next
      // write's group goes straight to the append, which is the call under test.
      assert.equal((await observer.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).status, 201);
      process.kill(redis.pid, 'SIGSTOP');
      stopped = true;
      const res = await observer.post('/executed_obs_units/start', { body: { obs_unit_id: 2 } });
      process.kill(redis.pid, 'SIGCONT');
      stopped = false;

      assert.equal(res.status, 503, res.text);
      assert.match(res.body.error.message, /may or may not have been kept/);
      assert.doesNotMatch(res.body.error.message, /nothing was stored/);
      const id = res.body.error.details.transaction_id as string;
      assert.match(id, /^[0-9a-f-]{36}$/);

      // Redis ran the append once it resumed: the look-up says so, so the client does not send it again.
      const look = await until('the stalled write to be found', async () => {
        const r = await observer.get(`/api/transactions/${id}`);
        return r.status === 200 ? r : null;
      }, 20_000);
      assert.equal(look.body.state, 'pending');
      assert.equal(look.body.seq, 2);

      // It is in the ledger, and the next write brings the edge's reads up to it.
      const next = await observer.post('/executed_obs_units/start', { body: { obs_unit_id: 3 } });
      assert.equal(next.status, 201, next.text);
      const stats = (await edge.anonymous.get('/buffer-stats')).body;
      assert.equal(stats.accepted_total, 3);
      const list = await observer.get('/executed_obs_units/?limit=10');
      assert.deepEqual(list.body.map((o: { obs_unit_id: number }) => o.obs_unit_id).sort(), [1, 2, 3]);
    } finally {
      if (stopped) process.kill(redis.pid, 'SIGCONT');
      await edge.stop().catch(() => {});
      await redis.stop().catch(() => {});
      await dir.cleanup();
    }
  });
});
