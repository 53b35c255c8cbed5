import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { BufferLeaseLostError, BufferNotDurableError, BufferUnavailableError, RECEIPT_DAYS } from '../../src/edge/buffer/buffer.js';
import { RedisBuffer } from '../../src/edge/buffer/redis.js';
import { freePort } from '../support/ports.js';
import { redisKeyPrefix, redisUrl, startRedisServer, tempDir, type RedisServer, type TempDir } from '../support/services.js';
import { bufferConformance, tx } from './buffer-conformance.js';
import { until } from '../support/daemon.js';

bufferConformance('Redis (appendonly, appendfsync always, a real server)', {
  open: () => RedisBuffer.open({ url: redisUrl(), keyPrefix: redisKeyPrefix('buf') }),
  reopen: async (b) => {
    await b.close();
    return RedisBuffer.open({ url: redisUrl(), keyPrefix: (b as RedisBuffer).keyPrefix });
  },
  reopenWithoutDependencyIndex: async (b) => {
    await b.close();
    const keyPrefix = (b as RedisBuffer).keyPrefix;
    await withClient(redisUrl(), async (r) => {
      const keys = await r.keys(`${keyPrefix}children:*`);
      await r.del(`${keyPrefix}deps_indexed`, `${keyPrefix}deps_through`, ...keys);
    });
    return RedisBuffer.open({ url: redisUrl(), keyPrefix });
  },
  reopenAfterOlderBuildAppended: async (b, after) => {
    await b.close();
    const keyPrefix = (b as RedisBuffer).keyPrefix;
    await withClient(redisUrl(), async (r) => {
      for (const key of await r.keys(`${keyPrefix}children:*`)) await r.zremrangebyscore(key, `(${after}`, '+inf');
      await r.set(`${keyPrefix}deps_through`, after);
    });
    return RedisBuffer.open({ url: redisUrl(), keyPrefix });
  },
  reopenAfterBuildDroppingCompactedEdges: async (b) => {
    await b.close();
    const keyPrefix = (b as RedisBuffer).keyPrefix;
    await withClient(redisUrl(), async (r) => {
      for (const key of await r.keys(`${keyPrefix}children:*`)) {
        if (!(await r.exists(`${keyPrefix}tx:${key.slice(key.lastIndexOf(':') + 1)}`))) await r.del(key);
      }
      await r.del(`${keyPrefix}deps_kept_after`);
    });
    return RedisBuffer.open({ url: redisUrl(), keyPrefix });
  },
});

describe('Redis dependency index', () => {
  const applyAll = async (b: RedisBuffer) => b.settle((await b.claim(100, 1e12)).map((t) => ({ seq: t.seq, outcome: 'applied' as const })));

  it('leaves no key behind once everything is synced and compacted, for a child of a compacted parent too', async () => {
    const keyPrefix = redisKeyPrefix('children-left');
    const b = await RedisBuffer.open({ url: redisUrl(), keyPrefix });
    try {
      const [parent] = await b.append([tx()]);
      await applyAll(b);
      await b.compact(parent!.seq);
      const [child] = await b.append([tx([parent!.seq])]);
      await applyAll(b);
      assert.equal(await b.compact(child!.seq), 1);
      assert.deepEqual(await withClient(redisUrl(), (r) => r.keys(`${keyPrefix}children:*`)), []);
    } finally {
      await b.close();
    }
  });

  it('keeps no entry of a compacted child under a discarded parent it only followed', async () => {
    const keyPrefix = redisKeyPrefix('children-discarded');
    const b = await RedisBuffer.open({ url: redisUrl(), keyPrefix });
    try {
      const [d] = await b.append([tx()]);
      await b.settle((await b.claim(1, 1e12)).map((t) => ({ seq: t.seq, outcome: 'rejected' as const, error: { code: 'c', message: 'm', at: new Date().toISOString() } })));
      await b.discard(d!.transaction_id, 'op', 'r');
      const follower = { ...tx([d!.seq]), order_only: [d!.seq] };
      const [child] = await b.append([follower]);
      await applyAll(b);
      assert.equal(await b.compact(child!.seq), 1);
      assert.deepEqual(await withClient(redisUrl(), (r) => r.zrange(`${keyPrefix}children:${d!.seq}`, '0', '-1')), []);
    } finally {
      await b.close();
    }
  });

  it('verify names a dependency missing from it', async () => {
    const keyPrefix = redisKeyPrefix('dep-index');
    const b = await RedisBuffer.open({ url: redisUrl(), keyPrefix });
    try {
      const [parent] = await b.append([tx()]);
      const [child] = await b.append([tx([parent!.seq])]);
      assert.deepEqual((await b.verify()).problems, []);
      await withClient(redisUrl(), (r) => r.del(`${keyPrefix}children:${parent!.seq}`));
      const v = await b.verify();
      assert.equal(v.ok, false);
      assert.match(v.problems.join('\n'), new RegExp(`dependency index: seq ${child!.seq} waits on ${parent!.seq}`));
    } finally {
      await b.close();
    }
  });
});

async function withClient<T>(url: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await r.connect();
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

describe('RedisBuffer.open', () => {
  let dir: TempDir;
  let server: RedisServer;
  before(async () => {
    dir = await tempDir('redis-buffer-open');
    server = await startRedisServer(dir.path);
  });
  after(async () => {
    await server.stop();
    await dir.cleanup();
  });

  it('reports always-on durability on a server that fsyncs every write', async () => {
    const b = await RedisBuffer.open({ url: server.url, keyPrefix: redisKeyPrefix('open') });
    assert.equal(b.durability, 'always');
    assert.equal(b.durabilityNote, null);
    await b.close();
  });

  it('refuses a server with appendfsync everysec, naming the setting and the fix', async () => {
    await withClient(server.url, (r) => r.config('SET', 'appendfsync', 'everysec'));
    try {
      await assert.rejects(RedisBuffer.open({ url: server.url, keyPrefix: redisKeyPrefix('weak') }), (err: Error) => {
        assert.ok(err instanceof BufferUnavailableError);
        assert.match(err.message, /appendfsync is everysec/);
        assert.match(err.message, /CONFIG SET appendfsync always/);
        return true;
      });
      const b = await RedisBuffer.open({ url: server.url, keyPrefix: redisKeyPrefix('weak'), allowWeakDurability: true });
      assert.equal(b.durability, 'weak');
      assert.match(b.durabilityNote ?? '', /appendfsync is everysec/);
      const [t] = await b.append([tx()]);
      assert.equal((await b.get(t!.transaction_id))?.state, 'pending', 'works when allowed');
      await b.close();
    } finally {
      await withClient(server.url, (r) => r.config('SET', 'appendfsync', 'always'));
    }
  });

  it('treats a forbidden CONFIG as unknown durability', async () => {
    await withClient(server.url, (r) => r.call('ACL', 'SETUSER', 'edge', 'on', '>pw', '~*', '+@all', '-config'));
    const url = `redis://edge:pw@127.0.0.1:${server.port}`;
    await assert.rejects(RedisBuffer.open({ url, keyPrefix: redisKeyPrefix('acl') }), (err: Error) => {
      assert.ok(err instanceof BufferUnavailableError);
      assert.match(err.message, /CONFIG GET failed/);
      assert.doesNotMatch(err.message, /:pw@/, 'no password in the message');
      return true;
    });
    const b = await RedisBuffer.open({ url, keyPrefix: redisKeyPrefix('acl'), allowWeakDurability: true });
    assert.equal(b.durability, 'weak');
    await b.close();
    // INFO forbidden: whether Redis still writes its first AOF is unknown, and the message names what is missing.
    await withClient(server.url, (r) => r.call('ACL', 'SETUSER', 'edge-info', 'on', '>pw', '~*', '+@all', '-info'));
    await assert.rejects(RedisBuffer.open({ url: `redis://edge-info:pw@127.0.0.1:${server.port}`, keyPrefix: redisKeyPrefix('acl-info') }), (err: Error) => {
      assert.match(err.message, /INFO persistence failed: NOPERM.*an ACL user needs \+config\|get and \+info/);
      return true;
    });
  });

  it('fails with the URL, without its password, when nothing listens', async () => {
    const port = await freePort();
    const started = Date.now();
    await assert.rejects(RedisBuffer.open({ url: `redis://:s3cret@127.0.0.1:${port}`, keyPrefix: redisKeyPrefix('down') }), (err: Error) => {
      assert.ok(err instanceof BufferUnavailableError);
      assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.doesNotMatch(err.message, /s3cret/);
      return true;
    });
    assert.ok(Date.now() - started < 5000);
  });
});

// Settings read only at start left a gap: `CONFIG SET appendfsync everysec` on a running Redis, or a
// Redis restarted with another redis.conf, and every later write was acknowledged without an fsync.
describe('RedisBuffer when the server\'s durability changes while it runs', () => {
  let dir: TempDir;
  let server: RedisServer;
  before(async () => {
    dir = await tempDir('redis-buffer-durability');
    server = await startRedisServer(dir.path);
  });
  after(async () => {
    await server.stop();
    await dir.cleanup();
  });

  it('refuses appends, storing nothing, while the server does not fsync every write, and takes them again after', async () => {
    const changes: (string | null)[] = [];
    const b = await RedisBuffer.open({
      url: server.url, keyPrefix: redisKeyPrefix('runtime'), durabilityCheckMs: 0, onDurabilityChange: (n) => changes.push(n),
    });
    try {
      await b.append([tx()]);
      await withClient(server.url, (r) => r.config('SET', 'appendfsync', 'everysec'));
      try {
        await assert.rejects(b.append([tx(), tx()]), (err: Error) => {
          assert.ok(err instanceof BufferNotDurableError, String(err));
          assert.match(err.message, /appendfsync is everysec/);
          assert.match(err.message, /refused until it is fixed/);
          assert.match(err.message, /CONFIG SET appendfsync always/);
          return true;
        });
        assert.equal(b.durability, 'weak');
        assert.equal(b.refusingWrites, true);
        const stats = await b.stats();
        assert.equal(stats.accepted_total, 1, 'the refused group stored nothing');
        assert.equal(stats.last_seq, 1, 'and took no seq');
      } finally {
        await withClient(server.url, (r) => r.config('SET', 'appendfsync', 'always'));
      }
      const [next] = await b.append([tx()]);
      assert.equal(next!.seq, 2, 'seqs go on without a gap');
      assert.equal(b.refusingWrites, false);
      assert.equal(changes.length, 2);
      assert.match(changes[0] ?? '', /appendfsync is everysec/);
      assert.equal(changes[1], null);
    } finally {
      await b.close();
    }
  });

  it('does not take a Redis busy with a long script for one that may lose writes', async () => {
    const changes: (string | null)[] = [];
    const b = await RedisBuffer.open({
      url: server.url, keyPrefix: redisKeyPrefix('busy'), durabilityCheckMs: 0, onDurabilityChange: (n) => changes.push(n),
    });
    const blocker = new Redis(server.url, { maxRetriesPerRequest: 0 });
    // Connected before Redis is busy: a new connection's ready check would get BUSY too.
    const admin = new Redis(server.url, { maxRetriesPerRequest: 0 });
    admin.on('error', () => {});
    try {
      await admin.config('SET', 'busy-reply-threshold', '100');
      await blocker.ping();
      // A read-only script that runs until killed: Redis answers everyone else BUSY meanwhile.
      const running = blocker.eval('while true do end', 0).catch(() => null);
      await new Promise((r) => setTimeout(r, 300));
      await assert.rejects(b.append([tx()]), (err: Error) => {
        assert.ok(err instanceof BufferUnavailableError && !(err instanceof BufferNotDurableError), `${err.constructor.name}: ${err.message}`);
        return true;
      });
      assert.equal(b.refusingWrites, false, 'not refusing on durability grounds');
      assert.deepEqual(changes, [], 'no durability change reported');
      await admin.call('SCRIPT', 'KILL');
      await running;
      await until('appends again', async () => (await b.append([tx()]).then(() => true, () => false)), 10_000);
    } finally {
      blocker.disconnect();
      await admin.config('SET', 'busy-reply-threshold', '5000').catch(() => {});
      admin.disconnect();
      await b.close();
    }
  });

  it('refuses a maxmemory-policy that evicts keys with a TTL: the receipts of synced writes', async () => {
    const b = await RedisBuffer.open({ url: server.url, keyPrefix: redisKeyPrefix('volatile'), durabilityCheckMs: 0 });
    try {
      await withClient(server.url, (r) => r.config('SET', 'maxmemory-policy', 'volatile-lru'));
      await assert.rejects(b.append([tx()]), /maxmemory-policy is volatile-lru \(Redis may evict the receipts of synced transactions\)/);
    } finally {
      await withClient(server.url, (r) => r.config('SET', 'maxmemory-policy', 'noeviction'));
      await b.close();
    }
  });

  it('looks at the settings again on a new connection, before its first append', async () => {
    const keyPrefix = redisKeyPrefix('restarted');
    // An hour between looks: only the reconnection can make it look again.
    const b = await RedisBuffer.open({ url: server.url, keyPrefix, durabilityCheckMs: 3_600_000 });
    try {
      await b.append([tx()]);
      await server.stop();
      server = await startRedisServer(dir.path, { port: server.port, config: ['--appendfsync', 'everysec'] });
      const err = await until('the buffer to reconnect and refuse', async () => {
        try {
          await b.append([tx()]);
          return new Error('the append was taken');
        } catch (e) {
          return e instanceof BufferNotDurableError ? e : e instanceof BufferUnavailableError ? null : (e as Error);
        }
      }, 15_000);
      assert.ok(err instanceof BufferNotDurableError, String(err));
      assert.match(err.message, /appendfsync is everysec/);
      assert.equal((await b.stats()).accepted_total, 1);
    } finally {
      await b.close();
      await server.stop();
      server = await startRedisServer(dir.path, { port: server.port });
    }
  });

  it('goes on appending with REDIS_ALLOW_WEAK_DURABILITY, and says the durability is weak', async () => {
    const changes: (string | null)[] = [];
    const b = await RedisBuffer.open({
      url: server.url, keyPrefix: redisKeyPrefix('allowed'), allowWeakDurability: true, durabilityCheckMs: 0,
      onDurabilityChange: (n) => changes.push(n),
    });
    try {
      assert.equal(b.durability, 'always');
      await withClient(server.url, (r) => r.config('SET', 'appendfsync', 'no'));
      try {
        const [t] = await b.append([tx()]);
        assert.equal(t!.seq, 1);
        assert.equal(b.durability, 'weak');
        assert.equal(b.refusingWrites, false);
        assert.match(b.durabilityNote ?? '', /appendfsync is no/);
        assert.equal(changes.length, 1);
      } finally {
        await withClient(server.url, (r) => r.config('SET', 'appendfsync', 'always'));
      }
    } finally {
      await b.close();
    }
  });
});

describe('RedisBuffer under a Redis crash', () => {
  it('keeps every acknowledged write across a SIGKILL of redis-server, and reconnects', async () => {
    const dir = await tempDir('redis-buffer-kill');
    let server = await startRedisServer(dir.path);
    const keyPrefix = redisKeyPrefix('kill');
    const b = await RedisBuffer.open({ url: server.url, keyPrefix });
    try {
      const all = await b.append([tx(), tx(), tx()]);
      const [parent] = await b.append([tx()]);
      const [child] = await b.append([tx([parent!.seq])]);
      await b.claim(4, 1e9);
      await b.settle([
        { seq: all[0]!.seq, outcome: 'applied', central_result: { result: 'applied' } },
        { seq: all[1]!.seq, outcome: 'retry', error: { code: 'network', message: 'down', at: new Date().toISOString() } },
        { seq: parent!.seq, outcome: 'rejected', error: { code: 'constraint', message: 'no', at: new Date().toISOString() } },
      ]);
      const before = await b.stats();
      await server.kill();
      server = await startRedisServer(dir.path, { port: server.port });

      const again = await RedisBuffer.open({ url: server.url, keyPrefix });
      try {
        assert.deepEqual(await again.stats(), before);
        assert.equal((await again.get(child!.transaction_id))?.state, 'blocked');
        assert.deepEqual((await again.get(all[0]!.transaction_id))?.central_result, { result: 'applied' });
        assert.equal((await again.get(all[1]!.transaction_id))?.attempts, 1);
        assert.deepEqual((await again.verify()).problems, []);
      } finally {
        await again.close();
      }

      // The first buffer reconnects by itself once Redis is back.
      const deadline = Date.now() + 10_000;
      for (;;) {
        try {
          assert.deepEqual(await b.stats(), before);
          break;
        } catch (err) {
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    } finally {
      await b.close();
      await server.stop();
      await dir.cleanup();
    }
  });

  it('rejects a call within seconds while Redis is down, instead of hanging', async () => {
    const dir = await tempDir('redis-buffer-down');
    const server = await startRedisServer(dir.path);
    const b = await RedisBuffer.open({ url: server.url, keyPrefix: redisKeyPrefix('down') });
    try {
      await b.append([tx()]);
      await server.kill();
      for (const call of [() => b.append([tx()]), () => b.stats(), () => b.claim(10, 1e9)]) {
        const started = Date.now();
        await assert.rejects(call(), BufferUnavailableError);
        assert.ok(Date.now() - started < 5000, `rejected after ${Date.now() - started} ms`);
      }
    } finally {
      await b.close();
      await server.stop();
      await dir.cleanup();
    }
  });

  it('rejects a call within seconds when Redis stops answering (SIGSTOP), and recovers after', async () => {
    const dir = await tempDir('redis-buffer-hung');
    const server = await startRedisServer(dir.path);
    const b = await RedisBuffer.open({ url: server.url, keyPrefix: redisKeyPrefix('hung') });
    try {
      const [t] = await b.append([tx()]);
      process.kill(server.pid, 'SIGSTOP');
      const started = Date.now();
      await assert.rejects(b.stats(), BufferUnavailableError);
      assert.ok(Date.now() - started < 7000, `rejected after ${Date.now() - started} ms`);
      process.kill(server.pid, 'SIGCONT');
      assert.equal((await b.get(t!.transaction_id))?.state, 'pending');
    } finally {
      process.kill(server.pid, 'SIGCONT');
      await b.close();
      await server.stop();
      await dir.cleanup();
    }
  });
});

describe('RedisBuffer.verify', () => {
  it('reports a record missing from its state set and a broken id index', async () => {
    const keyPrefix = redisKeyPrefix('verify');
    const b = await RedisBuffer.open({ url: redisUrl(), keyPrefix });
    try {
      const [a, c] = await b.append([tx(), tx()]);
      assert.equal((await b.verify()).ok, true);
      await withClient(redisUrl(), async (r) => {
        await r.zrem(`${keyPrefix}state:pending`, String(a!.seq));
        await r.hdel(`${keyPrefix}ids`, c!.transaction_id);
      });
      const v = await b.verify();
      assert.equal(v.ok, false);
      assert.ok(v.problems.some((p) => p.includes(`seq ${a!.seq} has a record but is in no state set`)), v.problems.join('\n'));
      assert.ok(v.problems.some((p) => p.includes(`${c!.transaction_id} (seq ${c!.seq}) is missing from the id index`)), v.problems.join('\n'));
      assert.equal(v.counted.pending, 1);
    } finally {
      await b.close();
    }
  });
});

describe('RedisBuffer.verify over a buffer larger than one of its chunks', () => {
  it('finds what disagrees in any chunk, past the last seq too, and no problem while the buffer changes under it', async () => {
    const keyPrefix = redisKeyPrefix('verify-chunks');
    const b = await RedisBuffer.open({ url: redisUrl(), keyPrefix });
    try {
      const held = [];
      for (let i = 0; i < 12; i++) held.push(...(await b.append(Array.from({ length: 1000 }, (_, k) => tx(k % 2 ? [held.length + k] : [])))));
      assert.deepEqual((await b.verify()).problems, []);

      // While a writer appends and a sync claims and settles, nothing is reported that is not so.
      let writing = true;
      const writer = (async () => {
        while (writing) {
          await b.append([tx()]);
          await b.settle((await b.claim(3, 1e9)).map((t) => ({ seq: t.seq, outcome: 'applied' as const })));
        }
      })();
      const busy = await b.verify();
      writing = false;
      await writer;
      assert.deepEqual(busy.problems, [], 'no false alarm while the buffer changes');

      // A claim between two chunks and a retry after them leave every count as it was: verify must still
      // see that the buffer moved, and not compare a recount read at two moments with the counters.
      const daemon = await RedisBuffer.open({ url: redisUrl(), keyPrefix });
      const hooked = b as unknown as { run: (name: string, ...a: unknown[]) => Promise<unknown> };
      const run = hooked.run.bind(b);
      let claimed: { seq: number }[] = [];
      hooked.run = async (name, ...a) => {
        if (name === 'verify' && a[0] === 1000) claimed = await daemon.claim(20_000, 1e12);
        const out = await run(name, ...a);
        if (name === 'verify' && a[0] === 1000) {
          await daemon.settle(claimed.map((t) => ({ seq: t.seq, outcome: 'retry' as const, error: { code: 'network', message: 'down', at: new Date().toISOString() } })));
        }
        return out;
      };
      const aba = await b.verify().finally(() => (hooked.run = run));
      await daemon.close();
      assert.ok(claimed.length > 1000);
      assert.deepEqual(aba.problems, [], 'a claim and its retry between two chunks are no problem');
      assert.deepEqual((await b.verify()).notes, undefined, 'quiet again: the recount is compared');

      const first = held[10]!;
      const middle = held[6500]!;
      const last = held[11_999]!;
      await withClient(redisUrl(), async (r) => {
        await r.zadd(`${keyPrefix}state:failed`, middle.seq, String(middle.seq)); // in two sets
        await r.hincrby(`${keyPrefix}counters`, 'bytes_pending', 7); // a counter off
        await r.hset(`${keyPrefix}ids`, 'not-a-held-id', String(last.seq)); // the id index pointing at another record
        await r.zadd(`${keyPrefix}state:pending`, 99_999, '99999'); // a set member past the last seq, with no record
        await r.hdel(`${keyPrefix}ids`, first.transaction_id);
      });
      const v = await b.verify();
      const all = v.problems.join('\n');
      assert.equal(v.ok, false);
      assert.match(all, new RegExp(`seq ${middle.seq} is in both the pending and the failed set|seq ${middle.seq} is in both the failed and the pending set`));
      assert.match(all, /pending: byte counter says/);
      assert.match(all, new RegExp(`the id index maps not-a-held-id to seq ${last.seq}, which is not held`));
      assert.match(all, /seq 99999 is in the pending set but has no record/);
      assert.match(all, new RegExp(`${first.transaction_id} \\(seq ${first.seq}\\) is missing from the id index`));
    } finally {
      await b.close();
    }
  });
});

describe('Redis receipts', () => {
  it(`expire by themselves ${RECEIPT_DAYS} days after compaction, and hold no steps`, async () => {
    const keyPrefix = redisKeyPrefix('receipts');
    const b = await RedisBuffer.open({ url: redisUrl(), keyPrefix });
    try {
      const [t] = await b.append([tx()]);
      await b.settle((await b.claim(10, 1e9)).map((c) => ({ seq: c.seq, outcome: 'applied' as const })));
      assert.equal(await b.compact(t!.seq), 1);
      await withClient(redisUrl(), async (r) => {
        const ttl = await r.ttl(`${keyPrefix}receipt:${t!.transaction_id}`);
        assert.ok(ttl > RECEIPT_DAYS * 86_400 - 60 && ttl <= RECEIPT_DAYS * 86_400, `ttl ${ttl}`);
        const stored = JSON.parse((await r.get(`${keyPrefix}receipt:${t!.transaction_id}`))!);
        assert.equal(stored.steps, undefined);
        assert.equal(await r.exists(`${keyPrefix}tx:${t!.seq}`), 0, 'the transaction itself is gone');
      });
    } finally {
      await b.close();
    }
  });

  // Found in review: three builds of 2026-11-26 kept a receipt as a hash. After an upgrade, reading one
  // answered 503 ("the write buffer is not answering") at GET /api/transactions/{id}, and `opsdb buffer
  // show` failed with WRONGTYPE, for the receipts' 7 days.
  it('left as a hash by an earlier build, read as they are', async () => {
    const keyPrefix = redisKeyPrefix('receipts-hash');
    const b = await RedisBuffer.open({ url: redisUrl(), keyPrefix });
    try {
      const [t] = await b.append([tx()]);
      await b.settle((await b.claim(10, 1e9)).map((c) => ({ seq: c.seq, outcome: 'applied' as const })));
      await b.compact(t!.seq);
      const receipt = await b.receipt(t!.transaction_id);
      assert.equal(receipt?.transaction_id, t!.transaction_id);
      await withClient(redisUrl(), async (r) => {
        const key = `${keyPrefix}receipt:${t!.transaction_id}`;
        const fields = JSON.parse((await r.get(key))!) as Record<string, string>;
        await r.del(key);
        await r.hset(key, fields);
      });
      assert.deepEqual(await b.receipt(t!.transaction_id), receipt);
      assert.equal(await b.receipt('0190a3c4-0000-7000-8000-000000000000'), null);
    } finally {
      await b.close();
    }
  });
});

describe('Redis at maxmemory', () => {
  let dir: TempDir;
  let server: RedisServer;
  before(async () => {
    dir = await tempDir('redis-oom');
    server = await startRedisServer(dir.path);
  });
  after(async () => {
    await server.stop();
    await dir.cleanup();
  });

  it('refuses appends with OOM, but syncing and compaction still run and free it again', async () => {
    const b = await RedisBuffer.open({ url: server.url, keyPrefix: redisKeyPrefix('oom') });
    try {
      await withClient(server.url, async (r) => {
        const used = Number(/used_memory:(\d+)/.exec(await r.info('memory'))![1]);
        await r.config('SET', 'maxmemory-policy', 'noeviction');
        await r.config('SET', 'maxmemory', String(used + 2 * 1024 * 1024));
      });
      let refused: Error | null = null;
      for (let i = 0; i < 2000 && !refused; i++) await b.append([tx([], 'x'.repeat(4000))]).catch((err: Error) => (refused = err));
      assert.ok(refused, 'Redis reached maxmemory');
      assert.match(String((refused as Error).message), /OOM/);
      const held = await b.claim(5000, 1e12);
      assert.ok(held.length > 100);
      await b.settle(held.map((t) => ({ seq: t.seq, outcome: 'applied' as const })));
      assert.equal(await b.compact(held.at(-1)!.seq), held.length, 'compaction runs at maxmemory, and frees it');
      assert.ok(await b.receipt(held[0]!.transaction_id), 'with its receipts');
      await b.append([tx()]);
      const v = await b.verify();
      assert.deepEqual(v.problems, []);
    } finally {
      await withClient(server.url, (r) => r.config('SET', 'maxmemory', '0'));
      await b.close();
    }
  });
});

// Found in review: kept copies (SYNCED_RETENTION_HOURS) on Redis. Expired ones are dropped from the `kept`
// index only by compaction, and none runs during a replay: replayable() took `limit` entries of the index,
// found them expired, and the replay went on past the live ones behind them. And the copies hold Redis
// memory that BUFFER_MAX_BYTES does not count: at maxmemory they must give way to new writes.
describe('Redis kept copies', () => {
  const applyAll = async (b: RedisBuffer) => b.settle((await b.claim(1000, 1e12)).map((t) => ({ seq: t.seq, outcome: 'applied' as const })));

  it('replayable reads past kept entries that expired, to the live ones', async () => {
    const b = await RedisBuffer.open({ url: redisUrl(), keyPrefix: redisKeyPrefix('kept-expired') });
    try {
      const old = await b.append([tx(), tx(), tx()]);
      await applyAll(b);
      await b.compact(old.at(-1)!.seq, 1);
      const live = await b.append([tx(), tx(), tx()]);
      await applyAll(b);
      await b.compact(live.at(-1)!.seq, 3600);
      await b.append([tx(), tx(), tx()]);
      await applyAll(b); // synced, still held
      await new Promise((r) => setTimeout(r, 2100)); // the first three expire; no compaction runs
      assert.deepEqual((await b.replayable(0, 3)).map((t) => t.seq), live.map((t) => t.seq));
    } finally {
      await b.close();
    }
  });

  it('give way when Redis refuses a write for maxmemory, and compaction keeps none for a while', async () => {
    const dir = await tempDir('redis-kept-oom');
    const server = await startRedisServer(dir.path);
    const keyPrefix = redisKeyPrefix('kept-oom');
    const b = await RedisBuffer.open({ url: server.url, keyPrefix });
    try {
      const synced = await b.append(Array.from({ length: 300 }, () => tx([], 'x'.repeat(4000))));
      await applyAll(b);
      await b.compact(synced.at(-1)!.seq, 3600);
      assert.equal((await b.replayable(0, 1000)).length, 300);
      await withClient(server.url, async (r) => {
        const used = Number(/used_memory:(\d+)/.exec(await r.info('memory'))![1]);
        await r.config('SET', 'maxmemory-policy', 'noeviction');
        await r.config('SET', 'maxmemory', String(used + 256 * 1024));
      });
      let refused: Error | null = null;
      for (let i = 0; i < 2000 && !refused; i++) await b.append([tx([], 'x'.repeat(4000))]).catch((err: Error) => (refused = err));
      assert.match(String((refused as Error | null)?.message), /OOM/, 'Redis reached maxmemory');
      assert.deepEqual(await b.replayable(0, 1000), [], 'the kept copies went');
      assert.deepEqual(await withClient(server.url, (r) => r.keys(`${keyPrefix}kept*`)), []);
      await b.append([tx()]); // and writes fit again
      const more = await b.claim(5000, 1e12);
      await b.settle(more.map((t) => ({ seq: t.seq, outcome: 'applied' as const })));
      await b.compact(more.at(-1)!.seq, 3600);
      assert.deepEqual(await b.replayable(0, 1000), [], 'compaction keeps none while Redis is short of memory');
    } finally {
      await b.close();
      await server.stop();
      await dir.cleanup();
    }
  });
});

// Found in review: the lease kept a daemon whose lease another took (it was frozen past the lease) from
// taking writes, but its sync engine went on claiming from the shared backlog beside the other's: two
// engines sending one site's backlog at once, so a child could reach central before its parent.
describe('Redis buffer lease and sync', () => {
  it('a daemon claims only while it holds the lease; a caller without one (the CLI) is not held', async () => {
    const keyPrefix = redisKeyPrefix('lease-claim');
    const b = await RedisBuffer.open({ url: redisUrl(), keyPrefix, daemon: { who: 'host-a /var/lib/a' } });
    const cli = await RedisBuffer.open({ url: redisUrl(), keyPrefix });
    try {
      await b.append([tx(), tx()]);
      assert.equal((await b.claim(1, 1e9)).length, 1, 'its own lease: claims');
      await withClient(redisUrl(), (r) => r.set(`${keyPrefix}daemon`, 'host-b /var/lib/b pid 4242', 'PX', 15_000));
      await assert.rejects(b.claim(10, 1e9), (err: Error) => {
        assert.ok(err instanceof BufferLeaseLostError, err.constructor.name);
        assert.match(err.message, /another edge daemon holds the Redis buffer's lease \(host-b \/var\/lib\/b pid 4242\): this one does not sync from it/);
        return true;
      });
      assert.equal((await b.stats()).in_flight, 1, 'nothing claimed by the refused call');
      // Expired, and not renewed yet (its renewal timer stopped here, as in a process frozen past the lease).
      clearInterval((b as unknown as { renewal: NodeJS.Timeout }).renewal);
      await withClient(redisUrl(), (r) => r.del(`${keyPrefix}daemon`));
      await assert.rejects(b.claim(10, 1e9), /lease on the Redis buffer expired/);
      assert.equal((await cli.claim(10, 1e9)).length, 1, 'the CLI holds no lease and is not asked for one');
    } finally {
      await cli.close();
      await b.close();
    }
  });
});
