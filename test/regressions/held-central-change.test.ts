// Found in review: central's change of a row arrived while a local change of that row was still on its
// way, so the pull left the row as the edge had it. When that local change was then rejected and
// discarded, nothing put central's change in place: a row deleted at central stayed at the edge for
// good (central never changes it again), listed as `synced`, and a row central had changed kept the
// discarded values until central's next change of it. The pull now keeps such a change (held_change)
// and puts it in place once the local change is discarded.
// A review of that fix: with two failed updates of the row, discarding the newer one put central's copy
// in place while the older one still stood (it must wait for both); and a change held before central went
// back in time (restored from a backup) outlived the feed's re-read (it is now dropped when the feed is
// read again from an earlier position).
// A real central (PostgreSQL), a real edge, the link cut by a proxy.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { startTestEdge, type TestEdge } from '../support/edge.js';
import { until } from '../support/daemon.js';
import { FaultProxy } from '../support/fault-proxy.js';

describe('central\'s change of a row held back by a local change', { timeout: 120_000 }, () => {
  const stops: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
  });

  /** A central, an edge syncing through a proxy, and one observation started at the edge and synced. */
  async function observationAtBoth(label: string) {
    const central: TestCentral = await startTestCentral(label, { LOG_LEVEL: 'silent' });
    stops.push(() => central.stop());
    const token = (await central.admin.post('/api/sites/', { body: { name: label } })).body.token as string;
    const proxy = await FaultProxy.start(Number(new URL(central.url).port), 'pass');
    stops.push(() => proxy.close());
    const edge: TestEdge = await startTestEdge(label, {
      seed: false,
      overrides: { SITE_NAME: label, CENTRAL_URL: proxy.url, SITE_TOKEN: token, SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 200 },
    });
    stops.push(() => edge.stop());
    await until('reference data', async () => (await edge.anonymous.get('/buffer-stats')).body.last_sync_at !== null, 20_000);
    const obs = (await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).body as { id: string; transaction_id: string };
    await until('the start synced', async () => (await edge.admin.get(`/api/transactions/${obs.transaction_id}`)).body.state === 'synced', 20_000);
    return { central, edge, proxy, obs, first: () => '' };
  }

  /** Finishes the observation at the edge while the link is down; `atCentral` changes central meanwhile. */
  /**
   * Finishes the observation at the edge while the link is down; `atCentral` changes central meanwhile.
   * Central rejects the finish; `then` runs once its change is held back; `discard` names the transaction
   * discarded at the end (default: the finish). The finish's id is kept in `b.first()`.
   */
  async function finishRejected(
    b: Awaited<ReturnType<typeof observationAtBoth>>,
    atCentral: () => Promise<unknown>,
    then: () => Promise<unknown> = async () => {},
    discard?: () => string,
  ) {
    await b.proxy.setMode('refuse');
    const fin = await b.edge.admin.put(`/executed_obs_units/${b.obs.id}/finish`, { body: { status: 'aborted' } });
    assert.equal(fin.status, 202, fin.text);
    await atCentral();
    await b.proxy.setMode('pass');
    const tx = await until('central to reject the finish', async () => {
      const t = (await b.edge.admin.get(`/api/transactions/${fin.body.transaction_id}`)).body;
      return t.state === 'failed' || t.state === 'synced' ? t : null;
    }, 20_000);
    assert.equal(tx.state, 'failed', JSON.stringify(tx.last_error));
    // A pull has run since: central's change is here, held back by the failed finish, which still shows.
    const since = Date.now();
    await until('a pull after the rejection', async () => Date.parse((await b.edge.anonymous.get('/buffer-stats')).body.last_sync_at) > since, 20_000);
    const shown = (await b.edge.admin.get(`/executed_obs_units/${b.obs.id}`)).body;
    assert.equal(shown.status, 'aborted', 'while the failed finish stands, the edge shows it (an operator may retry it)');
    b.first = () => fin.body.transaction_id;
    await then();
    const d = await b.edge.admin.post(`/api/buffer/failed/${discard ? discard() : fin.body.transaction_id}/discard`, { body: { reason: 'rejected at central' } });
    assert.equal(d.status, 200, d.text);
  }

  it('two failed updates: central\'s copy waits until both are discarded', async () => {
    const b = await observationAtBoth('held-two');
    let second = '';
    await finishRejected(b, async () => {
      await b.central.db.query(`ALTER TABLE executed_obs_unit ADD CONSTRAINT held_two_no_aborted CHECK (status <> 'aborted') NOT VALID`);
      await b.central.db.query('UPDATE executed_obs_unit SET mean_pwv = 0.7 WHERE id = $1', [b.obs.id]);
    }, async () => {
      // A second finish, after central's change was held back by the first; it fails too.
      const r = await b.edge.admin.put(`/executed_obs_units/${b.obs.id}/finish`, { body: { status: 'aborted', mean_pwv: 2.2 } });
      assert.equal(r.status, 202, r.text);
      second = r.body.transaction_id;
      await until('the second finish to fail', async () => (await b.edge.admin.get(`/api/transactions/${second}`)).body.state === 'failed', 20_000);
    }, () => second);
    // Only the second is discarded: the first still stands, so the row stays as this edge wrote it.
    const since = Date.now();
    await until('two pulls after the discard', async () => Date.parse((await b.edge.anonymous.get('/buffer-stats')).body.last_sync_at) > since + 200, 20_000);
    const row = (await b.edge.admin.get(`/executed_obs_units/${b.obs.id}`)).body;
    assert.equal(row.status, 'aborted', 'the first finish, failed, still shows');
    // Both discarded: central's copy.
    const first = b.first();
    assert.equal((await b.edge.admin.post(`/api/buffer/failed/${first}/discard`, { body: { reason: 'rejected at central' } })).status, 200);
    const back = await until('central\'s copy at the edge', async () => {
      const r = (await b.edge.admin.get(`/executed_obs_units/${b.obs.id}`)).body;
      return r.status === 'running' ? r : null;
    }, 20_000);
    assert.equal(back.mean_pwv, 0.7);
  });

  it('deleted at central: the row leaves the edge once the local change is discarded', async () => {
    const b = await observationAtBoth('held-delete');
    await finishRejected(b, () => b.central.db.query('DELETE FROM executed_obs_unit WHERE id = $1', [b.obs.id]));
    await until('the row gone from the edge', async () => (await b.edge.admin.get(`/executed_obs_units/${b.obs.id}`)).status === 404, 20_000);
    const listed = (await b.edge.admin.get('/executed_obs_units/?limit=100')).body as { id: string }[];
    assert.ok(!listed.some((o) => o.id === b.obs.id), 'and not listed');
    assert.equal((await b.central.admin.get(`/executed_obs_units/${b.obs.id}`)).status, 404);
  });

  it('changed at central: the edge shows central\'s copy once the local change is discarded, not the discarded values', async () => {
    const b = await observationAtBoth('held-update');
    await finishRejected(b, async () => {
      // Central refuses an aborted status from now on, and changes the row itself meanwhile.
      await b.central.db.query(`ALTER TABLE executed_obs_unit ADD CONSTRAINT held_no_aborted CHECK (status <> 'aborted') NOT VALID`);
      await b.central.db.query('UPDATE executed_obs_unit SET mean_pwv = 0.7 WHERE id = $1', [b.obs.id]);
    });
    const row = await until('central\'s copy at the edge', async () => {
      const r = (await b.edge.admin.get(`/executed_obs_units/${b.obs.id}`)).body;
      return r.status === 'running' ? r : null;
    }, 20_000);
    assert.equal(row.mean_pwv, 0.7);
    assert.equal(row.end_time, null);
    const atCentral = (await b.central.admin.get(`/executed_obs_units/${b.obs.id}`)).body;
    assert.equal(atCentral.status, 'running');
    assert.equal(atCentral.updated_at, row.updated_at);
  });
});
