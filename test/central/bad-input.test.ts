// SPEC §2.8: bad input gets a clear 4xx with the one error shape, writes
// nothing, and never produces a 5xx — against a real central on PostgreSQL.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startTestCentral, writeCounts, type TestCentral } from '../support/central.js';
import {
  BAD_INPUT_CASES,
  BAD_INPUT_MAX_BODY_BYTES,
  START_TIME_OF_OBS,
  fillPlaceholders,
  type Placeholders,
} from '../support/bad-input-cases.js';

describe('central: bad input', () => {
  let central: TestCentral;
  let p: Placeholders;

  before(async () => {
    central = await startTestCentral('bad input', { MAX_BODY_BYTES: BAD_INPUT_MAX_BODY_BYTES });
    const obs = await central.admin.post('/executed_obs_units/start', {
      body: { obs_unit_id: 1, start_time: START_TIME_OF_OBS },
    });
    assert.equal(obs.status, 201, obs.text);
    const pkg = await central.admin.post('/raw_data_package/', { body: { name: 'bad-input-pkg', executed_obs_unit_id: obs.body.id } });
    assert.equal(pkg.status, 201, pkg.text);
    p = { obs: obs.body.id, pkg: pkg.body.id, missing: randomUUID() };
  });

  after(async () => {
    await central?.stop();
  });

  /** Rows of every writable table, plus API tokens (the token endpoints are in the table too). */
  const counts = async () => ({
    ...(await writeCounts(central.db)),
    api_token: (await central.db.query('SELECT count(*)::int AS n FROM api_token')).rows[0].n as number,
  });

  it('the table is well formed: unique names, only 4xx expectations, every write endpoint covered', () => {
    const names = BAD_INPUT_CASES.map((c) => c.name);
    assert.equal(new Set(names).size, names.length, 'case names are unique');
    for (const c of BAD_INPUT_CASES) {
      assert.ok(c.expectStatus >= 400 && c.expectStatus < 500, `${c.name}: expects a 4xx`);
    }
    const endpoints = [
      'POST /executed_obs_units/start',
      'PUT /executed_obs_units/{obs}/finish',
      'POST /raw_data_files/',
      'POST /raw_data_files/bulk',
      'POST /raw_data_package/',
      'PUT /raw_data_package/{pkg}/finalize',
      'POST /api/demo/create-observation',
      'POST /api/demo/update-user-preferences',
    ];
    for (const e of endpoints) {
      const mine = BAD_INPUT_CASES.filter((c) => `${c.method} ${c.path}` === e);
      for (const status of [400, 413, 415, 422]) {
        assert.ok(mine.some((c) => c.expectStatus === status), `${e} has a ${status} case`);
      }
    }
    const oversized = BAD_INPUT_CASES.filter((c) => c.expectStatus === 413);
    for (const c of oversized) assert.ok(Buffer.byteLength(c.raw ?? '') > BAD_INPUT_MAX_BODY_BYTES, c.name);
  });

  it('the fixtures exist: a valid request on them succeeds (so the cases fail for their own reason)', async () => {
    const before = await writeCounts(central.db);
    const ok = await central.admin.post('/raw_data_files/', {
      body: { name: 'ok.fits', path: '/d/ok.fits', size: 1, checksum: 'c', file_type: 'fits', executed_obs_unit_id: p.obs, raw_data_package_id: p.pkg },
    });
    assert.equal(ok.status, 201, ok.text);
    const after = await writeCounts(central.db);
    assert.equal(after.raw_data_file, before.raw_data_file! + 1);
    const got = await central.admin.get(`/executed_obs_units/${p.obs}`);
    assert.equal(got.status, 200);
    assert.equal(got.body.start_time, START_TIME_OF_OBS);
  });

  for (const c of BAD_INPUT_CASES) {
    it(`${c.method} ${c.path}: ${c.name} → ${c.expectStatus}${c.expectCode ? ` ${c.expectCode}` : ''}`, async () => {
      const path = fillPlaceholders(c.path, p);
      const before = await counts();
      const opts: { body?: unknown; raw?: string | Buffer; headers?: Record<string, string> } = {};
      if (c.raw !== undefined) opts.raw = fillPlaceholders(c.raw, p);
      else if (c.body !== undefined) opts.body = fillPlaceholders(c.body, p);
      if (c.headers) opts.headers = c.headers;
      const method = { GET: 'get', POST: 'post', PUT: 'put', DELETE: 'del' } as const;
      const res = await central.admin[method[c.method]](path, opts);

      assert.ok(res.status < 500, `never a 5xx: got ${res.status} ${res.text}`);
      assert.equal(res.status, c.expectStatus, `status (body: ${res.text.slice(0, 500)})`);
      assert.match(res.headers.get('content-type') ?? '', /application\/json/);
      assert.equal(typeof res.body, 'object');
      assert.ok(res.body && typeof res.body.error === 'object', 'has an "error" object');
      assert.deepEqual(Object.keys(res.body.error).sort(), ['code', 'details', 'message']);
      assert.equal(typeof res.body.error.code, 'string');
      assert.ok(res.body.error.code.length > 0, 'non-empty code');
      assert.equal(typeof res.body.error.message, 'string');
      assert.ok(res.body.error.message.trim().length > 0, 'non-empty message');
      if (c.expectCode) assert.equal(res.body.error.code, c.expectCode);

      assert.deepEqual(await counts(), before, 'nothing was written');
    });
  }

  it('the observation the cases aimed at is unchanged', async () => {
    const got = await central.admin.get(`/executed_obs_units/${p.obs}`);
    assert.equal(got.status, 200);
    assert.equal(got.body.status, 'running');
    assert.equal(got.body.end_time, null);
    assert.equal(got.body.mean_elevation, null);
    const pkg = await central.admin.get(`/raw_data_package/${p.pkg}`);
    assert.equal(pkg.body.state, 'open');
    assert.equal(pkg.body.size, null);
    const prefs = await central.db.query('SELECT count(*)::int AS n FROM user_preference');
    assert.equal(prefs.rows[0].n, 0);
  });
});
