// Found in review:
// 1. A write waited on the last local transaction that changed the row it refers to, not on the one
//    that created it (SPEC §2.3 speaks of ids *created* by a failed transaction). So after central
//    rejected an update of an observation it holds, every later write to that observation (a file,
//    another finish) was blocked; once the rejected update was discarded, blocked for good.
// 2. The replica kept an edge row over central's copy while its last local writer was anything but
//    synced, discarded included: after a discard, central's later changes to the row never arrived.
// 3. A write referring to (or updating) a row whose creating transaction was discarded was accepted,
//    then blocked for ever. It now gets a 4xx: the row does not exist at central. Later found: the same
//    held one link further (a row whose creator waits on a discarded transaction).
// 4. Later found: preferences writes made while an earlier one was failed stayed blocked for ever
//    once it was discarded (a retry sent them straight back), and every later one queued behind them.
// A real central on PostgreSQL (one CHECK constraint added to make it reject an update, standing for
// any permanent rejection), a real edge syncing to it.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { startTestEdge, edgeDataDir, type TestEdge } from '../support/edge.js';
import { until } from '../support/daemon.js';

const FAST = { SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 200 };
const stats = async (e: TestEdge) => (await e.anonymous.get('/buffer-stats')).body;
const stateOf = async (e: TestEdge, id: string) => (await e.admin.get(`/api/transactions/${id}`)).body.state as string;
const file = (obs: string, name: string) => ({ name, path: `/data/${name}`, size: 1, checksum: 'c', file_type: 'fits', executed_obs_unit_id: obs });

describe('what a write waits on', () => {
  const stops: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
  });
  const siteFor = async (central: TestCentral, name: string) => (await central.admin.post('/api/sites/', { body: { name } })).body.token as string;

  it('a rejected update of a synced row holds up no later write to it, and central\'s changes still arrive after its discard', { timeout: 90_000 }, async () => {
    const central = await startTestCentral('dep-creator');
    stops.push(() => central.stop());
    const token = await siteFor(central, 'depcreator');
    const edge = await startTestEdge('dep-creator', { overrides: { ...FAST, SITE_NAME: 'depcreator', CENTRAL_URL: central.url, SITE_TOKEN: token } });
    stops.push(() => edge.stop());

    const obs = (await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).body;
    await until('the observation at central', async () => (await stats(edge)).applied_total === 1, 20_000);
    await central.db.query(`ALTER TABLE executed_obs_unit ADD CONSTRAINT review_no_aborted CHECK (status <> 'aborted') NOT VALID`);
    const bad = (await edge.admin.put(`/executed_obs_units/${obs.id}/finish`, { body: { status: 'aborted' } })).body;
    await until('the update to fail', async () => (await stateOf(edge, bad.transaction_id)) === 'failed', 20_000);

    // A file of that observation does not wait on the rejected update.
    const f = await edge.admin.post('/raw_data_files/', { body: file(obs.id, 'a.fits') });
    assert.equal(f.status, 201, f.text);
    await until('the file to be synced', async () => (await stateOf(edge, f.body.transaction_id)) === 'synced', 20_000);
    assert.equal((await central.db.query('SELECT count(*)::int AS n FROM raw_data_file WHERE executed_obs_unit_id = $1', [obs.id])).rows[0].n, 1);

    // The operator discards the rejected update, the row's last local change: a change central makes
    // later reaches the edge, and replaces what was discarded.
    const d = await edge.admin.post(`/api/buffer/failed/${bad.transaction_id}/discard`, { body: { reason: 'aborted is not allowed' } });
    assert.equal(d.status, 200, d.text);
    await central.db.query('UPDATE executed_obs_unit SET mean_pwv = 1.5 WHERE id = $1', [obs.id]);
    const row = await until('central\'s change at the edge', async () => {
      const r = (await edge.admin.get(`/executed_obs_units/${obs.id}`)).body;
      return r.mean_pwv === 1.5 ? r : null;
    }, 20_000);
    assert.equal(row.status, 'running', 'central\'s copy, not the discarded update');
    assert.equal(row.sync_status, 'synced');

    // Another finish goes through too.
    const good = await edge.admin.put(`/executed_obs_units/${obs.id}/finish`, { body: { status: 'success' } });
    assert.equal(good.status, 202, good.text);
    await until('the second finish to be synced', async () => (await stateOf(edge, good.body.transaction_id)) === 'synced', 20_000);
    assert.equal((await central.db.query('SELECT status FROM executed_obs_unit WHERE id = $1', [obs.id])).rows[0].status, 'success');
    assert.equal((await stats(edge)).blocked_transactions, 0);
  });

  it('a write that refers to a row whose creation was discarded is refused, not blocked for ever', { timeout: 90_000 }, async () => {
    const central = await startTestCentral('dep-discarded');
    stops.push(() => central.stop());
    const token = await siteFor(central, 'depdiscarded');
    // Written before the edge ever synced (so its obs_unit_id is not checked here); central rejects it.
    const dataDir = edgeDataDir('dep-discarded');
    const offline = await startTestEdge('dep-discarded', { dataDir, seed: false, overrides: { SITE_NAME: 'depdiscarded' } });
    const obs = (await offline.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 999 } })).body;
    const pkg = (await offline.admin.post('/raw_data_package/', { body: { name: 'p1', executed_obs_unit_id: obs.id } })).body;
    await offline.stop();
    const edge = await startTestEdge('dep-discarded', {
      dataDir, seed: false, overrides: { ...FAST, SITE_NAME: 'depdiscarded', CENTRAL_URL: central.url, SITE_TOKEN: token },
    });
    stops.push(() => edge.stop());
    await until('the create to fail', async () => (await stateOf(edge, obs.transaction_id)) === 'failed', 20_000);
    assert.equal((await edge.admin.post(`/api/buffer/failed/${obs.transaction_id}/discard`, { body: { reason: 'wrong obs unit' } })).status, 200);

    const before = (await stats(edge)).accepted_total;
    const fin = await edge.admin.put(`/executed_obs_units/${obs.id}/finish`, { body: { status: 'success' } });
    assert.equal(fin.status, 404, fin.text);
    assert.match(fin.body.error.message, /does not exist at central: the transaction that created it here \(seq 1\) was discarded/);
    const f = await edge.admin.post('/raw_data_files/', { body: file(obs.id, 'b.fits') });
    assert.equal(f.status, 422, f.text);
    assert.equal(f.body.error.code, 'reference_not_found');
    assert.equal(f.body.error.details.discarded_seq, 1);
    // One more link: the package's creation (seq 2) waits on the discarded one, so it never leaves either.
    assert.equal(await stateOf(edge, pkg.transaction_id), 'blocked');
    const fz = await edge.admin.put(`/raw_data_package/${pkg.id}/finalize`, { body: { size: 1, checksum: 'c' } });
    assert.equal(fz.status, 404, fz.text);
    assert.match(fz.body.error.message, /the transaction that created it here \(seq 2\) waits on seq 1, which was discarded/);
    assert.equal(fz.body.error.details.blocked_seq, 2);
    assert.equal((await stats(edge)).accepted_total, before, 'nothing was buffered');
    assert.equal((await stats(edge)).blocked_transactions, 1, 'only the package, which the operator discards');
  });

  it('preferences writes stay in order behind a failed one, and a discarded one holds up nothing', { timeout: 90_000 }, async () => {
    const central = await startTestCentral('dep-prefs');
    stops.push(() => central.stop());
    const token = await siteFor(central, 'depprefs');
    const edge = await startTestEdge('dep-prefs', { overrides: { ...FAST, SITE_NAME: 'depprefs', CENTRAL_URL: central.url, SITE_TOKEN: token } });
    stops.push(() => edge.stop());
    await until('central\'s accounts at the edge', async () => (await stats(edge)).last_sync_at !== null, 20_000);
    const prefs = (p: Record<string, unknown>) => edge.admin.post('/api/demo/update-user-preferences', { body: { user_id: 1, preferences: p } });
    const atCentral = async () => (await central.db.query('SELECT preferences FROM user_preference WHERE user_id = 1')).rows[0]?.preferences;
    await central.db.query(`ALTER TABLE user_preference ADD CONSTRAINT review_no_reject CHECK (NOT (preferences ? 'reject')) NOT VALID`);

    const a = await prefs({ reject: true });
    assert.equal(a.status, 200, a.text);
    await until('the first to fail', async () => (await stateOf(edge, a.body.transaction_id)) === 'failed', 20_000);
    const b = await prefs({ theme: 'dark' });
    assert.equal(b.status, 200, b.text);
    await until('the second to wait for it', async () => (await stateOf(edge, b.body.transaction_id)) === 'blocked', 20_000);
    // Retried once central takes it, the first applies, then the second: the newer preferences win.
    await central.db.query('ALTER TABLE user_preference DROP CONSTRAINT review_no_reject');
    assert.equal((await edge.admin.post(`/api/buffer/failed/${a.body.transaction_id}/retry`)).status, 200);
    await until('both synced', async () => (await stateOf(edge, b.body.transaction_id)) === 'synced', 20_000);
    assert.deepEqual(await atCentral(), { theme: 'dark' });

    // One that fails while later ones wait behind it, and is then discarded: they go, in order.
    await central.db.query(`ALTER TABLE user_preference ADD CONSTRAINT review_no_reject CHECK (NOT (preferences ? 'reject')) NOT VALID`);
    const x = await prefs({ reject: true });
    await until('it fails', async () => (await stateOf(edge, x.body.transaction_id)) === 'failed', 20_000);
    const y = await prefs({ theme: 'blue' });
    const z = await prefs({ theme: 'green' });
    await until('both wait behind it', async () => (await stateOf(edge, z.body.transaction_id)) === 'blocked', 20_000);
    assert.equal(await stateOf(edge, y.body.transaction_id), 'blocked');
    assert.equal((await edge.admin.post(`/api/buffer/failed/${x.body.transaction_id}/discard`, { body: { reason: 'not allowed' } })).status, 200);
    await until('both synced', async () => (await stateOf(edge, z.body.transaction_id)) === 'synced', 20_000);
    assert.equal(await stateOf(edge, y.body.transaction_id), 'synced');
    assert.deepEqual(await atCentral(), { theme: 'green' });
    assert.equal((await stats(edge)).blocked_transactions, 0);
    await central.db.query('ALTER TABLE user_preference DROP CONSTRAINT review_no_reject');

    // One that fails and is discarded: the next write goes through, not held behind it for ever.
    await central.db.query(`ALTER TABLE user_preference ADD CONSTRAINT review_no_reject CHECK (NOT (preferences ? 'reject')) NOT VALID`);
    const c = await prefs({ reject: true });
    await until('it fails', async () => (await stateOf(edge, c.body.transaction_id)) === 'failed', 20_000);
    assert.equal((await edge.admin.post(`/api/buffer/failed/${c.body.transaction_id}/discard`, { body: { reason: 'not allowed' } })).status, 200);
    const d = await prefs({ theme: 'light' });
    assert.equal(d.status, 200, d.text);
    await until('the next one synced', async () => (await stateOf(edge, d.body.transaction_id)) === 'synced', 20_000);
    assert.deepEqual(await atCentral(), { theme: 'light' });
  });
});
