// SPEC §2.9 and §5: who may call what, against a real central on PostgreSQL.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startTestCentral, writeCounts, type TestCentral } from '../support/central.js';
import { client, type Client, type Reply } from '../support/http.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const TOKEN_RE = /^ops_api_token_[A-Za-z0-9_-]{43}$/;
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

function assertError(res: Reply, status: number, code?: string): void {
  assert.equal(res.status, status, res.text);
  assert.equal(typeof res.body?.error?.message, 'string', res.text);
  assert.ok(res.body.error.message.length > 0);
  if (code) assert.equal(res.body.error.code, code);
}

async function poll<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 3000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > until) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('central: auth', () => {
  let central: TestCentral;
  let obsId: string;
  let txId: string;

  before(async () => {
    central = await startTestCentral('auth');
    const obs = await central.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    assert.equal(obs.status, 201, obs.text);
    obsId = obs.body.id;
    txId = obs.body.transaction_id;
  });

  after(async () => {
    await central?.stop();
  });

  describe('role matrix', () => {
    type Who = 'admin' | 'observer' | 'viewer' | 'service' | 'site' | 'anonymous';
    const WHO: Who[] = ['admin', 'observer', 'viewer', 'service', 'site', 'anonymous'];
    type Caller = Client & { userId: number };
    const file = { name: 'm.fits', path: '/d/m.fits', size: 1, checksum: 'c', file_type: 'fits' };
    // Expected status per caller: 2xx = allowed, 403 = wrong role, 401 = no token. From auth.ts:
    // READ = viewer/observer/service/admin, WRITE = observer/service/admin, /auth/me = any role.
    //                admin observer viewer service site anonymous
    const READ = [200, 200, 200, 200, 403, 401];
    const WRITE = [201, 201, 403, 201, 403, 401];
    const MATRIX: { name: string; writes?: true; call: (c: Caller) => Promise<Reply>; expect: number[] }[] = [
      { name: 'GET /instruments/', call: (c) => c.get('/instruments/'), expect: READ },
      { name: 'GET /executed_obs_units/', call: (c) => c.get('/executed_obs_units/'), expect: READ },
      {
        name: 'POST /executed_obs_units/start',
        writes: true,
        call: (c) => c.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } }),
        expect: WRITE,
      },
      {
        name: 'POST /raw_data_files/bulk',
        writes: true,
        call: (c) => c.post('/raw_data_files/bulk', { body: { executed_obs_unit_id: obsId, files: [file] } }),
        expect: WRITE,
      },
      { name: 'GET /api/transfer/overview', call: (c) => c.get('/api/transfer/overview'), expect: READ },
      { name: 'GET /auth/me', call: (c) => c.get('/auth/me'), expect: [200, 200, 200, 200, 200, 401] },
      { name: 'POST /api/tokens/', call: (c) => c.post('/api/tokens/', { body: { name: 'matrix' } }), expect: [201, 201, 201, 201, 403, 401] },
      { name: 'GET /api/tokens/', call: (c) => c.get('/api/tokens/'), expect: READ },
      { name: 'GET /api/transactions/{id}', call: (c) => c.get(`/api/transactions/${txId}`), expect: READ },
      {
        name: 'POST /api/demo/update-user-preferences (own id)',
        writes: true,
        call: (c) => c.post('/api/demo/update-user-preferences', { body: { user_id: c.userId, preferences: { a: 1 } } }),
        expect: READ,
      },
    ];
    const callers = new Map<Who, Caller>();

    before(async () => {
      for (const who of WHO) {
        callers.set(who, who === 'anonymous' ? Object.assign(central.anonymous, { userId: 1 }) : await central.as([who]));
      }
    });

    for (const row of MATRIX) {
      WHO.forEach((who, i) => {
        const want = row.expect[i]!;
        it(`${row.name} as ${who} → ${want}`, async () => {
          const before = await writeCounts(central.db);
          const res = await row.call(callers.get(who)!);
          if (want < 300) {
            assert.equal(res.status, want, res.text);
          } else {
            assertError(res, want, want === 401 ? undefined : 'forbidden');
            if (want === 401) assert.equal(res.headers.get('www-authenticate'), 'Bearer');
            assert.deepEqual(await writeCounts(central.db), before, 'a refused request writes nothing');
          }
          if (row.writes && want < 300) assert.notDeepEqual(await writeCounts(central.db), before, 'an allowed write writes');
        });
      });
    }
  });

  describe('401 vs 403', () => {
    const url = () => central.url;
    it('no Authorization header → 401 with WWW-Authenticate: Bearer', async () => {
      const res = await central.anonymous.get('/instruments/');
      assertError(res, 401);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer');
    });
    it('a Basic header → 401', async () => {
      const res = await central.anonymous.get('/instruments/', { headers: { authorization: 'Basic YWRtaW46YWRtaW4=' } });
      assertError(res, 401);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer');
    });
    it('a garbage bearer token → 401', async () => {
      assertError(await client(url(), 'not-a-token').get('/instruments/'), 401, 'invalid_token');
    });
    it('a well-formed but unknown token → 401', async () => {
      assertError(await client(url(), `ops_api_token_${'A'.repeat(43)}`).get('/instruments/'), 401, 'invalid_token');
    });
    it('a valid viewer token on a write → 403, not 401', async () => {
      const viewer = await central.as(['viewer']);
      assert.equal((await viewer.get('/instruments/')).status, 200);
      assertError(await viewer.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } }), 403, 'forbidden');
    });
    it('public endpoints need no token; /metrics does by default', async () => {
      assert.equal((await central.anonymous.get('/health')).status, 200);
      assert.equal((await central.anonymous.get('/openapi.json')).status, 200);
      assertError(await central.anonymous.get('/metrics'), 401);
    });
  });

  describe('tokens', () => {
    it('are shown once and stored only as a SHA-256 digest', async () => {
      const user = await central.as(['viewer']);
      const created = await user.post('/api/tokens/', { body: { name: 'shown-once' } });
      assert.equal(created.status, 201, created.text);
      const token: string = created.body.token;
      assert.match(token, TOKEN_RE);
      assert.ok(token.startsWith(created.body.prefix) && created.body.prefix.length < token.length);

      const list = await user.get('/api/tokens/');
      assert.equal(list.status, 200);
      assert.ok(!list.text.includes(token), 'the list never contains a token');
      const mine = list.body.find((t: { id: number }) => t.id === created.body.id);
      assert.ok(mine, 'the new token is listed');
      assert.equal(mine.prefix, created.body.prefix);
      assert.equal('token' in mine, false);
      for (const t of list.body) assert.equal('token' in t, false);

      const { rows } = await central.db.query('SELECT token_hash, row_to_json(t)::text AS j FROM api_token t WHERE id = $1', [created.body.id]);
      assert.equal(rows[0].token_hash, sha256(token));
      assert.ok(!rows[0].j.includes(token.slice('ops_api_token_'.length)), 'the token text is not stored');
      assert.equal((await client(central.url, token).get('/auth/me')).body.id, user.userId);
    });

    it('revocation takes effect at once; only the owner or an admin can revoke', async () => {
      const owner = await central.as(['viewer']);
      const other = await central.as(['observer']);
      const a = await owner.post('/api/tokens/', { body: { name: 'a' } });
      const b = await owner.post('/api/tokens/', { body: { name: 'b' } });
      const ta = client(central.url, a.body.token);
      const tb = client(central.url, b.body.token);
      assert.equal((await ta.get('/auth/me')).status, 200);

      assertError(await other.del(`/api/tokens/${a.body.id}`), 404, 'not_found');
      assert.equal((await ta.get('/auth/me')).status, 200, "another user's attempt changed nothing");

      const revoked = await ta.del(`/api/tokens/${a.body.id}`);
      assert.equal(revoked.status, 200, revoked.text);
      assert.equal(revoked.body.is_active, false);
      assertError(await ta.get('/auth/me'), 401, 'token_revoked');
      assert.equal((await tb.get('/auth/me')).status, 200, 'other tokens of the user still work');

      assert.equal((await central.admin.del(`/api/tokens/${b.body.id}`)).status, 200);
      assertError(await tb.get('/instruments/'), 401, 'token_revoked');
    });

    it('an expired token → 401 token_expired', async () => {
      const user = await central.as(['viewer']);
      const past = await central.accounts.createToken(user.userId, {
        name: 'old',
        scopes: [],
        expires_at: new Date(Date.now() - 60_000).toISOString(),
      });
      const future = await central.accounts.createToken(user.userId, {
        name: 'new',
        scopes: [],
        expires_at: new Date(Date.now() + 3_600_000).toISOString(),
      });
      assertError(await client(central.url, past.token).get('/auth/me'), 401, 'token_expired');
      assert.equal((await client(central.url, future.token).get('/auth/me')).status, 200);
    });

    it('a deactivated user → 401', async () => {
      const user = await central.as(['observer']);
      assert.equal((await user.get('/auth/me')).status, 200);
      await central.db.query('UPDATE "user" SET is_active = false WHERE id = $1', [user.userId]);
      assertError(await user.get('/auth/me'), 401);
      assertError(await user.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } }), 401);
    });

    it('scopes: an admin token scoped to viewer can read but not write', async () => {
      const adminUser = await central.as(['admin']);
      const made = await adminUser.post('/api/tokens/', { body: { name: 'read-only', scopes: ['viewer'] } });
      assert.equal(made.status, 201, made.text);
      assert.deepEqual(made.body.scopes, ['viewer']);
      const scoped = client(central.url, made.body.token);
      assert.equal((await scoped.get('/instruments/')).status, 200, 'reads are allowed');
      assert.equal((await scoped.get('/executed_obs_units/')).status, 200);
      assertError(await scoped.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } }), 403, 'forbidden');
      assertError(await scoped.get('/api/tokens/?all=true'), 403, 'forbidden');
    });

    it('scopes: a scoped token cannot mint a token with more rights than itself', async () => {
      // Holds 'viewer' by name, so this does not depend on roles implying each other.
      const observer = await central.as(['observer', 'viewer']);
      const made = await observer.post('/api/tokens/', { body: { name: 'ro', scopes: ['viewer'] } });
      assert.equal(made.status, 201, made.text);
      const scoped = client(central.url, made.body.token);
      assert.equal((await scoped.get('/instruments/')).status, 200);
      assertError(await scoped.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } }), 403, 'forbidden');
      assertError(await scoped.post('/api/tokens/', { body: { name: 'rw', scopes: ['observer'] } }), 403);
      const before = await writeCounts(central.db);
      const wider = await scoped.post('/api/tokens/', { body: { name: 'all-of-mine' } });
      if (wider.status === 201) {
        const res = await client(central.url, wider.body.token).post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
        assert.equal(res.status, 403, `a viewer-scoped token minted a token that can write: ${res.status}`);
      } else {
        assertError(wider, 403);
      }
      assert.deepEqual(await writeCounts(central.db), before);
    });

    it('usage is tracked: usage_count and last_used_at', async () => {
      const user = await central.as(['viewer']);
      const { rows } = await central.db.query('SELECT id, usage_count, last_used_at FROM api_token WHERE user_id = $1', [user.userId]);
      assert.equal(rows.length, 1);
      assert.equal(Number(rows[0].usage_count), 0);
      assert.equal(rows[0].last_used_at, null);
      assert.equal((await user.get('/auth/me')).status, 200);
      assert.equal((await user.get('/instruments/')).status, 200);
      const row = await poll(
        async () => (await central.db.query('SELECT usage_count, last_used_at FROM api_token WHERE id = $1', [rows[0].id])).rows[0],
        (r) => Number(r.usage_count) >= 2 && r.last_used_at !== null,
      );
      assert.ok(Number(row.usage_count) >= 2, `usage_count ${row.usage_count}`);
      assert.ok(row.last_used_at instanceof Date && Date.now() - row.last_used_at.getTime() < 60_000);
    });
  });

  it("/auth/me returns the tutorial's fields", async () => {
    const user = await central.as(['observer', 'viewer']);
    const me = await user.get('/auth/me');
    assert.equal(me.status, 200);
    assert.deepEqual(Object.keys(me.body).sort(), ['created_at', 'email', 'full_name', 'id', 'is_active', 'roles', 'username']);
    assert.equal(me.body.id, user.userId);
    assert.equal(typeof me.body.username, 'string');
    assert.deepEqual([...me.body.roles].sort(), ['observer', 'viewer']);
    assert.equal(me.body.is_active, true);
    assert.ok(!Number.isNaN(Date.parse(me.body.created_at)));
    const admin = await central.admin.get('/auth/me');
    assert.deepEqual(admin.body.roles, ['admin']);
  });

  it('update-user-preferences: another user → 403, own id → 200', async () => {
    const user = await central.as(['viewer']);
    const before = await writeCounts(central.db);
    assertError(await user.post('/api/demo/update-user-preferences', { body: { user_id: 1, preferences: { x: 1 } } }), 403, 'forbidden');
    assert.deepEqual(await writeCounts(central.db), before);
    const own = await user.post('/api/demo/update-user-preferences', { body: { user_id: user.userId, preferences: { theme: 'dark' } } });
    assert.equal(own.status, 200, own.text);
    assert.equal(own.body.status, 'success');
    assert.equal(typeof own.body.message, 'string');
    assert.match(own.body.transaction_id, UUID_RE);
    const { rows } = await central.db.query('SELECT preferences FROM user_preference WHERE user_id = $1', [user.userId]);
    assert.deepEqual(rows[0]?.preferences, { theme: 'dark' });
  });

  it('/api/demo/create-demo-token is 404 when DEMO_MODE is off', async () => {
    const before = (await central.db.query('SELECT count(*)::int AS n FROM api_token')).rows[0].n;
    assertError(await central.anonymous.post('/api/demo/create-demo-token'), 404, 'not_found');
    assert.equal((await central.db.query('SELECT count(*)::int AS n FROM api_token')).rows[0].n, before);
  });

  describe('with DEMO_MODE=true', () => {
    let demo: TestCentral;
    before(async () => {
      demo = await startTestCentral('auth demo', { DEMO_MODE: true });
    });
    after(async () => {
      await demo?.stop();
    });

    it('create-demo-token gives a working admin token for user 1', async () => {
      const res = await demo.anonymous.post('/api/demo/create-demo-token');
      assert.ok(res.status === 200 || res.status === 201, res.text);
      assert.deepEqual(Object.keys(res.body).sort(), ['role', 'token', 'user_id']);
      assert.equal(res.body.role, 'admin');
      assert.equal(res.body.user_id, 1);
      assert.match(res.body.token, TOKEN_RE);
      const me = await client(demo.url, res.body.token).get('/auth/me');
      assert.equal(me.status, 200, me.text);
      assert.equal(me.body.username, 'admin');
      assert.equal(me.body.id, 1);
      assert.deepEqual(me.body.roles, ['admin']);
    });
  });
});
