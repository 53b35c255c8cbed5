// An edge sends its next batch while central still applies the one before it
// (SYNC_PIPELINE=2). The batch names the one it follows (`after_batch`), and
// central applies it only after that one has committed — whatever order the
// two requests arrive in.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { client, type Client } from '../support/http.js';
import { uuidv7 } from '../../src/lib/uuid.js';
import { applyBatch } from '../../src/central/sync.js';
import { createLogger } from '../../src/lib/logger.js';
import { AppError } from '../../src/lib/errors.js';

function startTx(site: string, seq: number) {
  const id = uuidv7();
  return {
    transaction_id: uuidv7(), site, seq, created_at: new Date().toISOString(), endpoint: 'POST /executed_obs_units/start',
    steps: [{ step_id: 'obs', op: 'create' as const, table: 'executed_obs_unit' as const, id,
      data: { id, obs_unit_id: 1, site, status: 'running', start_time: '2025-01-01T00:00:00.000Z' } }],
  };
}

describe('batches sent early (after_batch)', () => {
  let c: TestCentral;
  let edge: Client;
  const applied = async (site: string) =>
    (await c.db.query(`SELECT seq FROM applied_transaction WHERE site = $1 ORDER BY applied_at, seq`, [site])).rows.map((r) => Number(r.seq));

  before(async () => {
    c = await startTestCentral('batch-order');
    edge = client(c.url, (await c.admin.post('/api/sites/', { body: { name: 'early' } })).body.token);
    await c.admin.post('/api/sites/', { body: { name: 'lonely' } });
  });
  after(() => c.stop());

  it('a batch that arrives before the one it follows waits for it, then applies after it', async () => {
    const first = { site: 'early', batch_id: uuidv7(), after_batch: null, transactions: [1, 2, 3].map((s) => startTx('early', s)) };
    const second = { site: 'early', batch_id: uuidv7(), after_batch: first.batch_id, transactions: [4, 5, 6].map((s) => startTx('early', s)) };
    const late = edge.post('/api/sync/transactions', { body: second });
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await applied('early'), [], 'the early batch waits; nothing of it is applied');

    const a = await edge.post('/api/sync/transactions', { body: first });
    const b = await late;
    assert.equal(a.status, 200, a.text);
    assert.equal(b.status, 200, b.text);
    assert.ok(b.body.results.every((r: { result: string }) => r.result === 'applied'), b.text);
    assert.ok(b.body.position > a.body.position, `positions ${a.body.position} then ${b.body.position}`);
    assert.deepEqual(await applied('early'), [1, 2, 3, 4, 5, 6]);

    // A batch that follows one central has committed goes straight through.
    const third = { site: 'early', batch_id: uuidv7(), after_batch: second.batch_id, transactions: [startTx('early', 7)] };
    const r = await edge.post('/api/sync/transactions', { body: third });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(await applied('early'), [1, 2, 3, 4, 5, 6, 7]);
  });

  it('a batch whose predecessor never commits is refused with 409 out_of_order and writes nothing', async () => {
    const { rows } = await c.db.query(`SELECT id FROM "user" WHERE site_name = 'lonely'`);
    const batch = { site: 'lonely', batch_id: uuidv7(), after_batch: randomUUID(), transactions: [startTx('lonely', 1)] };
    const started = Date.now();
    await assert.rejects(
      applyBatch(c.db, batch, rows[0].id, createLogger('silent'), 300),
      (err: unknown) => err instanceof AppError && err.status === 409 && err.code === 'out_of_order',
    );
    assert.ok(Date.now() - started >= 300, 'it waited for the predecessor first');
    assert.deepEqual(await applied('lonely'), []);
    assert.equal((await c.db.query(`SELECT count(*)::int AS n FROM executed_obs_unit WHERE site = 'lonely'`)).rows[0].n, 0);
    // Sent again on its own (no after_batch), the same transactions apply.
    const alone = await applyBatch(c.db, { ...batch, after_batch: null }, rows[0].id, createLogger('silent'));
    assert.deepEqual(alone.results.map((r) => r.result), ['applied']);
  });

  it('refuses an after_batch that is not a UUID with 422, writing nothing', async () => {
    const r = await edge.post('/api/sync/transactions', { body: { site: 'early', after_batch: 'x', transactions: [startTx('early', 8)] } });
    assert.equal(r.status, 422, r.text);
    assert.deepEqual(await applied('early'), [1, 2, 3, 4, 5, 6, 7]);
  });

  it("checks the edge's replica position when the batch applies, not when it arrives: central may go back in between", async () => {
    const site = client(c.url, (await c.admin.post('/api/sites/', { body: { name: 'restored' } })).body.token);
    const page = (await site.get('/api/sync/changes?since=0&max_rows=50000')).body;
    const header = { 'x-opsdb-replica': `${page.position} ${page.position_id}` };
    const first = { site: 'restored', batch_id: uuidv7(), after_batch: null, transactions: [startTx('restored', 1)] };
    const second = { site: 'restored', batch_id: uuidv7(), after_batch: first.batch_id, transactions: [startTx('restored', 2)] };
    const late = site.post('/api/sync/transactions', { body: second, headers: header });
    await new Promise((r) => setTimeout(r, 300));
    // While the second batch waits for the first, central's database goes back: the position the edge
    // names now belongs to another transaction, as after a restore that gave it out again.
    await c.db.query(`UPDATE feed_tx SET committed_at = committed_at - interval '1 second' WHERE pos = $1`, [page.position]);
    const a = await site.post('/api/sync/transactions', { body: first });
    assert.equal(a.status, 200, a.text);
    const b = await late;
    assert.equal(b.status, 409, b.text);
    assert.equal(b.body.error.code, 'central_went_back');
    assert.deepEqual(await applied('restored'), [1], 'nothing of the refused batch was applied');
  });
});
