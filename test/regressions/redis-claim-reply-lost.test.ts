// Found in review: on the Redis buffer, when the connection dropped after Redis ran the sync engine's
// claim and before its answer arrived, the claimed transactions stayed `in_flight`. The engine's
// attempt to return them to pending failed too (Redis still reconnecting) and was never made again, so
// until a restart they were never sent, every later transaction overtook them (an observation's
// finish after its start had been sent ahead), /health said healthy, and an operator could neither
// retry nor discard them. A release that fails is now owed, and made before the next claim. A real
// redis-server behind a proxy that cuts the connection on the claim's answer, a real central.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { startTestCentral } from '../support/central.js';
import { startTestEdge, edgeDataDir } from '../support/edge.js';
import { startRedisServer, tempDir } from '../support/services.js';
import { until } from '../support/daemon.js';
import { PRELUDE, SCRIPTS } from '../../src/edge/buffer/redis-scripts.js';

const CLAIM_SHA = createHash('sha1').update(PRELUDE + SCRIPTS.claim).digest('hex');

/** A TCP proxy to Redis that, once armed, cuts the connection instead of passing on the first claim answer that holds transactions. */
function claimCutter(port: number) {
  const state = { armed: false, cut: 0 };
  const server = net.createServer((client) => {
    const up = net.connect(port, '127.0.0.1');
    let claimSent = false;
    client.on('data', (d) => {
      if (d.includes(CLAIM_SHA)) claimSent = true;
      up.write(d);
    });
    up.on('data', (d) => {
      if (state.armed && claimSent && d[0] === 0x2a && !d.subarray(0, 4).equals(Buffer.from('*0\r\n'))) {
        state.armed = false;
        state.cut += 1;
        client.destroy();
        up.destroy();
        return;
      }
      claimSent = false;
      client.write(d);
    });
    for (const [a, b] of [[client, up], [up, client]] as const) {
      a.on('error', () => b.destroy());
      a.on('close', () => b.destroy());
    }
  });
  return new Promise<{ url: string; state: typeof state; close(): void }>((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({
      url: `redis://127.0.0.1:${(server.address() as net.AddressInfo).port}`, state, close: () => server.close(),
    })));
}

describe('the answer to a sync claim lost on the way from Redis', () => {
  it('the claimed transactions go to central in order after all, none stranded in flight', { timeout: 90_000 }, async () => {
    const central = await startTestCentral('claim-lost');
    const token = (await central.admin.post('/api/sites/', { body: { name: 'claimlost' } })).body.token;
    const dir = await tempDir('claim-lost');
    const redis = await startRedisServer(join(dir.path, 'redis'));
    const proxy = await claimCutter(redis.port);
    const dataDir = edgeDataDir('claim-lost');
    const base = { SITE_NAME: 'claimlost', BUFFER_BACKEND: 'redis' as const, REDIS_URL: proxy.url };
    try {
      // Written offline: a start, its finish, another start.
      const offline = await startTestEdge('claim-lost', { dataDir, overrides: base });
      const o1 = (await offline.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).body;
      const f1 = (await offline.admin.put(`/executed_obs_units/${o1.id}/finish`, { body: { status: 'success' } })).body;
      const o2 = (await offline.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 2 } })).body;
      await offline.stop();

      proxy.state.armed = true;
      const edge = await startTestEdge('claim-lost', {
        dataDir, seed: false,
        overrides: { ...base, CENTRAL_URL: central.url, SITE_TOKEN: token, SYNC_BATCH_SIZE: 1, SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 200 },
      });
      try {
        const applied = async () =>
          (await central.db.query(`SELECT seq FROM applied_transaction WHERE site = 'claimlost' ORDER BY applied_at, seq`)).rows.map((r) => Number(r.seq));
        const order = await until('all three at central', async () => {
          const seqs = await applied();
          return seqs.length === 3 ? seqs : null;
        }, 30_000);
        assert.equal(proxy.state.cut, 1, 'a claim answer was cut');
        assert.deepEqual(order, [1, 2, 3], 'in seq order: the finish did not overtake, nothing was left behind');
        for (const t of [o1, f1, o2]) {
          await until(`${t.transaction_id} to read synced at the edge`, async () =>
            (await edge.admin.get(`/api/transactions/${t.transaction_id}`)).body.state === 'synced', 10_000);
        }
        const row = await central.db.query('SELECT status FROM executed_obs_unit WHERE id = $1', [o1.id]);
        assert.equal(row.rows[0]?.status, 'success');
        assert.equal((await edge.anonymous.get('/buffer-stats')).body.in_flight_transactions, 0);
      } finally {
        await edge.stop();
      }
    } finally {
      proxy.close();
      await redis.stop();
      await dir.cleanup();
      await central.stop();
    }
  });
});
