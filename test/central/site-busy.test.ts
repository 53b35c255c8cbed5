// Found in review: one site's batch blocked at central (a row lock held elsewhere, or a batch slower
// than its edge's timeout) held that site's row. Its edge's resends and pulls then queued behind it at
// central, each holding a pooled connection, and went on waiting after the edge had given up on them.
// Once they filled the pool, every other site's batches and central's /health failed with 503.
// Now a batch waits for its site's row without a connection (and stops waiting when its client is
// gone), pulls never wait for it, and a row lock is waited for at most lock_timeout (then 503).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { client, type Client } from '../support/http.js';
import { uuidv7 } from '../../src/lib/uuid.js';

const at = () => new Date().toISOString();
const startTx = (site: string, seq: number, id = uuidv7()) => ({
  transaction_id: uuidv7(), site, seq, created_at: at(), endpoint: 'POST /executed_obs_units/start',
  steps: [{ step_id: 'obs', op: 'create', table: 'executed_obs_unit', id, data: { id, obs_unit_id: 1, site, status: 'running', start_time: '2025-01-01T00:00:00.000Z' } }],
});
const finishTx = (site: string, seq: number, obs: string) => ({
  transaction_id: uuidv7(), site, seq, created_at: at(), endpoint: 'PUT /executed_obs_units/{id}/finish',
  steps: [{ step_id: 'finish', op: 'update', table: 'executed_obs_unit', id: obs, data: { status: 'success' } }],
});

describe('one site\'s blocked batch', () => {
  let c: TestCentral;
  let a: Client;
  let b: Client;
  let tokenA: string;
  before(async () => {
    // A small pool, as a busy central would have it: the abandoned requests of one site must not fill it.
    c = await startTestCentral('site-busy', { LOG_LEVEL: 'silent', DATABASE_POOL_MAX: 4 });
    tokenA = (await c.admin.post('/api/sites/', { body: { name: 'busy-a' } })).body.token;
    a = client(c.url, tokenA);
    b = client(c.url, (await c.admin.post('/api/sites/', { body: { name: 'busy-b' } })).body.token);
  });
  after(() => c.stop());

  it('holds up no other site, and is answered 503 once it has waited lock_timeout for a row', { timeout: 60_000 }, async () => {
    const obs = uuidv7();
    assert.equal((await a.post('/api/sync/transactions', { body: { site: 'busy-a', transactions: [startTx('busy-a', 1, obs)] } })).status, 200);
    // Something else at central holds the observation's row.
    const holder = new pg.Client({ connectionString: c.databaseUrl });
    await holder.connect();
    stopHolder = async () => {
      await holder.query('ROLLBACK').catch(() => {});
      await holder.end().catch(() => {});
    };
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM executed_obs_unit WHERE id = $1 FOR UPDATE', [obs]);

    const batch = { site: 'busy-a', transactions: [finishTx('busy-a', 2, obs)] };
    const send = (path: string, init: RequestInit, ms: number) =>
      fetch(c.url + path, { ...init, headers: { authorization: `Bearer ${tokenA}`, 'content-type': 'application/json' }, signal: AbortSignal.timeout(ms) })
        .then(async (r) => ({ status: r.status, body: await r.json().catch(() => null) }), (e: Error) => ({ status: 0, body: e.name }));
    // The batch itself, waited for; then its edge's resends and pulls, each given up after 300 ms.
    const first = send('/api/sync/transactions', { method: 'POST', body: JSON.stringify(batch) }, 30_000);
    const abandoned: Promise<unknown>[] = [];
    for (let i = 0; i < 8; i++) abandoned.push(send('/api/sync/transactions', { method: 'POST', body: JSON.stringify({ ...batch, batch_id: uuidv7() }) }, 300));
    const pulls = [];
    for (let i = 0; i < 4; i++) pulls.push(send('/api/sync/changes?since=0', { method: 'GET' }, 10_000));
    await Promise.all(abandoned);

    // Pulls do not wait for the batch; other sites and /health are not held up.
    for (const p of await Promise.all(pulls)) assert.equal(p.status, 200, JSON.stringify(p.body));
    const rb = await b.post('/api/sync/transactions', { body: { site: 'busy-b', transactions: [startTx('busy-b', 1)] } });
    assert.equal(rb.status, 200, rb.text);
    assert.equal((await fetch(`${c.url}/health`)).status, 200);

    // The blocked batch gives up on the row lock: 503, nothing written, and the edge sends it again later.
    const r = await first;
    assert.equal(r.status, 503, JSON.stringify(r.body));
    assert.match((r.body as { error: { message: string } }).error.message, /^The database is busy \(.*lock.*\); nothing was written, retry shortly\./);
    await stopHolder();
    const again = await a.post('/api/sync/transactions', { body: batch });
    assert.equal(again.status, 200, again.text);
    assert.deepEqual(again.body.results.map((x: { result: string }) => x.result), ['applied']);
    assert.equal((await c.db.query('SELECT status FROM executed_obs_unit WHERE id = $1', [obs])).rows[0].status, 'success');
  });

  let stopHolder = async () => {};
  after(() => stopHolder());
});
