// A hand-made list cursor is read the same at the edge and at central (src/lib/cursor.ts): its time is
// parsed as a date and normalised (the edge compares times as text), its id lower-cased, and a time that
// is no real date is the same 422 at both. The edge used to compare the text as given: a time without
// milliseconds gave another page than at central, and an impossible date (month 13) a 200 there.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { startTestEdge, type TestEdge } from '../support/edge.js';
import { until } from '../support/daemon.js';

const cur = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const strip = (b: unknown) => (Array.isArray(b) ? b.map(({ sync_status: _, ...r }) => r) : b);

describe('hand-made list cursors: the edge answers as central does', { timeout: 120_000 }, () => {
  let central: TestCentral;
  let edge: TestEdge;
  before(async () => {
    central = await startTestCentral('cursor-parity');
    const token = (await central.admin.post('/api/sites/', { body: { name: 'cursors' } })).body.token;
    edge = await startTestEdge('cursor-parity', {
      seed: false,
      overrides: { SITE_NAME: 'cursors', CENTRAL_URL: central.url, SITE_TOKEN: token, SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 200 },
    });
    await until('reference data', async () => (await edge.admin.get('/obs_units/')).body.length > 0);
    const times = ['2025-03-01T00:00:00.000Z', '2025-03-02T00:00:00.000Z', '2025-03-03T00:00:00.000Z'];
    for (let i = 0; i < 12; i++) {
      const r = await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1, start_time: times[i % 3] } });
      assert.equal(r.status, 201, r.text);
    }
    await until('synced and back in the replica', async () => {
      const s = (await edge.anonymous.get('/buffer-stats')).body;
      return s.pending_transactions === 0 && s.in_flight_transactions === 0 && s.synced_awaiting_replica === 0;
    }, 30_000);
    assert.deepEqual(strip((await edge.admin.get('/executed_obs_units/?limit=1000')).body), (await central.admin.get('/executed_obs_units/?limit=1000')).body);
  });
  after(async () => {
    await edge?.stop();
    await central?.stop();
  });

  const both = async (cursor: string) => {
    const e = await edge.admin.get(`/executed_obs_units/?limit=100&cursor=${cursor}`);
    const c = await central.admin.get(`/executed_obs_units/?limit=100&cursor=${cursor}`);
    return { e, c };
  };

  it('a cursor written another way pages as its canonical form, at both sites', async () => {
    // The id of an observation that started 2025-03-02: the canonical cursor is (its time, its id).
    const all = (await central.admin.get('/executed_obs_units/?limit=1000')).body as { id: string; start_time: string }[];
    const mid = all.filter((r) => r.start_time === '2025-03-02T00:00:00.000Z')[1]!;
    const canonical = await both(cur({ t: mid.start_time, id: mid.id }));
    assert.equal(canonical.c.status, 200);
    const expected = canonical.c.body as unknown[];
    assert.ok(expected.length > 4 && expected.length < all.length, 'the page starts inside the rows of 2025-03-02');
    assert.deepEqual(strip(canonical.e.body), expected);
    for (const [label, k] of [
      ['no milliseconds', { t: '2025-03-02T00:00:00Z', id: mid.id }],
      ['more than milliseconds', { t: '2025-03-02T00:00:00.000000Z', id: mid.id }],
      ['upper-case id', { t: mid.start_time, id: mid.id.toUpperCase() }],
      ['both', { t: '2025-03-02T00:00:00Z', id: mid.id.toUpperCase() }],
    ] as const) {
      const { e, c } = await both(cur(k));
      assert.equal(c.status, 200, `${label}: central ${c.text}`);
      assert.equal(e.status, 200, `${label}: edge ${e.text}`);
      assert.deepEqual(c.body, expected, `${label}: central`);
      assert.deepEqual(strip(e.body), expected, `${label}: edge`);
    }
  });

  it('a time that is no real date, or a year outside 0001–9999, is the same 422 at both', async () => {
    const id = '00000000-0000-4000-8000-000000000000';
    for (const t of ['2025-13-45T00:00:00Z', '2025-02-30T00:00:00Z', '2025-04-31T00:00:00Z', '0000-01-01T00:00:00Z',
      '2025-03-02T24:00:00Z', '2025-03-02T00:00:60Z', '2025-03-02T25:00:00Z']) {
      const { e, c } = await both(cur({ t, id }));
      for (const [site, r] of [['edge', e], ['central', c]] as const) {
        assert.equal(r.status, 422, `${t} at ${site}: ${r.text}`);
        assert.deepEqual(r.body.error, {
          code: 'validation_error',
          message: 'Invalid cursor: pass the X-Next-Cursor value of the previous page unchanged',
          details: { location: 'query', path: 'cursor' },
        }, `${t} at ${site}`);
      }
    }
  });
});
