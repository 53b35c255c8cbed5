// Found in review: two edge daemons (each with its own DATA_DIR, or on two hosts) on one Redis with one
// SITE_NAME shared one buffer, each acknowledging into the other's ledger, both `healthy`, nothing logged:
// central tells two daemons of one site apart only once they sync, and at the site the link is down for
// days. The DATA_DIR lock cannot see them. The daemon now holds a lease in Redis (<prefix>daemon), and a
// second one is refused at start. A daemon restarted where it ran (after a SIGKILL) takes its lease back,
// and the CLI takes none. Real Redis, real edge processes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startRedisServer, tempDir } from '../support/services.js';
import { edgeDir, startEdgeProcess, createObservation, Acked } from '../support/processes.js';
import { runCli } from '../support/cli.js';
import { client } from '../support/http.js';
import { until } from '../support/daemon.js';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { startTestCentral } from '../support/central.js';
import { RedisBuffer } from '../../src/edge/buffer/redis.js';
import { LocalStore } from '../../src/edge/local-store.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { httpClient } from '../../src/sync/transport.js';
import { createLogger } from '../../src/lib/logger.js';
import { uuidv7 } from '../../src/lib/uuid.js';

/** One Redis and two edge data directories of one site; `done` stops and removes them all. */
async function twoPlaces(label: string) {
  const dir = await tempDir(label);
  const redis = await startRedisServer(join(dir.path, 'redis'));
  const a = await edgeDir(`${label}-a`);
  const b = await edgeDir(`${label}-b`);
  const base = { SITE_NAME: 'observatory', BUFFER_BACKEND: 'redis', REDIS_URL: redis.url, MIN_FREE_DISK_BYTES: '0' };
  const done = async () => {
    a.remove();
    b.remove();
    await redis.stop();
    await dir.cleanup();
  };
  return { a, b, base, done };
}

describe('one edge daemon per Redis buffer', () => {
  it('refuses a second daemon of the site, lets a restarted one back in at once, and leaves the CLI alone', { timeout: 90_000 }, async () => {
    const { a, b, base, done } = await twoPlaces('redis-one-daemon');
    let first = await startEdgeProcess({ ...base, DATA_DIR: a.dataDir });
    let second: Awaited<ReturnType<typeof startEdgeProcess>> | null = null;
    try {
      const acked = new Acked();
      assert.equal((await createObservation(client(first.url, a.adminToken), acked)).status, 201);

      await assert.rejects(startEdgeProcess({ ...base, DATA_DIR: b.dataDir }), (err: Error) => {
        assert.match(err.message, /another edge daemon uses the Redis buffer at .* as site "observatory" \(.* pid \d+\)/);
        assert.match(err.message, /Stop the other one, or give this one its own SITE_NAME/);
        return true;
      });

      // The CLI looks at the buffer while the daemon runs.
      const stats = await runCli(['buffer', 'stats'], { SITE_TYPE: 'secondary', ...base, DATA_DIR: a.dataDir });
      assert.equal(stats.code, 0, stats.stderr);

      // Killed and started again where it ran: its own lease, taken back at once.
      await first.kill('SIGKILL');
      first = await startEdgeProcess({ ...base, DATA_DIR: a.dataDir });
      assert.equal((await createObservation(client(first.url, a.adminToken), acked)).status, 201);

      // Stopped: the lease goes with it, and another daemon may use the buffer.
      await first.kill('SIGTERM');
      second = await startEdgeProcess({ ...base, DATA_DIR: b.dataDir });
      const s = (await client(second.url).get('/buffer-stats')).body;
      assert.equal(s.accepted_total, 2, 'the one buffer of the site, with what the first daemon acknowledged');
    } finally {
      await first.kill('SIGKILL').catch(() => {});
      await second?.kill('SIGKILL').catch(() => {});
      await done();
    }
  });

  it('a daemon whose lease another took while it was stopped takes no writes until that one stops', { timeout: 120_000 }, async () => {
    const { a, b, base, done } = await twoPlaces('redis-lease-lost');
    const first = await startEdgeProcess({ ...base, DATA_DIR: a.dataDir });
    let second: Awaited<ReturnType<typeof startEdgeProcess>> | null = null;
    const acked = new Acked();
    try {
      // A stall longer than the lease (SIGSTOP: a frozen VM, a swap storm): another daemon may then start.
      process.kill(first.pid, 'SIGSTOP');
      second = await (async () => {
        for (let i = 0; ; i++) {
          try {
            return await startEdgeProcess({ ...base, DATA_DIR: b.dataDir });
          } catch (err) {
            if (i >= 30 || !/another edge daemon uses the Redis buffer/.test((err as Error).message)) throw err;
            await new Promise((r) => setTimeout(r, 1000));
          }
        }
      })();
      process.kill(first.pid, 'SIGCONT');
      const refused = await until('the first to notice', async () => {
        const r = await client(first.url, a.adminToken).post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
        return r.status === 503 ? r : null;
      }, 20_000);
      assert.match(refused.body.error.message, /another edge daemon took this Redis buffer's lease \(.* pid \d+\) while this one could not renew it: this daemon takes no more writes until that one stops/);
      assert.equal((await client(first.url).get('/health')).body.status, 'degraded');
      assert.equal((await createObservation(client(second.url, b.adminToken), acked)).status, 201, 'the one holding the lease takes writes');
      // That one stops: the first renews its lease and takes writes again.
      await second.kill('SIGTERM');
      await until('the first taking writes again', async () => (await createObservation(client(first.url, a.adminToken), acked)).status === 201, 20_000);
    } finally {
      await first.kill('SIGKILL').catch(() => {});
      await second?.kill('SIGKILL').catch(() => {});
      await done();
    }
  });

  // Found in review: the lease stopped a daemon that lost it from taking writes, not from syncing: its
  // engine went on claiming beside the other daemon's, and after an error released every transaction in
  // flight, the other's included. It now stops claiming, and leaves what is in flight alone.
  it('a sync engine whose daemon lost the lease takes nothing from the buffer and releases nothing, until it has the lease again', { timeout: 60_000 }, async () => {
    const { a, base, done } = await twoPlaces('redis-lease-sync');
    const local = new LocalStore(join(a.dataDir, 'local.db'));
    const central = await startTestCentral('lease-sync');
    const keyPrefix = 'opsdb:observatory:';
    const ours = await RedisBuffer.open({ url: base.REDIS_URL, keyPrefix, daemon: { who: 'host-a /var/lib/a' } });
    const theirs = await RedisBuffer.open({ url: base.REDIS_URL, keyPrefix }); // the other daemon's claims, through a lease-less handle
    const token = (await central.admin.post('/api/sites/', { body: { name: 'observatory' } })).body.token as string;
    const stop = new AbortController();
    const errors: string[] = [];
    const engine = new SyncEngine({
      site: 'observatory', buffer: ours, client: httpClient(central.url, 10_000, stop.signal), replica: local, token: () => token,
      log: createLogger('silent'), batchSize: 100, batchMaxBytes: 1 << 20, intervalMs: 50, retryBaseMs: 20, retryMaxMs: 200,
    });
    engine.on({ error: (code) => errors.push(code) });
    const obs = (site: string) => {
      const id = randomUUID();
      return {
        transaction_id: uuidv7(), site, created_at: new Date().toISOString(), endpoint: 'POST /executed_obs_units/start', depends_on: [],
        steps: [{ step_id: 'obs', op: 'create' as const, table: 'executed_obs_unit' as const, id, data: { id, obs_unit_id: 1, site, status: 'running', start_time: '2026-01-01T00:00:00.000Z' } }],
      };
    };
    const withRedis = async <T>(fn: (r: Redis) => Promise<T>) => {
      const r = new Redis(base.REDIS_URL);
      try {
        return await fn(r);
      } finally {
        r.disconnect();
      }
    };
    try {
      await ours.append([obs('observatory'), obs('observatory'), obs('observatory')]);
      // The other daemon took the lease, and has the first transaction in flight.
      await withRedis((r) => r.set(`${keyPrefix}daemon`, 'host-b /var/lib/b pid 4242', 'PX', 60_000));
      assert.equal((await theirs.claim(1, 1e9)).length, 1);
      engine.start();
      await until('the engine to report the lease', async () => errors.includes('lease_lost'), 10_000);
      await new Promise((r) => setTimeout(r, 500));
      const s = await ours.stats();
      assert.deepEqual([s.in_flight, s.pending], [1, 2], "the other's claim still in flight, nothing claimed here");
      assert.equal(engine.lastError()?.code, 'lease_lost');
      assert.match(engine.lastError()!.message, /another edge daemon holds the Redis buffer's lease \(host-b \/var\/lib\/b pid 4242\)/);
      const { rows } = await central.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM applied_transaction WHERE site = 'observatory'`);
      assert.equal(rows[0]!.n, 0, 'nothing sent');
      // That daemon stops (its lease goes); this one renews it and sends what is pending.
      await withRedis((r) => r.del(`${keyPrefix}daemon`));
      await until('the pending ones to be sent', async () => (await ours.stats()).pending === 0 && (await ours.stats()).in_flight === 1, 20_000);
    } finally {
      stop.abort();
      await engine.stop();
      await theirs.close();
      await ours.close();
      local.close();
      await central.stop();
      await done();
    }
  });
});
