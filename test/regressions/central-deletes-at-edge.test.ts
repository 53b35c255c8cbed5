// Found in review: nothing deleted at central ever left an edge's replica. A user deleted at central
// (by an operator in psql; its tokens go with it) kept working at every edge with all its roles, and a
// deleted obs unit was still listed and accepted there. Central's feed now carries deletes (migration
// 011) and the edge applies them. A real central and a real edge.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCentralAndEdge } from '../support/edge.js';
import { client } from '../support/http.js';
import { until } from '../support/daemon.js';

describe('a delete at central', () => {
  const stops: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
  });

  it('reaches the edge: a deleted user\'s token stops working, a deleted record goes', { timeout: 60_000 }, async () => {
    const { central, edge, stop } = await startCentralAndEdge('central-deletes', 'cdel');
    stops.push(stop);
    const gone = await central.as(['admin'], 'gone');
    const atEdge = client(edge.url, gone.token);
    await until('the user\'s token works at the edge', async () => (await atEdge.get('/auth/me')).status === 200, 20_000);
    const obs = (await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).body;
    await until('synced', async () => (await edge.admin.get(`/api/transactions/${obs.transaction_id}`)).body.state === 'synced', 20_000);
    await central.db.query(`INSERT INTO obs_unit (id, name, observing_program_id) SELECT 900, 'doomed', observing_program_id FROM obs_unit WHERE id = 1`);
    await until('the new obs unit at the edge', async () => (await edge.admin.get('/obs_units/')).body.some((u: { id: number }) => u.id === 900), 20_000);

    await central.db.query('DELETE FROM "user" WHERE id = $1', [gone.userId]);
    await central.db.query('DELETE FROM executed_obs_unit WHERE id = $1', [obs.id]);
    await central.db.query('DELETE FROM obs_unit WHERE id = 900');

    await until('the token refused at the edge', async () => (await atEdge.get('/auth/me')).status === 401, 20_000);
    await until('the observation gone at the edge', async () => (await edge.admin.get(`/executed_obs_units/${obs.id}`)).status === 404, 20_000);
    await until('the obs unit gone at the edge', async () => !(await edge.admin.get('/obs_units/')).body.some((u: { id: number }) => u.id === 900), 20_000);
    const w = await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 900 } });
    assert.equal(w.status, 422, w.text);
    assert.equal((await edge.anonymous.get('/buffer-stats')).body.last_error, null);
  });
});
