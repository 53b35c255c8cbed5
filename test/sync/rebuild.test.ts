// An edge whose disk is replaced starts again with an empty buffer (seq 1):
// central keys exactly-once on transaction ids, so its new writes still apply.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral } from '../support/central.js';
import { startTestEdge, type TestEdge } from '../support/edge.js';

async function drain(edge: TestEdge, applied: number) {
  const end = Date.now() + 15_000;
  for (;;) {
    const s = (await edge.anonymous.get('/buffer-stats')).body;
    if (s.applied_total >= applied && s.pending_transactions === 0) return s;
    if (Date.now() > end) assert.fail(`not drained: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 30));
  }
}

describe('an edge rebuilt on an empty disk', () => {
  it('syncs its new writes although its seqs start again at 1', async () => {
    const central = await startTestCentral('rebuild');
    const token = (await central.admin.post('/api/sites/', { body: { name: 'rebuilt' } })).body.token;
    const overrides = { SITE_NAME: 'rebuilt', CENTRAL_URL: central.url, SITE_TOKEN: token, SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 100 };
    try {
      const first = await startTestEdge('rebuild-a', { overrides });
      for (let i = 0; i < 3; i++) await first.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
      await drain(first, 3);
      await first.stop();
      const second = await startTestEdge('rebuild-b', { overrides });
      try {
        const ids: string[] = [];
        for (let i = 0; i < 2; i++) ids.push((await second.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 2 } })).body.transaction_id);
        const s = await drain(second, 2);
        assert.equal(s.failed_transactions, 0);
        const { rows } = await central.db.query(`SELECT seq FROM applied_transaction WHERE site = 'rebuilt' ORDER BY applied_at, seq`);
        assert.deepEqual(rows.map((r) => Number(r.seq)), [1, 2, 3, 1, 2]);
      } finally {
        await second.stop();
      }
    } finally {
      await central.stop();
    }
  });
});
