// The hot writes are served without koa (FastLane in src/lib/http/context.ts), at the edge and at
// central. Two sites of a kind on the same data, one with the fast lane and one serving every
// request with koa (HTTP_FAST_LANE=false), get the same requests: every answer must be the same
// status line, headers (in the same order) and body, and so must what was stored and the metrics.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { FastLane } from '../src/lib/http/context.js';
import { request as httpRequest } from 'node:http';
import { startTestEdge } from './support/edge.js';
import { startTestCentral, writeCounts } from './support/central.js';
import { request, type Client } from './support/http.js';
import { BAD_INPUT_CASES, BAD_INPUT_MAX_BODY_BYTES, START_TIME_OF_OBS, fillPlaceholders, type Placeholders } from './support/bad-input-cases.js';

const FILE = { name: 'f.fits', path: '/data/f.fits', size: 1024, checksum: 'abc', file_type: 'fits' };

interface Site {
  url: string;
  admin: Client;
  p: Placeholders;
  viewer: string;
  /** What the site stored, comparable between two sites of a kind. */
  ledger(): Promise<unknown>;
  stop(): Promise<void>;
}

const LIMITS = { MAX_BODY_BYTES: BAD_INPUT_MAX_BODY_BYTES };
const switchOff = (off: boolean) => (off ? { HTTP_FAST_LANE: false } : {});

/** A site of each kind, with the fast lane given or switched off. */
const KINDS = {
  edge: async (label: string, lane: FastLane | null) => {
    const edge = await startTestEdge(label, { overrides: { ...LIMITS, ...switchOff(!lane) }, http: lane ? { fastLane: lane } : {} });
    return {
      url: edge.url, admin: edge.admin, as: edge.as, stop: () => edge.stop(),
      ledger: async (p: Placeholders) => {
        const st = await edge.running.buffer.stats();
        const txs = await edge.running.buffer.list({ state: 'pending', limit: 1000 });
        return { accepted: st.accepted_total, steps: txs.map((t) => normalise(p, JSON.stringify([t.endpoint, t.steps, t.depends_on.length]))) };
      },
    };
  },
  central: async (label: string, lane: FastLane | null) => {
    const central = await startTestCentral(label, { ...LIMITS, ...switchOff(!lane) }, lane ? { fastLane: lane } : {});
    return { url: central.url, admin: central.admin, as: central.as, stop: () => central.stop(), ledger: () => writeCounts(central.db) };
  },
};

interface Call {
  name: string;
  method: 'POST' | 'PUT';
  path: string;
  body?: unknown;
  raw?: string | Buffer;
  headers?: Record<string, string>;
  /** 'admin' (default), 'viewer', or no token at all. */
  as?: 'viewer' | 'none';
  /** Whether the fast lane takes it (an exact hot path) or koa does. */
  lane: 'fast' | 'koa';
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;
const TIME = /\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d(:?\d\d)?)?/g;

/** An answer with what differs between two sites by nature (their ids, clocks) named instead. */
function normalise(p: Placeholders, text: string): string {
  return text.replaceAll(p.obs, '{obs}').replaceAll(p.pkg, '{pkg}').replace(UUID, '<uuid>').replace(TIME, '<time>');
}

/** One request over node:http, which keeps the response's headers in the order they were sent. */
async function send(s: Site, c: Call) {
  const token = c.as === 'none' ? undefined : c.as === 'viewer' ? s.viewer : s.admin.token;
  const headers: Record<string, string> = { 'x-request-id': 'fast-lane-test' };
  if (token) headers.authorization = `Bearer ${token}`;
  const body = c.raw !== undefined ? fillPlaceholders(c.raw, s.p) : c.body !== undefined ? JSON.stringify(fillPlaceholders(c.body, s.p)) : undefined;
  if (body !== undefined) headers['content-type'] = 'application/json';
  Object.assign(headers, c.headers);
  return new Promise<{ status: number; message: string; headers: string[]; body: string }>((resolve, reject) => {
    const req = httpRequest(s.url + fillPlaceholders(c.path, s.p), { method: c.method, headers, signal: AbortSignal.timeout(10_000) }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d)).on('end', () => {
        const raw: string[] = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) {
          const [name, value] = [res.rawHeaders[i]!, res.rawHeaders[i + 1]!];
          if (name.toLowerCase() === 'date') continue;
          // The body's length varies with what normalise() hides (PostgreSQL drops a timestamp's trailing zeros): it must be the body's.
          if (name.toLowerCase() === 'content-length') raw.push(`${name}: ${Number(value) === Buffer.byteLength(text) ? 'the body\'s' : value}`);
          else raw.push(`${name}: ${normalise(s.p, value)}`);
        }
        resolve({ status: res.statusCode!, message: res.statusMessage!, headers: raw, body: normalise(s.p, text) });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

for (const [kind, start] of Object.entries(KINDS)) describe(`${kind}: the fast lane answers as koa does`, () => {
  const lane = new FastLane();
  const missing = randomUUID();
  let fast: Site;
  let koa: Site;

  const site = async (label: string, lane: FastLane | null): Promise<Site> => {
    const s = await start(label, lane);
    const obs = await s.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1, start_time: START_TIME_OF_OBS } });
    const pkg = await s.admin.post('/raw_data_package/', { body: { name: 'lane-pkg', executed_obs_unit_id: obs.body.id } });
    assert.equal(pkg.status, 201, pkg.text);
    const p = { obs: obs.body.id, pkg: pkg.body.id, missing };
    return { url: s.url, admin: s.admin, p, viewer: (await s.as(['viewer'])).token!, ledger: () => s.ledger(p), stop: s.stop };
  };

  before(async () => {
    fast = await site(`lane-fast-${kind}`, lane);
    // The operator's switch: every request through koa.
    koa = await site(`lane-koa-${kind}`, null);
  });
  after(async () => {
    await fast?.stop();
    await koa?.stop();
  });

  const valid: Call[] = [
    { name: 'start', method: 'POST', path: '/executed_obs_units/start', body: { obs_unit_id: 2, start_time: '2025-07-01T00:00:00Z' }, lane: 'fast' },
    { name: 'file', method: 'POST', path: '/raw_data_files/', body: { ...FILE, executed_obs_unit_id: '{obs}' }, lane: 'fast' },
    { name: 'bulk', method: 'POST', path: '/raw_data_files/bulk', body: { executed_obs_unit_id: '{obs}', files: [{ ...FILE, name: 'g.fits' }] }, lane: 'fast' },
    { name: 'package', method: 'POST', path: '/raw_data_package/', body: { name: 'second', executed_obs_unit_id: '{obs}' }, lane: 'fast' },
    { name: 'finalize', method: 'PUT', path: '/raw_data_package/{pkg}/finalize', body: { checksum: 'sha:1', size: 10 }, lane: 'fast' },
    { name: 'finish', method: 'PUT', path: '/executed_obs_units/{obs}/finish', body: { status: 'success' }, lane: 'fast' },
    {
      name: 'create-observation', method: 'POST', path: '/api/demo/create-observation', lane: 'fast',
      body: { obs_data: { obs_unit_id: 1, start_time: '2025-01-01T00:00:00Z', package_name: 'p', instrument_module_configuration_id: 1 }, raw_files: [FILE] },
    },
    { name: 'preferences', method: 'POST', path: '/api/demo/update-user-preferences', body: { user_id: 1, preferences: { theme: 'dark' } }, lane: 'fast' },
    // Not the path exactly: koa decides, in both edges.
    { name: 'trailing slash', method: 'POST', path: '/executed_obs_units/start/', body: { obs_unit_id: 2 }, lane: 'koa' },
    { name: 'query string', method: 'POST', path: '/executed_obs_units/start?x=1', body: { obs_unit_id: 2 }, lane: 'koa' },
    { name: 'upper case', method: 'POST', path: '/EXECUTED_OBS_UNITS/start', body: { obs_unit_id: 2 }, lane: 'koa' },
    { name: 'escaped parameter', method: 'PUT', path: '/executed_obs_units/%7Bobs%7D/finish', body: { status: 'success' }, lane: 'koa' },
    { name: 'no route there', method: 'PUT', path: '/executed_obs_units/start', body: { obs_unit_id: 2 }, lane: 'koa' },
  ];
  const refused: Call[] = [
    { name: 'no token', method: 'POST', path: '/executed_obs_units/start', body: { obs_unit_id: 2 }, as: 'none', lane: 'fast' },
    { name: 'not a bearer token', method: 'POST', path: '/executed_obs_units/start', body: { obs_unit_id: 2 }, headers: { authorization: 'Basic x' }, as: 'none', lane: 'fast' },
    { name: 'unknown token', method: 'POST', path: '/raw_data_files/', body: {}, headers: { authorization: `Bearer opsdb_${'x'.repeat(40)}` }, as: 'none', lane: 'fast' },
    { name: 'viewer may not write', method: 'PUT', path: '/executed_obs_units/{obs}/finish', body: { status: 'success' }, as: 'viewer', lane: 'fast' },
    { name: 'not a uuid', method: 'PUT', path: '/raw_data_package/pkg-1/finalize', body: { checksum: 'x', size: 1 }, lane: 'fast' },
    ...BAD_INPUT_CASES.filter((c) => c.method === 'POST' || c.method === 'PUT').map((c): Call => ({
      name: `bad input: ${c.name}`, method: c.method as 'POST' | 'PUT', path: c.path, body: c.body, raw: c.raw, headers: c.headers, lane: 'koa',
    })),
  ];

  for (const c of [...valid, ...refused]) {
    it(`${c.method} ${c.path}: ${c.name}`, async () => {
      const before = lane.served;
      const a = await send(fast, c);
      const b = await send(koa, c);
      assert.deepEqual(a, b);
      if (c.lane === 'koa' && !c.name.startsWith('bad input')) assert.equal(lane.served, before, 'koa served it');
      if (c.lane === 'fast') assert.equal(lane.served, before + 1, 'the fast lane served it');
    });
  }

  it('the bad-input cases on hot paths went through the fast lane', () => {
    // Each valid and refused call marked 'fast' took it once; the bad-input table adds its hot-path cases.
    const marked = [...valid, ...refused].filter((c) => c.lane === 'fast').length;
    assert.ok(lane.served > marked + 20, `served ${lane.served}, of which ${marked} marked`);
  });

  it('what was stored and the request metrics are the same', async () => {
    assert.deepEqual(await fast.ledger(), await koa.ledger());
    const counts = async (s: Site) => (await request(s.url, 'GET', '/metrics', { token: s.admin.token })).text
      .split('\n').filter((l) => l.startsWith('opsdb_http_request_duration_seconds_count{') && !l.includes('route="/metrics"')).sort();
    const [a, b] = [await counts(fast), await counts(koa)];
    assert.ok(a.length > 10, a.join('\n'));
    assert.deepEqual(a, b);
  });
});
