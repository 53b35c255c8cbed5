// GET /api/transactions/{id} at the edge after the transaction synced and the buffer compacted it
// away: SPEC §4 says the call gives state, attempts, last error, timestamps and central's result.
// It answered 404 about a second after a write synced, so a script polling for `synced` rarely saw it.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { startTestEdge, type TestEdge } from '../support/edge.js';
import { until } from '../support/daemon.js';
import { runCli } from '../support/cli.js';

describe('a synced and compacted transaction, asked of the edge', () => {
  let central: TestCentral;
  let edge: TestEdge;
  before(async () => {
    central = await startTestCentral('receipts', { LOG_LEVEL: 'silent' });
    const token = (await central.admin.post('/api/sites/', { body: { name: 'receipts' } })).body.token;
    edge = await startTestEdge('receipts', {
      overrides: { SITE_NAME: 'receipts', CENTRAL_URL: central.url, SITE_TOKEN: token, SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 200, LOG_LEVEL: 'silent' },
    });
  });
  after(async () => {
    await edge?.stop();
    await central?.stop();
  });

  it('still answers: synced, with central\'s result, when it was compacted, and no steps', async () => {
    const w = await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    assert.equal(w.status, 201, w.text);
    const id = w.body.transaction_id as string;
    await until('the transaction compacted away', async () => (await edge.running.buffer.get(id)) === null && (await edge.running.buffer.stats()).applied_total === 1, 15_000);

    const r = await edge.admin.get(`/api/transactions/${id}`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.transaction_id, id);
    assert.equal(r.body.state, 'synced');
    assert.equal(r.body.endpoint, 'POST /executed_obs_units/start');
    assert.equal(r.body.attempts, 1);
    assert.equal(r.body.central_result.result, 'applied');
    assert.equal(typeof r.body.central_result.position, 'number');
    assert.ok(r.body.applied_at, 'applied_at');
    assert.ok(Date.parse(r.body.compacted_at) >= Date.parse(r.body.applied_at), 'compacted after it was applied');
    assert.equal(r.body.steps, undefined);
    // The same at central, where it is `applied`.
    assert.equal((await central.admin.get(`/api/transactions/${id}`)).body.state, 'applied');

    const show = await runCli(['buffer', 'show', id], { SITE_TYPE: 'secondary', SITE_NAME: 'receipts', DATA_DIR: edge.dataDir });
    assert.equal(show.code, 0, show.stderr);
    const shown = JSON.parse(show.stdout);
    assert.equal(shown.state, 'synced');
    assert.equal(shown.steps, null);
    assert.equal(shown.compacted_at, r.body.compacted_at);
  });
});
