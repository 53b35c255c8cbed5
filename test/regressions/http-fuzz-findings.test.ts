// Found by a fuzz review of both sites (session 12; ≈ 37,000 mutated requests, edge and central side by
// side). Each case here was answered wrongly before, the same at both sites unless said:
// * an unknown method (TRACE, PROPFIND) got 501, a 5xx for the client's request;
// * `DELETE /api/tokens/0x10` revoked token 16: ids and numbers in paths and queries were read by
//   z.coerce.number(), which takes hex, exponents, spaces, and an empty value as 0;
// * a body labelled `Content-Encoding: gzip`, or with a charset other than UTF-8, was read as plain UTF-8;
// * what Node's HTTP parser refuses (malformed framing, headers too large, an unknown Expect) got a bare
//   status line with no body, not the API's JSON error;
// * at central, a body cut short while the token was checked was logged and counted as a 500;
// * `GET /executed_obs_units/start` matched `GET /executed_obs_units/{id}` and was a 422 ("not a UUID"),
//   where a method the path does not take is a 405;
// * central answered preferences for a negative user id (an edge's own account) in the sync schema's
//   words, "Invalid steps[0] (upsert user_preference): user_id: Too small";
// * a `__proto__` key at the top of a user's preferences was dropped without a word (copying the object
//   made it the copy's prototype); now a key of that name anywhere in a body is a 422.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startCentralAndEdge } from '../support/edge.js';

let sites: Awaited<ReturnType<typeof startCentralAndEdge>>;
before(async () => {
  sites = await startCentralAndEdge('http-fuzz', 'fuzzsite');
});
after(() => sites?.stop());

const both = () => [['central', sites.central.url, sites.central.admin], ['edge', sites.edge.url, sites.edge.admin]] as const;

/** Sends raw bytes and returns what came back before the server closed the connection. */
function raw(url: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect(Number(port), hostname, () => s.write(bytes));
    let got = '';
    s.on('data', (d) => (got += d.toString()));
    s.on('end', () => resolve(got));
    s.on('error', reject);
    s.setTimeout(5000, () => {
      s.destroy();
      resolve(got);
    });
  });
}

function jsonError(response: string): { status: number; code: string; message: string } {
  const [head, body] = [response.slice(0, response.indexOf('\r\n\r\n')), response.slice(response.indexOf('\r\n\r\n') + 4)];
  assert.match(head, /content-type: application\/json/i, response);
  const parsed = JSON.parse(body) as { error: { code: string; message: string } };
  return { status: Number(head.split(' ')[1]), ...parsed.error };
}

describe('what the fuzz review found, at both sites', () => {
  it('an unknown method is 405 method_not_allowed, not 501', async () => {
    for (const [site, url] of both()) {
      for (const method of ['TRACE', 'PROPFIND']) {
        const r = jsonError(await raw(url, `${method} /instruments/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
        assert.deepEqual([r.status, r.code], [405, 'method_not_allowed'], `${site} ${method}`);
      }
    }
  });

  it('a path that exists with another method is 405 with Allow, even where a route with an {id} would match it', async () => {
    for (const [site, url, admin] of both()) {
      for (const [method, path, allow] of [
        ['GET', '/executed_obs_units/start', 'POST'],
        ['GET', '/Executed_Obs_Units/START/', 'POST'],
        ['GET', '/raw_data_files/bulk', 'POST'],
        ['PUT', '/raw_data_files/bulk', 'POST'],
      ] as const) {
        for (const token of [admin.token, undefined]) {
          const r = await fetch(url + path, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
          const body = (await r.json()) as { error: { code: string } };
          assert.deepEqual([r.status, body.error.code], [405, 'method_not_allowed'], `${site} ${method} ${path} ${token ? 'with' : 'without'} a token`);
          assert.equal(r.headers.get('allow'), allow, `${site} ${method} ${path}`);
        }
      }
      // OPTIONS names the same methods.
      const options = await fetch(url + '/executed_obs_units/start', { method: 'OPTIONS' });
      assert.equal(options.headers.get('allow'), 'POST', `${site} OPTIONS`);
      // An id that is not a UUID is still a 422; a UUID that is not there, a 404.
      assert.equal((await admin.get('/executed_obs_units/started')).status, 422, site);
      assert.equal((await admin.get('/executed_obs_units/0190f5c2-0000-7000-8000-000000000000')).status, 404, site);
    }
  });

  it('an id or a number in a path or query must be decimal digits: 0x10, 1e0, " 5", +1 and "" are 422, and nothing is revoked', async () => {
    for (const [site, , admin] of both()) {
      const victim = (await admin.post('/api/tokens/', { body: { name: 'victim' } })).body as { id: number };
      for (const id of [`0x${victim.id.toString(16)}`, `${victim.id}e0`, `%20${victim.id}`, `+${victim.id}`]) {
        const r = await admin.del(`/api/tokens/${id}`);
        assert.equal(r.status, 422, `${site} DELETE /api/tokens/${id}: ${r.text}`);
        assert.match(r.text, /decimal digits/);
      }
      const tokens = (await admin.get('/api/tokens/?all=true')).body as { items?: { id: number; is_active: boolean }[] } | { id: number; is_active: boolean }[];
      const list = Array.isArray(tokens) ? tokens : tokens.items!;
      assert.equal(list.find((t) => t.id === victim.id)?.is_active, true, `${site}: the token is not revoked`);
      assert.equal((await admin.get('/instruments/0x1')).status, 422, site);
      assert.equal((await admin.get('/executed_obs_units/?limit=0x10')).status, 422, site);
      assert.equal((await admin.get('/executed_obs_units/?limit=')).status, 422, site);
      assert.equal((await admin.get('/executed_obs_units/?limit=10')).status, 200, site);
      assert.equal((await admin.get('/instruments/1')).status, 200, site);
    }
  });

  it('a body in another charset or content coding is 415, and a UTF-8 one labelled so is taken', async () => {
    for (const [site, url, admin] of both()) {
      const post = (headers: Record<string, string>) => fetch(`${url}/executed_obs_units/start`, {
        method: 'POST', body: JSON.stringify({ obs_unit_id: 1 }), headers: { authorization: `Bearer ${admin.token}`, ...headers },
      });
      for (const headers of <Record<string, string>[]>[
        { 'content-type': 'application/json', 'content-encoding': 'gzip' },
        { 'content-type': 'application/json; charset=latin1' },
        { 'content-type': 'application/json; charset=utf-16' },
      ]) {
        const r = await post(headers);
        assert.equal(r.status, 415, `${site} ${JSON.stringify(headers)}`);
        assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'unsupported_media_type');
      }
      assert.equal((await post({ 'content-type': 'application/json; charset=UTF-8' })).status, 201, site);
      assert.equal((await post({ 'content-type': 'application/json', 'content-encoding': 'identity' })).status, 201, site);
    }
  });

  it('what Node\'s HTTP parser refuses gets the JSON error shape: bad framing 400, headers too large 431, an unknown Expect 417', async () => {
    for (const [site, url] of both()) {
      const framing = jsonError(await raw(url, 'POST /executed_obs_units/start HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}'));
      assert.equal(framing.status, 400, site);
      assert.equal(framing.code, 'bad_request');
      const big = jsonError(await raw(url, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`));
      assert.deepEqual([big.status, big.code], [431, 'headers_too_large'], site);
      const expect = jsonError(await raw(url, 'GET /health HTTP/1.1\r\nHost: x\r\nExpect: bogus\r\nConnection: close\r\n\r\n'));
      assert.deepEqual([expect.status, expect.code], [417, 'expectation_failed'], site);
    }
  });

  it('a key named __proto__, spelt out or escaped, at the top or nested, is 422 and stores nothing', async () => {
    for (const [site, , admin] of both()) {
      for (const prefs of ['{"__proto__":{"theme":"dark"}}', '{"theme":"dark","nested":{"__proto__":1}}', '{"\\u005f_proto__":{"theme":"dark"}}',
        '{"list":[{"__pro\\u0074o__":1}]}', '{"\\u005F\\u005Fproto__":1}']) {
        const r = await admin.post('/api/demo/update-user-preferences', { raw: `{"user_id":${admin.userId},"preferences":${prefs}}` });
        assert.equal(r.status, 422, `${site} ${prefs}: ${r.text}`);
        assert.equal(r.body.error.code, 'validation_error');
        assert.match(r.body.error.message, /__proto__ is not accepted/);
      }
    }
    // Escapes and the word elsewhere are still fine (central: its admin is a user with preferences).
    const ok = await sites.central.admin.post('/api/demo/update-user-preferences', {
      raw: `{"user_id":${sites.central.admin.userId},"preferences":{"caf\\u00e9":"proto","note":"__proto__ as a value"}}`,
    });
    assert.equal(ok.status, 200, ok.text);
    const { rows } = await sites.central.db.query('SELECT preferences FROM user_preference WHERE user_id = $1', [sites.central.admin.userId]);
    assert.deepEqual(rows[0].preferences, { café: 'proto', note: '__proto__ as a value' });
  });

  it('central answers preferences for a negative user id as for any user it lacks, not in the sync schema\'s words', async () => {
    const r = await sites.central.admin.post('/api/demo/update-user-preferences', { body: { user_id: -5, preferences: { theme: 'dark' } } });
    assert.equal(r.status, 422, r.text);
    assert.deepEqual([r.body.error.code, r.body.error.message], ['reference_not_found', 'user -5 does not exist']);
    assert.equal(r.body.error.details.step, 'prefs');
    const { rows } = await sites.central.db.query('SELECT count(*)::int AS n FROM user_preference WHERE user_id = -5');
    assert.equal(rows[0].n, 0);
  });

  it('a body cut short is the client\'s fault: never counted as a 500', async () => {
    for (const [site, url, admin] of both()) {
      // A body without a Content-Length is no body to HTTP: the parser then fails on it as the next request,
      // while the first is still being authenticated.
      for (let i = 0; i < 5; i++) {
        await raw(url, `POST /executed_obs_units/start HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ${admin.token}\r\nContent-Type: application/json\r\n\r\n{"obs_unit_id":1}`);
      }
      const metrics = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${admin.token}` } })).text();
      assert.doesNotMatch(metrics, /status="5\d\d"/, `${site}: no request counted as a 5xx`);
    }
  });
});
