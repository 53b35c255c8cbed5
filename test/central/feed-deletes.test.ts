// Deletes at central reach the edges (migration 011_feed_deletes): a row deleted in SQL comes out of
// GET /api/sync/changes as {table, key, row: null}, for the sites that could see the row and no other.
// Before 011 nothing noted a delete, so the feed never said a row was gone and every edge kept it.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { client, type Client } from '../support/http.js';

interface Change {
  table: string;
  key: string;
  row: Record<string, unknown> | null;
}

/** Everything of the feed after `since`, page by page; and the position reached. */
async function readAll(site: Client, since: number): Promise<{ changes: Change[]; position: number }> {
  const changes: Change[] = [];
  for (let pages = 0; ; pages++) {
    assert.ok(pages < 100, 'the feed ends');
    const r = await site.get(`/api/sync/changes?since=${since}&max_rows=20`);
    assert.equal(r.status, 200, r.text);
    changes.push(...r.body.changes);
    since = r.body.position;
    if (!r.body.more) return { changes, position: since };
  }
}

const has = (changes: Change[], table: string, key: string | number) =>
  changes.filter((c) => c.table === table && c.key === String(key));
const deleted = (changes: Change[], table: string, key: string | number) => {
  const found = has(changes, table, key);
  return found.length === 1 && found[0]!.row === null;
};

describe('the change feed carries deletes', () => {
  let c: TestCentral;
  let north: Client;
  let south: Client;
  before(async () => {
    c = await startTestCentral('feed-deletes');
    north = client(c.url, (await c.admin.post('/api/sites/', { body: { name: 'north' } })).body.token);
    south = client(c.url, (await c.admin.post('/api/sites/', { body: { name: 'south' } })).body.token);
  });
  after(() => c?.stop());

  it('a deleted row is sent as row: null to the sites that could see it, and to no other', async () => {
    const q = (sql: string, params: unknown[] = []) => c.db.query(sql, params);
    // Reference data (every site), observations with a package and a file per site, accounts.
    const prog = (await q(`INSERT INTO observing_program (name) VALUES ('to delete') RETURNING id`)).rows[0].id as number;
    const unit = (await q(`INSERT INTO obs_unit (name, observing_program_id) VALUES ('u', $1) RETURNING id`, [prog])).rows[0].id as number;
    const ids = {
      north: { eou: '01936a2e-7b4c-7d3e-9a1b-000000000001', pkg: '01936a2e-7b4c-7d3e-9a1b-000000000002', file: '01936a2e-7b4c-7d3e-9a1b-000000000003' },
      south: { eou: '01936a2e-7b4c-7d3e-9a1b-000000000011', pkg: '01936a2e-7b4c-7d3e-9a1b-000000000012', file: '01936a2e-7b4c-7d3e-9a1b-000000000013' },
    };
    for (const [site, x] of Object.entries(ids)) {
      await q(`INSERT INTO executed_obs_unit (id, obs_unit_id, site, status, start_time) VALUES ($1, 1, $2, 'running', now())`, [x.eou, site]);
      await q(`INSERT INTO raw_data_package (id, name, executed_obs_unit_id) VALUES ($1, 'p', $2)`, [x.pkg, x.eou]);
      await q(`INSERT INTO raw_data_file (id, name, path, size, checksum, file_type, executed_obs_unit_id, raw_data_package_id)
               VALUES ($1, 'f', '/f', 1, 'x', 'fits', $2, $3)`, [x.file, x.eou, x.pkg]);
    }
    // A human user with two roles, a token and preferences; another who loses one role and keeps the other.
    const gone = await c.accounts.ensureUser('leaving', ['viewer', 'observer']);
    const goneToken = (await c.accounts.createToken(gone, { name: 't', scopes: [] })).id;
    await q(`INSERT INTO user_preference (user_id, preferences) VALUES ($1, '{"a":1}')`, [gone]);
    const stays = await c.accounts.ensureUser('staying', ['viewer', 'observer']);
    const staysToken = (await c.accounts.createToken(stays, { name: 't', scopes: [] })).id;
    // south's own site account keeps a second token, deleted below.
    const southUser = (await q(`SELECT id FROM "user" WHERE username = 'site-south'`)).rows[0].id as number;
    const southToken = (await c.accounts.createToken(southUser, { name: 'spare', scopes: [] })).id;

    const northAt = (await readAll(north, 0)).position;
    const southAt = (await readAll(south, 0)).position;

    // The deletes, children first as the foreign keys want.
    for (const x of Object.values(ids)) {
      await q('DELETE FROM raw_data_file WHERE id = $1', [x.file]);
      await q('DELETE FROM raw_data_package WHERE id = $1', [x.pkg]);
      await q('DELETE FROM executed_obs_unit WHERE id = $1', [x.eou]);
    }
    await q('DELETE FROM obs_unit WHERE id = $1', [unit]);
    await q('DELETE FROM observing_program WHERE id = $1', [prog]);
    await q('DELETE FROM api_token WHERE id = $1', [staysToken]);
    await q(`DELETE FROM user_role WHERE user_id = $1 AND role_id = (SELECT id FROM role WHERE name = 'observer')`, [stays]);
    await q('DELETE FROM api_token WHERE id = $1', [southToken]);
    // The user goes with its roles, token and preferences (ON DELETE CASCADE).
    await q('DELETE FROM "user" WHERE id = $1', [gone]);

    const n = (await readAll(north, northAt)).changes;
    const s = (await readAll(south, southAt)).changes;

    for (const [site, feed] of [['north', n], ['south', s]] as const) {
      const other = site === 'north' ? 'south' : 'north';
      // This site's observation, package and file; never the other site's.
      for (const [table, key] of [['executed_obs_unit', 'eou'], ['raw_data_package', 'pkg'], ['raw_data_file', 'file']] as const) {
        assert.ok(deleted(feed, table, ids[site][key]), `${site} is told its ${table} was deleted: ${JSON.stringify(feed)}`);
        assert.deepEqual(has(feed, table, ids[other][key]), [], `${site} hears nothing of ${other}'s ${table}`);
      }
      // Reference data and human accounts: every site.
      assert.ok(deleted(feed, 'obs_unit', unit), `${site}: obs_unit`);
      assert.ok(deleted(feed, 'observing_program', prog), `${site}: observing_program`);
      assert.ok(deleted(feed, 'user', gone), `${site}: user`);
      assert.ok(deleted(feed, 'user_role', gone), `${site}: the deleted user's roles`);
      assert.ok(deleted(feed, 'api_token', goneToken), `${site}: the deleted user's token`);
      assert.ok(deleted(feed, 'user_preference', gone), `${site}: the deleted user's preferences`);
      assert.ok(deleted(feed, 'api_token', staysToken), `${site}: a deleted token`);
      // A role taken away: the user's whole role list, as before.
      assert.deepEqual(has(feed, 'user_role', stays).map((x) => x.row), [{ user_id: stays, roles: ['viewer'] }]);
    }
    // A site account's token: its own site only.
    assert.ok(deleted(s, 'api_token', southToken), 'south: its own token deleted');
    assert.deepEqual(has(n, 'api_token', southToken), [], 'north hears nothing of south\'s token');
  });

  it('a site account that still exists is hidden from other sites, not sent as deleted', async () => {
    const at = (await readAll(north, 0)).position;
    // Changes to south's account, seen by south only: north must not read them as deletes.
    const southUser = (await c.db.query(`SELECT id FROM "user" WHERE username = 'site-south'`)).rows[0].id as number;
    await c.db.query(`UPDATE "user" SET full_name = 'renamed' WHERE id = $1`, [southUser]);
    await c.db.query(`UPDATE api_token SET expires_at = now() + interval '1 day' WHERE user_id = $1`, [southUser]);
    // A note that every site may see for it (as 002 made for the roles of users there before it).
    await c.db.query(`INSERT INTO change_log (table_name, row_key, site) VALUES ('user_role', $1, NULL), ('user', $1, NULL)`, [String(southUser)]);
    const n = (await readAll(north, at)).changes;
    assert.deepEqual(n.filter((x) => x.key === String(southUser) && (x.table === 'user' || x.table === 'user_role')), []);
    assert.deepEqual(n.filter((x) => x.table === 'api_token'), []);
    const s = (await readAll(south, at)).changes;
    assert.equal(has(s, 'user', southUser)[0]?.row?.full_name, 'renamed');
    assert.deepEqual(has(s, 'user_role', southUser)[0]?.row, { user_id: southUser, roles: ['site'] });
  });
});
