// A pull asks central for the next page of the change feed as soon as a page
// arrives, before applying it, so on the site's long link the round trip
// overlaps the local work. The real engine, a real central and a real SQLite
// replica; the client and the replica are wrapped only to record the order
// in which pages are asked for and applied.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { until } from '../support/daemon.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { httpClient, type CentralClient } from '../../src/sync/transport.js';
import { SqliteBuffer } from '../../src/edge/buffer/sqlite.js';
import { LocalStore } from '../../src/edge/local-store.js';
import type { ReplicaSink } from '../../src/sync/replica.js';
import { createLogger } from '../../src/lib/logger.js';

describe('pulling the change feed', () => {
  let central: TestCentral;
  let dir: string;
  before(async () => {
    central = await startTestCentral('pull-prefetch');
    dir = mkdtempSync(join(tmpdir(), 'opsdb-pull-prefetch-'));
  });
  after(async () => {
    await central?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('asks for the next page before applying the one it has, and applies every page in order', async () => {
    const token = (await central.admin.post('/api/sites/', { body: { name: 'prefetch' } })).body.token as string;
    // Four positions of 3,000 rows each: pages of about 5,000 rows (an idle engine's) take one position each.
    for (let p = 0; p < 4; p++) {
      await central.db.query(`INSERT INTO observing_program (name) SELECT 'prefetch-' || $1 || '-' || g FROM generate_series(1, 3000) g`, [p]);
    }
    const head = Number((await central.db.query('SELECT pos FROM feed_position WHERE id = 1')).rows[0].pos);

    const events: string[] = [];
    const stop = new AbortController();
    const http = httpClient(central.url, 10_000, stop.signal);
    const client: CentralClient = {
      ...http,
      get: (path, tok, headers) => {
        const since = /since=(\d+)/.exec(path)?.[1];
        if (since !== undefined) events.push(`get ${since}`);
        return http.get(path, tok, headers);
      },
    };
    const local = new LocalStore(join(dir, 'local.db'));
    const replica: ReplicaSink = {
      position: () => local.position(),
      originSeqs: (changes) => local.originSeqs(changes),
      apply: (changes, position, keep, origins) => {
        local.apply(changes, position, keep, origins);
        events.push(`apply ${position}`);
      },
    };
    const buffer = new SqliteBuffer(join(dir, 'buffer.db'));
    const engine = new SyncEngine({
      site: 'prefetch', buffer, client, replica, token: () => token, log: createLogger('silent'),
      batchSize: 100, batchMaxBytes: 1 << 20, intervalMs: 60_000, retryBaseMs: 50, retryMaxMs: 500,
    });
    try {
      engine.start();
      await until('the replica at the head of the feed', async () => local.position() >= head);
    } finally {
      stop.abort();
      await engine.stop();
      await buffer.close();
      local.close();
    }

    const applied = events.filter((e) => e.startsWith('apply ')).map((e) => Number(e.slice(6)));
    assert.ok(applied.length >= 4, `at least one page per position: ${events.join(', ')}`);
    assert.deepEqual(applied, [...applied].sort((a, b) => a - b), 'pages applied in feed order');
    // Every page but the last: the request for the page after it went out before it was applied.
    for (const pos of applied.slice(0, -1)) {
      const asked = events.indexOf(`get ${pos}`);
      assert.ok(asked >= 0 && asked < events.indexOf(`apply ${pos}`), `page after ${pos} asked for before ${pos} was applied: ${events.join(', ')}`);
    }
  });
});
