// Found in review: central checked a sync batch's `site` fields only. An update step carries no site,
// and the database functions match an update on its id and a package or file on its parent's id, so
// site A's token could finish or abort site B's observation and plant packages and files under it
// (recorded in B's feed, so A's edge never even saw its write). Now every row a transaction updates or
// attaches to must belong to the sending site: a transaction that reaches another site's record is
// rejected alone (403), and the rest of its batch applies.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { client, type Client } from '../support/http.js';
import { uuidv7 } from '../../src/lib/uuid.js';

const at = () => new Date().toISOString();
const tx = (site: string, seq: number, endpoint: string, steps: unknown[]) => ({ transaction_id: uuidv7(), site, seq, created_at: at(), endpoint, steps });
const startObs = (site: string, seq: number, id = uuidv7()) =>
  tx(site, seq, 'POST /executed_obs_units/start', [{ step_id: 'obs', op: 'create', table: 'executed_obs_unit', id, data: { id, obs_unit_id: 1, site, status: 'running', start_time: '2025-01-01T00:00:00.000Z' } }]);
const finish = (site: string, seq: number, obs: string) =>
  tx(site, seq, 'PUT /executed_obs_units/{id}/finish', [{ step_id: 'finish', op: 'update', table: 'executed_obs_unit', id: obs, data: { status: 'aborted', end_time: '2025-01-02T00:00:00.000Z' } }]);
const pkg = (site: string, seq: number, obs: string, id = uuidv7()) =>
  tx(site, seq, 'POST /raw_data_package/', [{ step_id: 'pkg', op: 'create', table: 'raw_data_package', id, data: { name: 'p', executed_obs_unit_id: obs } }]);
const file = (site: string, seq: number, obs: string, pkgId?: string) => {
  const id = uuidv7();
  return tx(site, seq, 'POST /raw_data_files/', [{ step_id: 'file', op: 'create', table: 'raw_data_file', id,
    data: { name: 'f', path: '/f', size: 1, checksum: 'c', file_type: 'fits', executed_obs_unit_id: obs, ...(pkgId ? { raw_data_package_id: pkgId } : {}) } }]);
};
const finalize = (site: string, seq: number, pkgId: string) =>
  tx(site, seq, 'PUT /raw_data_package/{id}/finalize', [{ step_id: 'finalize', op: 'update', table: 'raw_data_package', id: pkgId, data: { state: 'finalized', size: 1, checksum: 'c' } }]);

describe('a site token writes its own site\'s records only', () => {
  let c: TestCentral;
  let a: Client;
  let b: Client;
  let seqA = 0;
  let seqB = 0;
  const send = (who: Client, site: string, transactions: unknown[]) => who.post('/api/sync/transactions', { body: { site, transactions } });
  before(async () => {
    c = await startTestCentral('site-scope', { LOG_LEVEL: 'silent' });
    a = client(c.url, (await c.admin.post('/api/sites/', { body: { name: 'scope-a' } })).body.token);
    b = client(c.url, (await c.admin.post('/api/sites/', { body: { name: 'scope-b' } })).body.token);
  });
  after(() => c.stop());

  it('refuses, one transaction at a time, an update of another site\'s records or a package or file under them', async () => {
    const obsB = uuidv7();
    const pkgB = uuidv7();
    assert.equal((await send(b, 'scope-b', [startObs('scope-b', ++seqB, obsB), pkg('scope-b', ++seqB, obsB, pkgB)])).status, 200);
    const obsA = uuidv7();
    const attempts = [
      finish('scope-a', ++seqA, obsB),
      pkg('scope-a', ++seqA, obsB),
      file('scope-a', ++seqA, obsB),
      finalize('scope-a', ++seqA, pkgB),
      startObs('scope-a', ++seqA, obsA),
      // Its own observation, but another site's package.
      file('scope-a', ++seqA, obsA, pkgB),
      file('scope-a', ++seqA, obsA),
    ];
    const r = await send(a, 'scope-a', attempts);
    assert.equal(r.status, 200, r.text);
    const results = r.body.results as { result: string; code?: string; reason?: string; details?: { owner?: string } }[];
    assert.deepEqual(results.map((x) => x.result), ['rejected', 'rejected', 'rejected', 'rejected', 'applied', 'rejected', 'applied']);
    for (const i of [0, 1, 2, 3, 5]) {
      assert.equal(results[i]!.code, 'forbidden', JSON.stringify(results[i]));
      assert.match(results[i]!.reason!, /which belongs to site "scope-b": a site writes only its own records/);
      assert.equal(results[i]!.details!.owner, 'scope-b');
    }
    const obs = (await c.db.query('SELECT status, end_time FROM executed_obs_unit WHERE id = $1', [obsB])).rows[0];
    assert.deepEqual(obs, { status: 'running', end_time: null }, 'B\'s observation untouched');
    assert.equal((await c.db.query('SELECT count(*)::int AS n FROM raw_data_package WHERE executed_obs_unit_id = $1', [obsB])).rows[0].n, 1);
    assert.equal((await c.db.query('SELECT count(*)::int AS n FROM raw_data_file WHERE executed_obs_unit_id = $1', [obsB])).rows[0].n, 0);
    assert.equal((await c.db.query('SELECT state FROM raw_data_package WHERE id = $1', [pkgB])).rows[0].state, 'open');
    assert.equal((await c.db.query('SELECT count(*)::int AS n FROM raw_data_file WHERE executed_obs_unit_id = $1', [obsA])).rows[0].n, 1);
  });

  it('takes what a site does to its own records, in the same batch or an earlier one', async () => {
    const obs = uuidv7();
    const p = uuidv7();
    const first = await send(a, 'scope-a', [startObs('scope-a', ++seqA, obs), pkg('scope-a', ++seqA, obs, p), file('scope-a', ++seqA, obs, p)]);
    assert.deepEqual(first.body.results.map((x: { result: string }) => x.result), ['applied', 'applied', 'applied']);
    const second = await send(a, 'scope-a', [file('scope-a', ++seqA, obs, p), finalize('scope-a', ++seqA, p), finish('scope-a', ++seqA, obs)]);
    assert.deepEqual(second.body.results.map((x: { result: string }) => x.result), ['applied', 'applied', 'applied']);
    assert.equal((await c.db.query('SELECT status FROM executed_obs_unit WHERE id = $1', [obs])).rows[0].status, 'aborted');
  });

  it('answers a reference to a record that exists nowhere as the database would, without trying it', async () => {
    const ghost = uuidv7();
    const r = await send(a, 'scope-a', [pkg('scope-a', ++seqA, ghost), finish('scope-a', ++seqA, ghost)]);
    const [p, f] = r.body.results as { result: string; code: string; reason: string }[];
    assert.equal(p!.code, 'reference_not_found');
    assert.match(p!.reason, new RegExp(`executed_obs_unit ${ghost} does not exist`));
    assert.equal(f!.code, 'not_found');
  });

  it('leaves central\'s own API as it was: an admin may still finish any site\'s observation', async () => {
    const obsB = uuidv7();
    assert.equal((await send(b, 'scope-b', [startObs('scope-b', ++seqB, obsB)])).status, 200);
    const r = await c.admin.put(`/executed_obs_units/${obsB}/finish`, { body: { status: 'success' } });
    assert.equal(r.status, 202, r.text);
    assert.equal((await c.db.query('SELECT status FROM executed_obs_unit WHERE id = $1', [obsB])).rows[0].status, 'success');
  });
});
