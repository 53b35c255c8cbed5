// Found by an adversarial review: a write holding a lone UTF-16 surrogate (the escape \ud800) was
// answered 201 at the edge and buffered, but central refused every batch holding it as a whole
// (422: PostgreSQL cannot take it as JSON). The engine treated that 422 as transient, resent the
// same batch forever, and every later transaction of the site waited behind it, while the bad one
// stayed `pending`, where it could not even be discarded (SPEC §2.3, §2.4, §2.8).
// Now the edge refuses such text at input (422, nothing buffered), and when central refuses a batch
// because of one transaction (a 422 whose details name `transactions.<i>…`), that one fails alone and
// the rest goes on. A 400/422 that names no transaction (a proxy, a field of the batch itself) stays
// what it was: retried with backoff, nothing dead-lettered.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { startTestEdge, type TestEdge } from '../support/edge.js';
import { until } from '../support/daemon.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { SqliteBuffer } from '../../src/edge/buffer/sqlite.js';
import { uuidv7 } from '../../src/lib/uuid.js';

const SITE = 'surrogate';

/** A start-observation transaction as the edge drafts it; `packageName` goes into a package made with it. */
function startTx(packageName: string) {
  const obs = randomUUID();
  const pkg = randomUUID();
  return {
    transaction_id: uuidv7(), site: SITE, created_at: new Date().toISOString(), endpoint: 'POST /api/demo/create-observation', depends_on: [],
    steps: [
      { step_id: 'obs', op: 'create' as const, table: 'executed_obs_unit' as const, id: obs, data: { id: obs, obs_unit_id: 1, site: SITE, status: 'running', start_time: new Date().toISOString() } },
      { step_id: 'pkg', op: 'create' as const, table: 'raw_data_package' as const, id: pkg, data: { id: pkg, name: packageName, executed_obs_unit_id: obs, state: 'open' } },
    ],
  };
}

describe('a transaction central refuses with the whole batch', { timeout: 60_000 }, () => {
  let central: TestCentral;
  let edge: TestEdge;
  let dataDir: string;
  let overrides: Record<string, string | number>;
  before(async () => {
    central = await startTestCentral('batch-refused', { LOG_LEVEL: 'silent' });
    const token = (await central.admin.post('/api/sites/', { body: { name: SITE } })).body.token;
    overrides = { SITE_NAME: SITE, CENTRAL_URL: central.url, SITE_TOKEN: token, SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 200 };
    edge = await startTestEdge('batch-refused', { seed: false, overrides });
    dataDir = edge.dataDir;
  });
  after(async () => {
    await edge?.stop();
    await central?.stop();
  });

  it('is refused at the edge when it comes in over HTTP: 422, nothing buffered', async () => {
    const before = (await edge.anonymous.get('/buffer-stats')).body.accepted_total;
    const raw = '{"obs_data":{"obs_unit_id":1,"start_time":"2025-01-01T00:00:00Z","package_name":"bad\\ud800name"},"raw_files":[]}';
    const r = await edge.admin.post('/api/demo/create-observation', { raw });
    assert.equal(r.status, 422, r.text);
    assert.equal(r.body.error.message, 'Invalid body: obs_data.package_name: text must be valid Unicode (a lone UTF-16 surrogate was sent)');
    assert.equal((await edge.anonymous.get('/buffer-stats')).body.accepted_total, before);
  });

  it('already in a buffer (an older edge took it): it fails alone, and the writes after it reach central', async () => {
    await edge.stop();
    const bad = startTx('bad\ud800name');
    const good = [startTx('fine 1'), startTx('fine 2'), startTx('fine 3')];
    const buffer = new SqliteBuffer(join(dataDir, 'buffer.db'));
    await buffer.append([startTx('fine 0'), bad, ...good]);
    await buffer.close();
    edge = await startTestEdge('batch-refused', { seed: false, dataDir, overrides });

    for (const t of good) {
      await until(`transaction ${t.transaction_id} applied at central`, async () => (await central.admin.get(`/api/transactions/${t.transaction_id}`)).body.state === 'applied', 15_000);
    }
    const failed = (await edge.admin.get(`/api/transactions/${bad.transaction_id}`)).body;
    assert.equal(failed.state, 'failed');
    assert.equal(failed.last_error.code, 'validation_error');
    assert.match(failed.last_error.message, /lone UTF-16 surrogate/);
    assert.equal((await central.admin.get(`/api/transactions/${bad.transaction_id}`)).status, 404, 'nothing of it reached central');
    for (const t of good) {
      const sibling = (await edge.admin.get(`/api/transactions/${t.transaction_id}`)).body;
      assert.equal(sibling.state, 'synced');
      assert.notEqual(sibling.last_error?.code, 'validation_error', 'a sibling is not blamed for the refused one');
    }
    const stats = (await edge.anonymous.get('/buffer-stats')).body;
    assert.equal(stats.failed_transactions, 1);
    // Failed, not stuck: the operator can discard it.
    const d = await edge.admin.post(`/api/buffer/failed/${bad.transaction_id}/discard`, { body: { reason: 'cannot be stored at central' } });
    assert.equal(d.status, 200, d.text);
  });

  it('a 400 or 422 that names no transaction (a proxy in front of central) dead-letters nothing', async () => {
    for (const status of [400, 422]) {
      // A middlebox in front of central that answers everything itself, with a body that is not central's.
      const proxy = await FaultProxy.start(Number(new URL(central.url).port), {
        respond: { status, body: '<html><body>400 Bad Request: The plain HTTP request was sent to HTTPS port</body></html>', headers: { 'content-type': 'text/html' } },
      });
      try {
        const lone = await startTestEdge('batch-refused-proxy', { seed: false, overrides: { ...overrides, CENTRAL_URL: proxy.url } });
        try {
          for (let i = 0; i < 5; i++) assert.equal((await lone.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).status, 201);
          await until(`several batches answered ${status}`, async () => proxy.count('/api/sync/transactions', 'POST') >= 3, 10_000);
          const stats = (await lone.anonymous.get('/buffer-stats')).body;
          assert.equal(stats.failed_transactions, 0, `HTTP ${status} from a proxy dead-letters nothing`);
          assert.equal(stats.pending_transactions + stats.in_flight_transactions, 5);
          assert.equal(stats.last_error.code, `http_${status}`, 'and the operator sees why nothing moves');
          assert.ok(stats.consecutive_failures >= 2, 'retried with backoff, counted');
        } finally {
          await lone.stop();
        }
      } finally {
        await proxy.close();
      }
    }
  });
});
