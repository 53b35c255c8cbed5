// Found in a contract review: retry or discard of a transaction that had synced and been compacted
// answered 404 "not in the buffer" (and the CLI "no transaction … in the buffer", exit 1), while
// GET /api/transactions/{id} and opsdb buffer show answered it as synced. It is a 409 now, naming its
// state, as for any transaction that is neither failed nor blocked. A real central on PostgreSQL, an
// edge syncing to it, and the CLI as a real process.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCentralAndEdge } from '../support/edge.js';
import { until } from '../support/daemon.js';
import { runCli } from '../support/cli.js';

describe('retry and discard of a synced, compacted transaction', () => {
  let s: Awaited<ReturnType<typeof startCentralAndEdge>>;
  before(async () => {
    s = await startCentralAndEdge('retry-compacted', 'retrycompacted');
  });
  after(async () => {
    await s?.stop();
  });

  it('is a 409 with its state, and the CLI says it is synced', async () => {
    const admin = s.edge.admin;
    const w = await admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    assert.equal(w.status, 201, w.text);
    const id = w.body.transaction_id as string;
    await until('synced and compacted', async () => {
      const r = await admin.get(`/api/transactions/${id}`);
      return r.body.state === 'synced' && r.body.compacted_at !== null;
    }, 20_000);

    for (const action of ['retry', 'discard']) {
      const r = await admin.post(`/api/buffer/failed/${id}/${action}`);
      assert.equal(r.status, 409, `${action}: ${r.text}`);
      assert.equal(r.body.error.details.state, 'synced');
      assert.match(r.body.error.message, /is synced/);
      const cli = await runCli(['buffer', action, id], { SITE_TYPE: 'secondary', DATA_DIR: s.edge.dataDir });
      assert.equal(cli.code, 1, cli.stderr);
      assert.match(cli.stderr, new RegExp(`transaction ${id} is synced`));
    }
    const unknown = await admin.post('/api/buffer/failed/01936a2e-7b4c-7d3e-9a1b-2c3d4e5f6a7b/retry');
    assert.equal(unknown.status, 404, 'an id never seen here is still a 404');
  });
});
