// POST /api/tokens/ at central: a token never mints one that outlives it (a token with an expiry used to
// mint one with `expires_at: null`, which never expires); and `user_id` takes any nonzero 32-bit id, a
// negative one being at central simply a user that does not exist (the edge's local users have them).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { client, type Client } from '../support/http.js';

const HOUR = 3_600_000;

describe('minting tokens at central', () => {
  let c: TestCentral;
  before(async () => {
    c = await startTestCentral('token-mint');
  });
  after(() => c?.stop());

  /** A client with a token of `userId` that expires at `expiresAt`. */
  const expiring = async (userId: number, expiresAt: string): Promise<Client> =>
    client(c.url, (await c.accounts.createToken(userId, { name: 'expiring', scopes: [], expires_at: expiresAt })).token);
  const tokenCount = async () => Number((await c.db.query('SELECT count(*) FROM api_token')).rows[0].count);

  it('a token that expires mints tokens that expire no later: none asked → its expiry; later → 422', async () => {
    const user = await c.as(['observer']);
    const until = new Date(Date.now() + HOUR).toISOString();
    const mine = await expiring(user.userId, until);

    for (const body of [{ name: 'none asked' }, { name: 'null asked', expires_at: null }]) {
      const r = await mine.post('/api/tokens/', { body });
      assert.equal(r.status, 201, r.text);
      assert.equal(r.body.expires_at, until, `${body.name}: the caller's expiry, never null`);
      // What the database holds, and so what authentication checks.
      const { rows } = await c.db.query('SELECT expires_at FROM api_token WHERE id = $1', [r.body.id]);
      assert.equal(rows[0].expires_at.toISOString(), until);
      // And one minted with it is capped the same way.
      const again = await client(c.url, r.body.token).post('/api/tokens/', { body: { name: 'grandchild' } });
      assert.equal(again.status, 201, again.text);
      assert.equal(again.body.expires_at, until);
    }

    const earlier = new Date(Date.now() + HOUR / 2).toISOString();
    const r = await mine.post('/api/tokens/', { body: { name: 'earlier', expires_at: earlier } });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.body.expires_at, earlier, 'an earlier expiry is kept');
    const same = await mine.post('/api/tokens/', { body: { name: 'same', expires_at: until } });
    assert.equal(same.status, 201, same.text);
    assert.equal(same.body.expires_at, until);

    const before = await tokenCount();
    const later = await mine.post('/api/tokens/', { body: { name: 'later', expires_at: new Date(Date.now() + 2 * HOUR).toISOString() } });
    assert.equal(later.status, 422, later.text);
    assert.equal(later.body.error.code, 'validation_error');
    assert.equal(later.body.error.message,
      `Invalid body: expires_at: A token cannot outlive the token that creates it: expires_at must be at or before ${until} (when this token expires)`);
    assert.deepEqual(later.body.error.details, [{ location: 'body', path: 'expires_at', message: later.body.error.message.replace('Invalid body: expires_at: ', ''), max: until }]);
    assert.equal(await tokenCount(), before, 'nothing was made');
  });

  it('an admin token that expires is capped the same when it mints for another user', async () => {
    const until = new Date(Date.now() + HOUR).toISOString();
    const admin = await expiring((await c.as(['admin'])).userId, until);
    const other = await c.as(['viewer']);
    const r = await admin.post('/api/tokens/', { body: { name: 'for other', user_id: other.userId } });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.body.user_id, other.userId);
    assert.equal(r.body.expires_at, until);
    const later = await admin.post('/api/tokens/', { body: { name: 'for other', user_id: other.userId, expires_at: '2999-01-01T00:00:00Z' } });
    assert.equal(later.status, 422, later.text);
  });

  it('a token that never expires mints what is asked', async () => {
    const none = await c.admin.post('/api/tokens/', { body: { name: 'forever' } });
    assert.equal(none.status, 201, none.text);
    assert.equal(none.body.expires_at, null);
    const far = await c.admin.post('/api/tokens/', { body: { name: 'far', expires_at: '2999-01-01T00:00:00Z' } });
    assert.equal(far.status, 201, far.text);
    assert.equal(far.body.expires_at, '2999-01-01T00:00:00.000Z');
  });

  it('a negative user_id is a user that does not exist here: answered as any unknown user', async () => {
    for (const id of [-5, -2_147_483_648, 999_999]) {
      const made = await c.admin.post('/api/tokens/', { body: { name: 'x', user_id: id } });
      assert.equal(made.status, 404, `${id}: ${made.text}`);
      assert.equal(made.body.error.code, 'not_found');
      assert.equal(made.body.error.message, `User ${id} not found`);
      const list = await c.admin.get(`/api/tokens/?user_id=${id}`);
      assert.equal(list.status, 200, `${id}: ${list.text}`);
      assert.deepEqual(list.body, []);
    }
    // Zero and ids past 32 bits stay 422; a non-admin asking for another id stays 403.
    for (const id of [0, -2_147_483_649, 2_147_483_648]) {
      assert.equal((await c.admin.post('/api/tokens/', { body: { name: 'x', user_id: id } })).status, 422, String(id));
      assert.equal((await c.admin.get(`/api/tokens/?user_id=${id}`)).status, 422, String(id));
    }
    const viewer = await c.as(['viewer']);
    assert.equal((await viewer.post('/api/tokens/', { body: { name: 'x', user_id: -5 } })).status, 403);
    assert.equal((await viewer.get('/api/tokens/?user_id=-5')).status, 403);
  });
});
