// Found in review: a central account whose name a local account held made the local one step aside as
// `name@local`; if that name was taken too (a local `bob` and a local `bob@local`), the rename broke
// SQLite's unique name and the whole feed page failed, again and again, for good: no revocation,
// new token or deactivation reached the edge any more. The same with a central row holding the name
// (a user deleted or renamed at central). The row stepping aside now gets a name nobody has.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCentralAndEdge } from '../support/edge.js';
import { client } from '../support/http.js';
import { until } from '../support/daemon.js';

describe('a central account whose name is taken at the edge', () => {
  const stops: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
  });

  it('takes it without stopping the feed: a revocation still arrives', { timeout: 60_000 }, async () => {
    const { central, edge, stop } = await startCentralAndEdge('name-clash', 'clash');
    stops.push(stop);
    const leaked = await central.as(['admin'], 'leaked');
    const atEdge = client(edge.url, leaked.token);
    await until('the central token works at the edge', async () => (await atEdge.get('/auth/me')).status === 200, 20_000);

    // Local bob and bob@local; a central user carl the edge already holds, renamed at central behind its back.
    const bob = await edge.as(['observer'], 'bob');
    await edge.as(['observer'], 'bob@local');
    const carl = await central.accounts.createUser('carl', ['viewer']);
    await until('carl at the edge', async () => edge.running.local.db.prepare('SELECT 1 FROM user WHERE id = ?').get(carl) !== undefined, 20_000);
    edge.running.local.db.prepare(`UPDATE user SET username = 'dave' WHERE id = ?`).run(carl); // as if central had renamed it
    await central.accounts.createUser('bob', ['viewer']);
    await central.accounts.createUser('dave', ['viewer']);

    // Central revokes the leaked token: it must reach the edge.
    const { rows } = await central.db.query('SELECT id FROM api_token WHERE user_id = $1', [leaked.userId]);
    assert.equal((await central.admin.del(`/api/tokens/${rows[0].id}`)).status, 200);
    await until('the revocation at the edge', async () => (await atEdge.get('/auth/me')).status === 401, 20_000);
    assert.equal((await edge.anonymous.get('/buffer-stats')).body.last_error, null);

    const names = (edge.running.local.db.prepare('SELECT id, username, local FROM user ORDER BY id').all() as { id: number; username: string; local: number }[]);
    const byName = new Map(names.map((u) => [u.username, u]));
    assert.equal(byName.get('bob')?.local, 0, 'bob is central\'s');
    assert.equal(byName.get('bob@local2')?.id, bob.userId, 'the local bob stepped aside under a free name');
    assert.equal(byName.get('dave')?.local, 0);
    assert.notEqual(byName.get('dave')?.id, carl, 'dave is central\'s new user');
    assert.equal(byName.get(`dave@stale-${carl}`)?.id, carl, 'the stale row stepped aside until its own change comes');
    assert.equal((await client(edge.url, bob.token).get('/auth/me')).status, 200, 'the local account still works');
  });
});
