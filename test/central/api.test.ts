import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import type { Client, Reply } from '../support/http.js';

const FILE = { name: 'f.fits', path: '/data/f.fits', size: 1024, checksum: 'abc', file_type: 'fits' };

describe('central HTTP API (SITE_TYPE=main, real PostgreSQL)', () => {
  let c: TestCentral;
  let observer: Client & { userId: number };
  let viewer: Client;

  before(async () => {
    c = await startTestCentral('api');
    observer = await c.as(['observer']);
    viewer = await c.as(['viewer']);
  });
  after(() => c.stop());

  it('GET /health reports a connected database and the site', async () => {
    const r = await c.anonymous.get('/health');
    assert.equal(r.status, 200);
    assert.equal(r.body.status, 'healthy');
    assert.equal(r.body.database, 'connected');
    assert.deepEqual(r.body.site, { name: 'main', type: 'main' });
    assert.deepEqual(r.body.transaction_buffer, { size: 0, failed: 0 });
    assert.equal(r.body.redis, 'not_used');
  });

  it('serves reference data from the seed', async () => {
    const inst = await viewer.get('/instruments/');
    assert.equal(inst.status, 200);
    assert.deepEqual(Object.keys(inst.body[0]).sort(), ['description', 'id', 'is_active', 'name']);
    assert.equal(inst.body[0].id, 1);
    assert.ok(inst.body.some((i: { name: string }) => i.name === 'CHAI'));
    const one = await viewer.get('/instruments/1');
    assert.equal(one.status, 200);
    assert.ok(one.body.modules.length > 0);
    assert.ok(one.body.modules[0].configurations.length > 0);
    assert.equal((await viewer.get('/instruments/999')).status, 404);
    const progs = await viewer.get('/observing_programs/');
    assert.equal(progs.body[0].id, 1);
    const units = await viewer.get('/obs_units/?observing_program_id=1&limit=1');
    assert.equal(units.body.length, 1);
    assert.equal(units.body[0].observing_program_id, 1);
  });

  it('starts and finishes an observation, committed at once', async () => {
    const start = await observer.post('/executed_obs_units/start', {
      body: { obs_unit_id: 1, start_time: '2025-03-01T10:00:00Z', mean_pwv: 0.8, instrument_module_configuration_id: 1 },
    });
    assert.equal(start.status, 201);
    assert.equal(start.body.status, 'committed');
    assert.match(start.body.transaction_id, /^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    const id = start.body.id;
    const got = await viewer.get(`/executed_obs_units/${id}`);
    assert.equal(got.body.status, 'running');
    assert.equal(got.body.site, 'main');
    assert.equal(got.body.start_time, '2025-03-01T10:00:00.000Z');
    assert.deepEqual(got.body.raw_data_packages, []);

    const fin = await observer.put(`/executed_obs_units/${id}/finish`, {
      body: { status: 'success', end_time: '2025-03-01T11:00:00Z', mean_elevation: 55 },
    });
    assert.equal(fin.status, 202);
    assert.equal(fin.body.id, id);
    const after = await viewer.get(`/executed_obs_units/${id}`);
    assert.equal(after.body.status, 'success');
    assert.equal(after.body.end_time, '2025-03-01T11:00:00.000Z');
    assert.equal(after.body.mean_elevation, 55);
    assert.equal(after.body.mean_pwv, 0.8, 'fields not sent by finish are kept');

    const tx = await viewer.get(`/api/transactions/${fin.body.transaction_id}`);
    assert.equal(tx.status, 200);
    assert.equal(tx.body.state, 'applied');
    assert.equal(tx.body.endpoint, 'PUT /executed_obs_units/{id}/finish');
  });

  it('a finish that breaks a rule of the table is told which rule, in words, without the row dumped back', async () => {
    const start = await observer.post('/executed_obs_units/start', { body: { obs_unit_id: 1, start_time: '2025-03-01T10:00:00Z' } });
    const fin = await observer.put(`/executed_obs_units/${start.body.id}/finish`, { body: { status: 'success', end_time: '2020-01-01T00:00:00Z' } });
    assert.equal(fin.status, 422, fin.text);
    assert.equal(fin.body.error.code, 'validation_error');
    assert.equal(fin.body.error.message, "Value violates a rule of executed_obs_unit: end_time is before the observation's start_time (executed_obs_unit_check)");
    assert.equal(fin.body.error.details.detail, null, 'no "Failing row contains (…)"');
    assert.equal(fin.body.error.details.constraint, 'executed_obs_unit_check');
    assert.equal((await viewer.get(`/executed_obs_units/${start.body.id}`)).body.status, 'running', 'nothing changed');
  });

  it('registers packages and files, single and bulk, and finalizes a package', async () => {
    const obs = (await observer.post('/executed_obs_units/start', { body: { obs_unit_id: 2 } })).body.id;
    const pkg = await observer.post('/raw_data_package/', { body: { name: 'pkg-1', executed_obs_unit_id: obs } });
    assert.equal(pkg.status, 201);
    const one = await observer.post('/raw_data_files/', {
      body: { ...FILE, executed_obs_unit_id: obs, raw_data_package_id: pkg.body.id },
    });
    assert.equal(one.status, 201);
    const bulk = await observer.post('/raw_data_files/bulk', {
      body: { executed_obs_unit_id: obs, raw_data_package_id: pkg.body.id, files: [FILE, { ...FILE, name: 'g.fits', size: 2048 }] },
    });
    assert.equal(bulk.status, 201);
    assert.equal(bulk.body.count, 2);
    assert.equal(bulk.body.ids.length, 2);
    assert.equal(bulk.body.status, 'committed');

    const file = await viewer.get(`/raw_data_files/${bulk.body.ids[1]}`);
    assert.equal(file.body.size, 2048);
    assert.equal(file.body.raw_data_package_id, pkg.body.id);

    const fin = await observer.put(`/raw_data_package/${pkg.body.id}/finalize`, { body: { size: 4096, checksum: 'sha:1' } });
    assert.equal(fin.status, 202);
    const p = await viewer.get(`/raw_data_package/${pkg.body.id}`);
    assert.equal(p.body.state, 'finalized');
    assert.equal(p.body.size, 4096);
    assert.equal(p.body.raw_data_files.length, 3);

    const detail = await viewer.get(`/executed_obs_units/${obs}`);
    assert.equal(detail.body.raw_data_packages.length, 1);
    assert.equal(detail.body.raw_data_files.length, 3);
  });

  it('lists observations with filters and a cursor that visits every row once', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 7; i++) {
      const r = await observer.post('/executed_obs_units/start', {
        // Two share a start time, so the id breaks the tie in the keyset.
        body: { obs_unit_id: 3, start_time: `2024-06-0${Math.min(i, 5) + 1}T00:00:00Z` },
      });
      ids.add(r.body.id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r: Reply = await viewer.get(
        `/executed_obs_units/?obs_unit_id=3&limit=3${cursor ? `&cursor=${cursor}` : ''}`,
      );
      assert.equal(r.status, 200);
      seen.push(...r.body.map((o: { id: string }) => o.id));
      cursor = r.headers.get('x-next-cursor');
      if (cursor) assert.match(r.headers.get('link') ?? '', /rel="next"/);
      pages++;
    } while (cursor && pages < 10);
    assert.equal(pages, 3);
    assert.deepEqual(new Set(seen), ids);
    assert.equal(seen.length, ids.size, 'no row twice');

    const times = (await viewer.get('/executed_obs_units/?obs_unit_id=3&limit=100')).body.map((o: { start_time: string }) => o.start_time);
    assert.deepEqual(times, [...times].sort().reverse(), 'newest first');

    const filtered = await viewer.get('/executed_obs_units/?obs_unit_id=3&start_after=2024-06-03T00:00:00Z&start_before=2024-06-06T00:00:00Z');
    assert.equal(filtered.body.length, 2);
    const running = await viewer.get('/executed_obs_units/?status=success&obs_unit_id=3');
    assert.equal(running.body.length, 0);
    const bySite = await viewer.get('/executed_obs_units/?site=elsewhere');
    assert.deepEqual(bySite.body, []);
  });

  it('GET /api/transfer/overview counts packages, transfers and size', async () => {
    const obs = (await observer.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).body.id;
    const pkg = (await observer.post('/raw_data_package/', { body: { name: 'transfer-pkg', executed_obs_unit_id: obs } })).body.id;
    await observer.put(`/raw_data_package/${pkg}/finalize`, { body: { size: 2_500_000_000, checksum: 'x' } });
    const before = (await viewer.get('/api/transfer/overview')).body;
    await c.db.query(
      `INSERT INTO data_transfer (raw_data_package_id, source, destination, status) VALUES
       ($1, 'site', 'main', 'pending'), ($1, 'site', 'main', 'active'), ($1, 'site', 'main', 'completed'), ($1, 'site', 'main', 'failed')`,
      [pkg],
    );
    const r = await viewer.get('/api/transfer/overview');
    assert.equal(r.status, 200);
    assert.deepEqual(Object.keys(r.body).sort(), [
      'active_transfers', 'completed_transfers', 'failed_transfers', 'pending_transfers', 'total_data_size_gb', 'total_packages',
    ]);
    assert.equal(r.body.pending_transfers, before.pending_transfers + 1);
    assert.equal(r.body.completed_transfers, before.completed_transfers + 1);
    assert.ok(r.body.total_data_size_gb >= 2.5);
  });

  it('POST /api/demo/create-observation writes obs, package and files in one transaction', async () => {
    const r = await observer.post('/api/demo/create-observation', {
      body: {
        obs_data: {
          obs_unit_id: 1, start_time: '2025-01-01T00:00:00Z', end_time: '2025-01-01T01:00:00Z', mean_pwv: 2.5,
          mean_elevation: 45.0, package_name: 'test_package_001', instrument_module_configuration_id: 1,
        },
        raw_files: [FILE, { ...FILE, name: 'second.fits' }],
      },
    });
    assert.equal(r.status, 201);
    assert.equal(r.body.raw_data_file_ids.length, 2);
    const obs = await viewer.get(`/executed_obs_units/${r.body.executed_obs_unit_id}`);
    assert.equal(obs.body.status, 'success');
    assert.equal(obs.body.raw_data_packages[0].name, 'test_package_001');
    assert.equal(obs.body.raw_data_files.length, 2);
    assert.ok(obs.body.raw_data_files.every((f: { raw_data_package_id: string }) => f.raw_data_package_id === r.body.raw_data_package_id));
  });

  it('a failing step rolls back the whole transaction', async () => {
    const before = await c.db.query('SELECT count(*)::int AS n FROM raw_data_package');
    const r = await observer.post('/api/demo/create-observation', {
      body: {
        obs_data: { obs_unit_id: 1, start_time: '2025-01-01T00:00:00Z', package_name: 'p', instrument_module_configuration_id: 999_999 },
        raw_files: [FILE],
      },
    });
    assert.equal(r.status, 422);
    assert.equal(r.body.error.code, 'reference_not_found');
    const after = await c.db.query('SELECT count(*)::int AS n FROM raw_data_package');
    assert.equal(after.rows[0].n, before.rows[0].n);
  });

  it('POST /api/demo/update-user-preferences stores and replaces preferences', async () => {
    const body = { user_id: observer.userId, preferences: { theme: 'dark', language: 'en', notifications: true } };
    const r = await observer.post('/api/demo/update-user-preferences', { body });
    assert.equal(r.status, 200);
    assert.deepEqual(Object.keys(r.body).sort(), ['message', 'status', 'transaction_id']);
    assert.equal(r.body.status, 'success');
    await observer.post('/api/demo/update-user-preferences', { body: { ...body, preferences: { theme: 'light' } } });
    const { rows } = await c.db.query('SELECT preferences FROM user_preference WHERE user_id = $1', [observer.userId]);
    assert.deepEqual(rows[0].preferences, { theme: 'light' });
  });

  it('answers unknown paths and methods with the JSON error shape', async () => {
    const r = await viewer.get('/no/such/thing');
    assert.equal(r.status, 404);
    assert.equal(r.body.error.code, 'not_found');
    const m = await c.anonymous.del('/health');
    assert.equal(m.status, 405);
    assert.equal(m.body.error.code, 'method_not_allowed');
  });

  it('echoes a request id, or makes one', async () => {
    const r = await c.anonymous.get('/health', { headers: { 'x-request-id': 'abc-123' } });
    assert.equal(r.headers.get('x-request-id'), 'abc-123');
    const r2 = await c.anonymous.get('/health');
    assert.match(r2.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
  });
});
