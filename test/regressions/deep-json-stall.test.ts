// A free-form JSON value nested a few thousand levels deep passes every check
// at the edge (findNul, zod, JSON.stringify in the buffer) and is answered
// 200, but central's canonicalJson (payloadHash in prepareTransaction) blows
// the stack on it. prepareTransaction rethrows non-AppErrors, so the whole
// sync batch is a 500: transient, retried forever, and every later
// transaction of the site waits behind it (SPEC §2.3, §2.4, §2.8).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { startTestEdge, type TestEdge } from '../support/edge.js';
import { client } from '../support/http.js';
import { until } from '../support/daemon.js';

describe('deeply nested preferences', () => {
  let central: TestCentral;
  let edge: TestEdge;
  before(async () => {
    central = await startTestCentral('review-deep', { LOG_LEVEL: process.env.REVIEW_LOG ?? 'silent' });
    const token = (await central.admin.post('/api/sites/', { body: { name: 'deep' } })).body.token;
    edge = await startTestEdge('review-deep', {
      seed: false,
      overrides: { SITE_NAME: 'deep', CENTRAL_URL: central.url, SITE_TOKEN: token, SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 200, LOG_LEVEL: process.env.REVIEW_LOG ?? 'silent' },
    });
  });
  after(async () => {
    await edge?.stop();
    await central?.stop();
  });

  it('a too-deep body is a 4xx, never a 500', async () => {
    const depth = 20_000;
    const raw = `{"user_id":1,"preferences":{"x":${'['.repeat(depth)}${']'.repeat(depth)}}}`;
    const r = await edge.admin.post('/api/demo/update-user-preferences', { raw });
    assert.ok(r.status >= 400 && r.status < 500, `got ${r.status} ${r.text.slice(0, 200)}`);
  });

  it('is refused with a 4xx at the edge, or at least never stalls unrelated writes', async () => {
    const viewer = await central.as(['viewer'], 'deep-viewer');
    const atEdge = client(edge.url, viewer.token);
    await until('the viewer token at the edge', async () => (await atEdge.get('/auth/me')).status === 200);

    // The deepest value the edge takes (its own recursive findNul caps it); central's canonicalJson
    // uses about two stack frames per level, so it gives up at roughly half that depth.
    const nested = (depth: number) => `{"user_id":${viewer.userId},"preferences":{"x":${'['.repeat(depth)}${']'.repeat(depth)}}}`;
    let bad = await atEdge.post('/api/demo/update-user-preferences', { raw: nested(1000) });
    for (const depth of [5000, 4000, 3500, 3000, 2500, 2000, 1500]) {
      const r = await atEdge.post('/api/demo/update-user-preferences', { raw: nested(depth) });
      if (r.status === 200) {
        bad = r;
        break;
      }
    }

    // An unrelated, valid observation written after it.
    const ok = await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    assert.equal(ok.status, 201, ok.text);
    let state = '';
    try {
      // Asked of central: once synced and pulled back, the edge compacts the transaction away (404 there).
      await until('the unrelated observation to reach central', async () => {
        const t = await central.admin.get(`/api/transactions/${ok.body.transaction_id}`);
        state = t.body.state ?? `${t.status} ${t.text.slice(0, 200)}`;
        return state === 'applied';
      }, 8000);
    } catch {
      const stats = (await edge.anonymous.get('/buffer-stats')).body;
      assert.fail(
        `bad write answered ${bad.status}; the unrelated write is "${state}" at central after 8 s; ` +
          `engine last_error=${JSON.stringify(stats.last_error)}, consecutive_failures=${stats.consecutive_failures}, failed=${stats.failed_transactions}`,
      );
    }
    assert.ok(bad.status >= 400 && bad.status < 500, `bad input should be a 4xx at the edge, got ${bad.status}`);
  });
});
