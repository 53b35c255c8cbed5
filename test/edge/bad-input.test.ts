// SPEC §2.8 at the edge: the same table of bad input as central gets a clear
// 4xx, nothing is buffered, and never a 5xx.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startTestEdge, type TestEdge } from '../support/edge.js';
import { BAD_INPUT_CASES, BAD_INPUT_MAX_BODY_BYTES, START_TIME_OF_OBS, fillPlaceholders, type Placeholders } from '../support/bad-input-cases.js';

describe('edge: bad input (replica holds the reference data)', () => {
  let edge: TestEdge;
  let p: Placeholders;

  before(async () => {
    edge = await startTestEdge('bad-input', { overrides: { MAX_BODY_BYTES: BAD_INPUT_MAX_BODY_BYTES } });
    const obs = await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1, start_time: START_TIME_OF_OBS } });
    assert.equal(obs.status, 201, obs.text);
    const pkg = await edge.admin.post('/raw_data_package/', { body: { name: 'bad-input-pkg', executed_obs_unit_id: obs.body.id } });
    assert.equal(pkg.status, 201, pkg.text);
    p = { obs: obs.body.id, pkg: pkg.body.id, missing: randomUUID() };
  });
  after(() => edge?.stop());

  /** What a write could change: the buffer's ledger and the local tokens. */
  const counts = async () => {
    const s = await edge.running.buffer.stats();
    const tokens = edge.running.local.db.prepare('SELECT count(*) AS n FROM api_token').get() as { n: number };
    return { accepted: s.accepted_total, held_bytes: s.held_bytes, tokens: tokens.n };
  };

  for (const c of BAD_INPUT_CASES) {
    it(`${c.method} ${c.path}: ${c.name} → ${c.expectStatus}`, async () => {
      const before = await counts();
      const opts: { body?: unknown; raw?: string | Buffer; headers?: Record<string, string> } = {};
      if (c.raw !== undefined) opts.raw = fillPlaceholders(c.raw, p);
      else if (c.body !== undefined) opts.body = fillPlaceholders(c.body, p);
      if (c.headers) opts.headers = c.headers;
      const method = { GET: 'get', POST: 'post', PUT: 'put', DELETE: 'del' } as const;
      const res = await edge.admin[method[c.method]](fillPlaceholders(c.path, p), opts);
      assert.ok(res.status < 500, `never a 5xx: got ${res.status} ${res.text}`);
      assert.equal(res.status, c.expectStatus, `status (body: ${res.text.slice(0, 400)})`);
      assert.deepEqual(Object.keys(res.body.error).sort(), ['code', 'details', 'message']);
      assert.ok(res.body.error.message.trim().length > 0);
      if (c.expectCode) assert.equal(res.body.error.code, c.expectCode);
      assert.deepEqual(await counts(), before, 'nothing was buffered');
    });
  }
});
