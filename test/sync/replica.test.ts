// The pull side: offline auth from central's token hashes, revocation
// reaching the edge, and records that never vanish or flip back while they
// travel from the buffer to the replica.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { startTestEdge, type TestEdge } from '../support/edge.js';
import { client } from '../support/http.js';
import { until } from '../support/daemon.js';


describe('edge replica fed by the change feed', () => {
  let central: TestCentral;
  let edge: TestEdge;
  before(async () => {
    central = await startTestCentral('replica');
    const token = (await central.admin.post('/api/sites/', { body: { name: 'replica' } })).body.token;
    edge = await startTestEdge('replica', {
      seed: false,
      overrides: { SITE_NAME: 'replica', CENTRAL_URL: central.url, SITE_TOKEN: token, SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 200 },
    });
  });
  after(async () => {
    await edge?.stop();
    await central?.stop();
  });

  it('receives reference data: the edge then checks references itself', async () => {
    const inst = await until('instruments at the edge', async () => {
      const r = await edge.admin.get('/instruments/');
      return r.body.length > 0 && r.body;
    });
    assert.equal(inst[0].name, 'Prime-Cam');
    const bad = await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 4242 } });
    assert.equal(bad.status, 422, 'now that the replica holds obs units, a wrong one is refused at the edge');
  });

  it('a token made at central works at the edge offline, and its revocation reaches the edge with the next pull', async () => {
    const observer = await central.as(['observer'], 'remote-observer');
    const atEdge = client(edge.url, observer.token);
    const me = await until('the token at the edge', async () => {
      const r = await atEdge.get('/auth/me');
      return r.status === 200 && r.body;
    });
    assert.equal(me.username, `remote-observer-${process.pid}`);
    assert.equal((await atEdge.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).status, 201);
    const { rows } = await central.db.query('SELECT id FROM api_token WHERE user_id = $1', [observer.userId]);
    await central.admin.del(`/api/tokens/${rows[0].id}`);
    const denied = await until('revocation at the edge', async () => {
      const r = await atEdge.get('/auth/me');
      return r.status === 401 && r.body;
    });
    assert.equal(denied.error.code, 'token_revoked');
  });

  it('a record is readable at every moment from write to replica, and never flips back from synced', async () => {
    const w = await edge.admin.post('/api/demo/create-observation', {
      body: { obs_data: { obs_unit_id: 1, start_time: '2025-02-02T00:00:00Z', package_name: 'travel' }, raw_files: [{ name: 'a', path: '/a', size: 1, checksum: 'x', file_type: 'fits' }] },
    });
    assert.equal(w.status, 201);
    const seen: string[] = [];
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await edge.admin.get(`/executed_obs_units/${w.body.executed_obs_unit_id}`);
      assert.equal(r.status, 200, 'never missing from edge reads');
      assert.equal(r.body.raw_data_files.length, 1);
      if (seen.at(-1) !== r.body.sync_status) seen.push(r.body.sync_status);
      const s = (await edge.anonymous.get('/buffer-stats')).body;
      if (r.body.sync_status === 'synced' && s.synced_awaiting_replica === 0 && s.pending_transactions === 0) break;
      assert.ok(Date.now() < deadline, `did not settle: ${seen.join(' → ')}`);
    }
    const order = ['pending', 'in_flight', 'synced'];
    const ranks = seen.map((x) => order.indexOf(x));
    assert.ok(ranks.every((r, i) => r >= 0 && (i === 0 || r > ranks[i - 1]!)), `only forward, never back: ${seen.join(' → ')}`);
    assert.equal(seen.at(-1), 'synced');
    for (let i = 0; i < 5; i++) {
      const r = await edge.admin.get(`/executed_obs_units/${w.body.executed_obs_unit_id}`);
      assert.equal(r.body.sync_status, 'synced');
      await new Promise((res) => setTimeout(res, 60));
    }
    const atCentral = await central.admin.get(`/executed_obs_units/${w.body.executed_obs_unit_id}`);
    assert.equal(atCentral.status, 200);
  });

  it('a local update newer than central\'s copy is not overwritten by the feed', async () => {
    const start = await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 2 } });
    await until('synced start', async () => (await edge.admin.get(`/executed_obs_units/${start.body.id}`)).body.sync_status === 'synced');
    const fin = await edge.admin.put(`/executed_obs_units/${start.body.id}/finish`, { body: { status: 'aborted' } });
    assert.equal(fin.status, 202);
    const r = await edge.admin.get(`/executed_obs_units/${start.body.id}`);
    assert.equal(r.body.status, 'aborted', 'read-your-writes over a synced row');
    // The record stays `synced` (SPEC §2.7); the update's own transaction says when it is at central.
    await until('finish synced', async () => (await edge.admin.get(`/api/transactions/${fin.body.transaction_id}`)).body.state === 'synced');
    assert.equal((await edge.admin.get(`/executed_obs_units/${start.body.id}`)).body.status, 'aborted');
    assert.equal((await central.admin.get(`/executed_obs_units/${start.body.id}`)).body.status, 'aborted');
  });

  it('/buffer-stats reports the engine live and central lists the site with its backlog', async () => {
    const s = (await edge.anonymous.get('/buffer-stats')).body;
    assert.equal(s.background_processor, 'running');
    assert.equal(s.central_reachable, true);
    assert.equal(s.consecutive_failures, 0);
    assert.ok(s.last_sync_at);
    assert.ok(s.processing_rate > 0);
    const site = (await central.admin.get('/api/sites/')).body.find((x: { name: string }) => x.name === 'replica');
    assert.ok(site.last_applied_seq >= 3);
    assert.equal(site.reported_backlog.pending, 0);
  });
});
