// The edge limits a request body to MAX_BODY_BYTES, not the transaction it
// builds from it. A bulk write just under the limit grows (each row gets an id
// and the observation id) past central's MAX_BODY_BYTES — the same default —
// so central answers 413 to a batch of that one transaction and the engine
// marks it failed: an acknowledged write that can never reach central (retry
// gives the same 413), instead of a 413 to the client (SPEC §2.2, §2.8).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { startTestEdge, type TestEdge } from '../support/edge.js';
import { until } from '../support/daemon.js';

describe('a write the edge takes but central never will', () => {
  let central: TestCentral;
  let edge: TestEdge;
  before(async () => {
    central = await startTestCentral('review-big');
    const token = (await central.admin.post('/api/sites/', { body: { name: 'big' } })).body.token;
    edge = await startTestEdge('review-big', {
      overrides: { SITE_NAME: 'big', CENTRAL_URL: central.url, SITE_TOKEN: token, SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 200 },
    });
  });
  after(async () => {
    await edge?.stop();
    await central?.stop();
  });

  it('is either refused at the edge or applied at central', async () => {
    const limit = edge.config.maxBodyBytes;
    assert.equal(limit, central.config.maxBodyBytes, 'same MAX_BODY_BYTES at both sites');
    const obs = await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    assert.equal(obs.status, 201, obs.text);

    const files = Array.from({ length: 10_000 }, (_, i) => ({
      name: `f${i}`, path: `/data/${String(i).padStart(5, '0')}/${'p'.repeat(700)}`, size: i, checksum: 'c', file_type: 'fits',
    }));
    const raw = JSON.stringify({ executed_obs_unit_id: obs.body.id, files });
    assert.ok(Buffer.byteLength(raw) < limit, `request ${Buffer.byteLength(raw)} < ${limit}`);
    const w = await edge.admin.post('/raw_data_files/bulk', { raw });
    if (w.status >= 400 && w.status < 500) return; // refused up front: fine
    assert.equal(w.status, 201, w.text.slice(0, 300));

    // Settled: failed at the edge, or applied at central (the edge compacts a synced one away, then 404s).
    const t = await until('the bulk write to settle', async () => {
      const e = await edge.admin.get(`/api/transactions/${w.body.transaction_id}`);
      if (e.body.state === 'failed') return e.body;
      const c = await central.admin.get(`/api/transactions/${w.body.transaction_id}`);
      return c.body.state === 'applied' && c.body;
    }, 60_000);
    assert.equal(t.state, 'applied', `accepted with 201, then ${t.state}: ${JSON.stringify(t.last_error)}`);
  });
});
