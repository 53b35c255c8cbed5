// A site's account is the user `site-NAME`, made in the same transaction as the site row. Registering a
// site whose account name a user already has used to turn that user into the site account: the printed
// "site token" was that user's, with all its roles (an admin's, in the review's reproduction), and could
// not even sync. Now it is a 409 (the CLI exits non-zero) and nothing is created; and `opsdb user add`
// at central refuses `site-…` names, so no human user can take one.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { client } from '../support/http.js';
import { runCli } from '../support/cli.js';

describe('site accounts', () => {
  let c: TestCentral;
  let env: Record<string, string>;
  before(async () => {
    c = await startTestCentral('site-account');
    env = { SITE_TYPE: 'main', DATABASE_URL: c.databaseUrl };
  });
  after(() => c?.stop());

  /** What registering a site may have touched: the site row, the user, its roles and tokens. */
  const state = async (site: string, username: string) => {
    const q = async (sql: string, param: string) => (await c.db.query(sql, [param])).rows;
    return {
      sites: await q('SELECT name FROM site WHERE name = $1', site),
      user: await q('SELECT id, username, full_name, site_name, is_active FROM "user" WHERE username = $1', username),
      roles: await q(`SELECT r.name FROM user_role ur JOIN role r ON r.id = ur.role_id JOIN "user" u ON u.id = ur.user_id
                       WHERE u.username = $1 ORDER BY r.name`, username),
      tokens: await q('SELECT t.id FROM api_token t JOIN "user" u ON u.id = t.user_id WHERE u.username = $1', username),
    };
  };

  it('POST /api/sites/ with a user named site-NAME already there: 409, and nothing is created', async () => {
    // Made as an older version or a script could have (createUser refuses such names now).
    const clash = await c.accounts.ensureUser('site-clash', ['admin']);
    const before = await state('clash', 'site-clash');
    const r = await c.admin.post('/api/sites/', { body: { name: 'clash' } });
    assert.equal(r.status, 409, r.text);
    assert.equal(r.body.error.code, 'conflict');
    assert.match(r.body.error.message, /Site "clash" cannot be registered: its site account would be the user "site-clash", and a user of that name already exists/);
    assert.equal(r.body.token, undefined);
    assert.deepEqual(await state('clash', 'site-clash'), before, 'no site row, no new role, no token for the user');
    assert.deepEqual(before.roles, [{ name: 'admin' }]);
    assert.ok(!(await c.admin.get('/api/sites/')).body.some((s: { name: string }) => s.name === 'clash'));
    // The user is as it was, and the name is free for a site once that user is gone.
    assert.equal((await c.accounts.getUser(clash))?.roles.join(), 'admin');
    await c.db.query('DELETE FROM "user" WHERE id = $1', [clash]);
    const ok = await c.admin.post('/api/sites/', { body: { name: 'clash' } });
    assert.equal(ok.status, 201, ok.text);
    const st = client(c.url, ok.body.token);
    const me = await st.get('/auth/me');
    assert.equal(me.body.username, 'site-clash');
    assert.deepEqual(me.body.roles, ['site']);
    assert.equal((await st.get('/api/sync/changes?since=0')).status, 200, 'a real site token syncs');
    assert.equal((await st.get('/api/sites/')).status, 403);
  });

  it('opsdb site add with a user named site-NAME already there: exits non-zero saying why, nothing created', async () => {
    await c.accounts.ensureUser('site-taken', ['viewer']);
    const before = await state('taken', 'site-taken');
    const r = await runCli(['site', 'add', 'taken'], env);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, '', 'no token printed');
    assert.match(r.stderr, /^opsdb site add: Site "taken" cannot be registered: its site account would be the user "site-taken", and a user of that name already exists\. Nothing was created.* \(conflict\)\n$/);
    assert.deepEqual(await state('taken', 'site-taken'), before);
    assert.deepEqual(before.roles, [{ name: 'viewer' }]);
    // A site registered twice is still the plain 409.
    assert.equal((await runCli(['site', 'add', 'fresh'], env)).code, 0);
    const again = await runCli(['site', 'add', 'fresh'], env);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /Site "fresh" already exists \(conflict\)/);
  });

  it('opsdb user add at central refuses site-… names (exit 2); createUser answers 422', async () => {
    for (const name of ['site-north', 'Site-North', 'site-']) {
      const r = await runCli(['user', 'add', name, '--role', 'viewer'], env);
      assert.equal(r.code, 2, `${name}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^opsdb user add: "${name}": user names starting with "site-" are kept for site accounts at central \\(opsdb site add NAME makes site-NAME\\); choose another name`));
    }
    const { rows } = await c.db.query(`SELECT username FROM "user" WHERE lower(username) LIKE 'site-north%' OR username = 'site-'`);
    assert.deepEqual(rows, []);
    await assert.rejects(c.accounts.createUser('site-x', ['viewer']), (err: { status?: number; code?: string; message: string }) => {
      assert.equal(err.status, 422);
      assert.equal(err.code, 'validation_error');
      assert.match(err.message, /kept for site accounts/);
      return true;
    });
    // Other names with "site" in them are fine.
    const ok = await runCli(['user', 'add', 'website-admin', '--role', 'viewer'], env);
    assert.equal(ok.code, 0, ok.stderr);
    // So the site can be registered.
    assert.equal((await c.admin.post('/api/sites/', { body: { name: 'north' } })).status, 201);
  });
});
