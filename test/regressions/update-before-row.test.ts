// Found in review: an edge rebuilt on an empty disk (or one whose replica has not pulled a row yet)
// accepted a finish of an observation it did not hold (202), but the local UPDATE matched no row and
// left no trace: when the replica brought the row, it showed central's copy without the finish, as
// `synced`, and if central rejected the finish the edge never showed it at all (SPEC §2.7, read your
// writes). Such an update is now kept and applied on top of the row when it arrives.
// Found in a later review: it was applied on top even when it had synced long before, so a change
// made at central after it (here: central finishing the observation as aborted) was hidden for good.
// A real central (one CHECK constraint added to make it reject the finish) and real edges.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral } from '../support/central.js';
import { startTestEdge } from '../support/edge.js';
import { until } from '../support/daemon.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { feedBlocker } from '../support/feed-blocker.js';

describe('an update of a row the edge does not hold yet', () => {
  const stops: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
  });

  it('shows on the row once the replica brings it, while its transaction has not synced', { timeout: 90_000 }, async () => {
    const central = await startTestCentral('update-before-row', { LOG_LEVEL: 'silent' });
    stops.push(() => central.stop());
    const token = (await central.admin.post('/api/sites/', { body: { name: 'ubr' } })).body.token as string;
    const proxy = await FaultProxy.start(Number(new URL(central.url).port), 'pass');
    stops.push(() => proxy.close());
    const overrides = { SITE_NAME: 'ubr', CENTRAL_URL: proxy.url, SITE_TOKEN: token, SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 200 };

    // The first disk: an observation, synced.
    const first = await startTestEdge('ubr-first', { seed: false, overrides });
    await until('reference data', async () => (await first.anonymous.get('/buffer-stats')).body.last_sync_at !== null, 20_000);
    const obs = (await first.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).body;
    await until('synced', async () => (await first.admin.get(`/api/transactions/${obs.transaction_id}`)).body.state === 'synced', 20_000);
    await first.stop();

    // A new, empty disk, with the link down: the finish is accepted, but there is no row to show it on.
    await proxy.setMode('refuse');
    const edge = await startTestEdge('ubr-second', { seed: false, overrides });
    stops.push(() => edge.stop());
    const fin = await edge.admin.put(`/executed_obs_units/${obs.id}/finish`, { body: { status: 'aborted' } });
    assert.equal(fin.status, 202, fin.text);
    assert.equal((await edge.admin.get(`/executed_obs_units/${obs.id}`)).status, 404);

    // Central rejects it; the row arrives. The edge shows its own change, as for any row it holds.
    await central.db.query(`ALTER TABLE executed_obs_unit ADD CONSTRAINT ubr_no_aborted CHECK (status <> 'aborted') NOT VALID`);
    await proxy.setMode('pass');
    await until('the finish to fail', async () => (await edge.admin.get(`/api/transactions/${fin.body.transaction_id}`)).body.state === 'failed', 20_000);
    const row = await until('the row at the edge', async () => {
      const r = await edge.admin.get(`/executed_obs_units/${obs.id}`);
      return r.status === 200 ? r.body : null;
    }, 20_000);
    assert.equal(row.status, 'aborted', 'the buffered finish is on the row');
    assert.ok(row.end_time, 'with its end_time');
    assert.equal((await central.db.query('SELECT status FROM executed_obs_unit WHERE id = $1', [obs.id])).rows[0].status, 'running');

    // Discarded, the finish goes; central's copy comes back with central's next change of the row.
    assert.equal((await edge.admin.post(`/api/buffer/failed/${fin.body.transaction_id}/discard`, { body: { reason: 'not allowed' } })).status, 200);
    await central.db.query('ALTER TABLE executed_obs_unit DROP CONSTRAINT ubr_no_aborted');
    await central.db.query('UPDATE executed_obs_unit SET mean_pwv = 0.5 WHERE id = $1', [obs.id]);
    const back = await until('central\'s copy', async () => {
      const r = (await edge.admin.get(`/executed_obs_units/${obs.id}`)).body;
      return r.mean_pwv === 0.5 ? r : null;
    }, 20_000);
    assert.equal(back.status, 'running');
  });

  it('once synced, gives way to central\'s copy and the change central made after it', { timeout: 90_000 }, async () => {
    const central = await startTestCentral('update-before-row-synced', { LOG_LEVEL: 'silent' });
    stops.push(() => central.stop());
    const token = (await central.admin.post('/api/sites/', { body: { name: 'ubrs' } })).body.token as string;
    const feed = await feedBlocker(central.url);
    stops.push(() => feed.close());
    const fast = { SITE_NAME: 'ubrs', SITE_TOKEN: token, SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 200 };

    const first = await startTestEdge('ubrs-first', { seed: false, overrides: { ...fast, CENTRAL_URL: central.url } });
    await until('reference data', async () => (await first.anonymous.get('/buffer-stats')).body.last_sync_at !== null, 20_000);
    const obs = (await first.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).body;
    await until('synced', async () => (await first.admin.get(`/api/transactions/${obs.transaction_id}`)).body.state === 'synced', 20_000);
    await first.stop();

    // A new, empty disk whose pulls fail while its pushes go through: the finish reaches central first.
    feed.blocked = true;
    const edge = await startTestEdge('ubrs-second', { seed: false, overrides: { ...fast, CENTRAL_URL: feed.url } });
    stops.push(() => edge.stop());
    const fin = await edge.admin.put(`/executed_obs_units/${obs.id}/finish`, { body: { status: 'success' } });
    assert.equal(fin.status, 202, fin.text);
    await until('the finish synced', async () => (await edge.admin.get(`/api/transactions/${fin.body.transaction_id}`)).body.state === 'synced', 20_000);
    assert.equal((await central.admin.get(`/executed_obs_units/${obs.id}`)).body.status, 'success');

    // Central changes the row after it; then the pulls get through and bring the row.
    assert.equal((await central.admin.put(`/executed_obs_units/${obs.id}/finish`, { body: { status: 'aborted' } })).status, 202);
    const atCentral = (await central.admin.get(`/executed_obs_units/${obs.id}`)).body;
    feed.blocked = false;
    const row = await until('the row at the edge', async () => {
      const r = await edge.admin.get(`/executed_obs_units/${obs.id}`);
      return r.status === 200 ? r.body : null;
    }, 20_000);
    assert.equal(row.status, 'aborted', 'central\'s copy, not the synced finish put back on top of it');
    assert.equal(row.end_time, atCentral.end_time);
    const aborted = (await edge.admin.get('/executed_obs_units/?status=aborted')).body as { id: string }[];
    assert.ok(aborted.some((o) => o.id === obs.id), 'a filter on the edge finds it as central does');
  });
});
