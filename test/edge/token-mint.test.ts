// POST/GET /api/tokens/ at an edge with no central: an admin mints and lists tokens for a local user
// (negative id; the schema used to take positive ids only, 422), and a token never mints one that
// outlives it (an expiring token used to mint one with `expires_at: null`), for local tokens as at central.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startTestEdge, type TestEdge } from '../support/edge.js';
import { client, type Client } from '../support/http.js';
import { LocalStore } from '../../src/edge/local-store.js';
import { LocalAccounts } from '../../src/edge/local-accounts.js';

const HOUR = 3_600_000;

describe('minting tokens at an edge', () => {
  let e: TestEdge;
  before(async () => {
    e = await startTestEdge('token-mint');
  });
  after(() => e?.stop());

  /** A client with a local token of `userId` that expires at `expiresAt`, made as the CLI makes one. */
  const expiring = async (userId: number, expiresAt: string): Promise<Client> => {
    const local = new LocalStore(join(e.dataDir, 'local.db'));
    try {
      const t = await new LocalAccounts(local.db).createToken(userId, { name: 'expiring', scopes: [], expires_at: expiresAt });
      return client(e.url, t.token);
    } finally {
      local.close();
    }
  };

  it('an admin mints and lists tokens for a local user (negative id)', async () => {
    const user = await e.as(['observer'], 'night-operator');
    assert.ok(user.userId < 0, 'a local user');
    const made = await e.admin.post('/api/tokens/', { body: { name: 'for night-operator', user_id: user.userId } });
    assert.equal(made.status, 201, made.text);
    assert.equal(made.body.user_id, user.userId);
    const me = await client(e.url, made.body.token).get('/auth/me');
    assert.equal(me.body.username, 'night-operator');
    const list = await e.admin.get(`/api/tokens/?user_id=${user.userId}`);
    assert.equal(list.status, 200, list.text);
    assert.ok(list.body.length >= 2 && list.body.every((t: { user_id: number }) => t.user_id === user.userId));
    assert.ok(list.body.some((t: { id: number }) => t.id === made.body.id));
    // A user that does not exist: as at central.
    assert.equal((await e.admin.post('/api/tokens/', { body: { name: 'x', user_id: -999_999 } })).status, 404);
    assert.deepEqual((await e.admin.get('/api/tokens/?user_id=-999999')).body, []);
    assert.equal((await e.admin.get('/api/tokens/?user_id=0')).status, 422);
    // Not an admin: only its own.
    assert.equal((await user.get(`/api/tokens/?user_id=${e.admin.userId}`)).status, 403);
    assert.equal((await user.get(`/api/tokens/?user_id=${user.userId}`)).status, 200);
  });

  it('a local token that expires mints tokens that expire no later', async () => {
    const until = new Date(Date.now() + HOUR).toISOString();
    const mine = await expiring(e.admin.userId, until);
    const none = await mine.post('/api/tokens/', { body: { name: 'none asked' } });
    assert.equal(none.status, 201, none.text);
    assert.equal(none.body.expires_at, until);
    const nul = await mine.post('/api/tokens/', { body: { name: 'null asked', expires_at: null } });
    assert.equal(nul.body.expires_at, until);
    const other = await e.as(['viewer']);
    const forOther = await mine.post('/api/tokens/', { body: { name: 'for other', user_id: other.userId } });
    assert.equal(forOther.status, 201, forOther.text);
    assert.equal(forOther.body.expires_at, until);
    const earlier = new Date(Date.now() + HOUR / 2).toISOString();
    assert.equal((await mine.post('/api/tokens/', { body: { name: 'earlier', expires_at: earlier } })).body.expires_at, earlier);
    const later = await mine.post('/api/tokens/', { body: { name: 'later', expires_at: new Date(Date.now() + 2 * HOUR).toISOString() } });
    assert.equal(later.status, 422, later.text);
    assert.equal(later.body.error.code, 'validation_error');
    assert.match(later.body.error.message, new RegExp(`A token cannot outlive the token that creates it: expires_at must be at or before ${until.replace(/\./g, '\\.')}`));
    // A token that never expires mints what is asked.
    assert.equal((await e.admin.post('/api/tokens/', { body: { name: 'forever' } })).body.expires_at, null);
  });
});
