// Checks that the test harness (scripts/test.mjs + test/support) gives tests
// what they rely on: durable PostgreSQL and Redis, isolated databases, extra
// Redis servers, free ports.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { Client } from 'pg';
import { Redis } from 'ioredis';
import { chromium } from 'playwright-core';
import {
  chromiumPath,
  createTestDatabase,
  pgAdminUrl,
  pgBinDir,
  pidAlive,
  redisKeyPrefix,
  redisUrl,
  startRedisServer,
  tempDir,
} from './support/services.js';
import { freePort } from './support/ports.js';

async function withPg<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function withRedis<T>(url: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await r.connect();
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

describe('harness: environment', () => {
  it('exports the service and tool locations', () => {
    assert.match(pgAdminUrl(), /^postgres:\/\//);
    assert.match(redisUrl(), /^redis:\/\//);
    assert.ok(existsSync(`${pgBinDir()}/initdb`), 'initdb in OPSDB_TEST_PG_BINDIR');
    assert.ok(existsSync(process.env.OPSDB_TEST_REDIS_SERVER ?? ''), 'OPSDB_TEST_REDIS_SERVER exists');
    assert.ok(existsSync(chromiumPath()), 'OPSDB_TEST_CHROMIUM exists');
    assert.ok(existsSync(process.env.OPSDB_TEST_TMP ?? ''), 'OPSDB_TEST_TMP exists');
  });
});

describe('harness: PostgreSQL', () => {
  it('is PostgreSQL 15 or newer with fsync on', async () => {
    await withPg(pgAdminUrl(), async (c) => {
      const num = Number((await c.query('SHOW server_version_num')).rows[0].server_version_num);
      assert.ok(num >= 150000, `server_version_num ${num}`);
      const { rows } = await c.query('SELECT version() AS v');
      assert.match(rows[0].v, /^PostgreSQL (\d+)/);
      assert.ok(Number(/^PostgreSQL (\d+)/.exec(rows[0].v)![1]) >= 15);
      assert.equal((await c.query('SHOW fsync')).rows[0].fsync, 'on');
      assert.equal((await c.query('SHOW synchronous_commit')).rows[0].synchronous_commit, 'on');
    });
  });

  it('createTestDatabase gives an isolated database that can be dropped', async () => {
    const a = await createTestDatabase('harness a');
    const b = await createTestDatabase('harness-b');
    try {
      assert.match(a.name, /^t_harness_a_[0-9a-f]+$/);
      assert.notEqual(a.url, b.url);
      await withPg(a.url, async (c) => {
        assert.equal((await c.query('SELECT current_database() AS d')).rows[0].d, a.name);
        await c.query('CREATE TABLE only_in_a (x int)');
        await c.query('INSERT INTO only_in_a VALUES (1)');
      });
      await withPg(b.url, async (c) => {
        const { rows } = await c.query("SELECT to_regclass('only_in_a') AS t");
        assert.equal(rows[0].t, null, 'table from database a is not visible in b');
      });
      // drop() must work even with a connection still open.
      const holder = new Client({ connectionString: a.url });
      holder.on('error', () => {}); // it will be terminated
      await holder.connect();
      await a.drop();
      await holder.end().catch(() => {});
      await a.drop(); // idempotent
    } finally {
      await b.drop();
    }
    await withPg(pgAdminUrl(), async (c) => {
      const { rows } = await c.query('SELECT datname FROM pg_database WHERE datname = ANY($1)', [[a.name, b.name]]);
      assert.deepEqual(rows, []);
    });
  });
});

describe('harness: Redis', () => {
  it('is durable: appendonly yes, appendfsync always', async () => {
    await withRedis(redisUrl(), async (r) => {
      assert.deepEqual(await r.config('GET', 'appendonly'), ['appendonly', 'yes']);
      assert.deepEqual(await r.config('GET', 'appendfsync'), ['appendfsync', 'always']);
      const p = redisKeyPrefix('harness');
      assert.match(p, /^t:harness:[0-9a-f]+:$/);
      assert.notEqual(p, redisKeyPrefix('harness'));
      await r.set(`${p}k`, 'v');
      assert.equal(await r.get(`${p}k`), 'v');
      await r.del(`${p}k`);
    });
  });

  it('startRedisServer starts, restarts with data and stops an extra server', async () => {
    const dir = await tempDir('harness-redis');
    try {
      const s1 = await startRedisServer(dir.path);
      assert.notEqual(s1.url, redisUrl());
      assert.ok(pidAlive(s1.pid));
      await withRedis(s1.url, async (r) => {
        assert.equal(await r.ping(), 'PONG');
        assert.deepEqual(await r.config('GET', 'appendfsync'), ['appendfsync', 'always']);
        await r.set('survives', 'crash');
      });
      await s1.kill(); // crash: the AOF (fsync always) must still have the write
      assert.equal(pidAlive(s1.pid), false, 'pid gone after kill()');

      const s2 = await startRedisServer(dir.path, { port: s1.port });
      try {
        assert.equal(s2.url, s1.url);
        await withRedis(s2.url, async (r) => assert.equal(await r.get('survives'), 'crash'));
      } finally {
        await s2.stop();
      }
      assert.equal(pidAlive(s2.pid), false, 'pid gone after stop()');
    } finally {
      await dir.cleanup();
    }
    assert.equal(existsSync(dir.path), false);
  });
});

describe('harness: Chromium', () => {
  it('launches headless via playwright-core', async () => {
    const browser = await chromium.launch({ executablePath: chromiumPath(), headless: true, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage();
      await page.setContent('<p id="x">ok</p>');
      assert.equal(await page.textContent('#x'), 'ok');
    } finally {
      await browser.close();
    }
  });
});

describe('harness: ports', () => {
  it('freePort returns a bindable loopback port', async () => {
    const port = await freePort();
    assert.ok(Number.isInteger(port) && port > 0 && port < 65536);
    const srv = net.createServer();
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, '127.0.0.1', () => resolve());
    });
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  });
});
