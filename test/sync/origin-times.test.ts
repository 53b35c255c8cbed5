// Found in a contract review: central stamped the rows an edge sent with now(), the time it applied
// them. After a week without a link, an edge's observations were "created" a week late at central, and
// the edge's own copies changed their created_at when the replica received central's rows. Rows now keep
// the times they were written at the edge, on both of central's apply paths: a batch that only creates
// rows (one INSERT per table, migration 008) and one applied transaction by transaction (an update in
// it). Real processes: an edge, a fault proxy refusing connections while the writes age, a central on
// PostgreSQL.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Acked, centralDatabase, createObservation, killAllProcesses, startScenario, waitDrained, type CentralDatabase } from '../support/processes.js';

let db: CentralDatabase;

describe('rows synced from an edge keep the times they were written there', { timeout: 120_000 }, () => {
  before(async () => {
    db = await centralDatabase('origin-times');
  });
  after(async () => {
    await killAllProcesses();
    await db?.drop();
  });

  it('created_at and updated_at at central are the edge\'s, after the link was down', async (t) => {
    const s = await startScenario(db, 'origin-times', { mode: 'refuse' });
    t.after(() => s.stop());
    const admin = s.admin();
    const acked = new Acked();
    const created = await createObservation(admin, acked);
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const start = await admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    assert.equal(start.status, 201, start.text);
    // The writes age while the link is down: applied now, central's clock would be more than a second later.
    await new Promise((r) => setTimeout(r, 1500));
    const fin = await admin.put(`/executed_obs_units/${start.body.id}/finish`, { body: { status: 'success' } });
    assert.equal(fin.status, 202, fin.text);
    await new Promise((r) => setTimeout(r, 1500));
    const opened = Date.now();
    await s.proxy.setMode('pass');
    await waitDrained(() => s.edge.url, 60_000);

    const ms = (v: unknown) => new Date(v as string).getTime();
    const atCentral = async (table: string, id: string) =>
      (await db.pool.query(`SELECT created_at, ${table === 'raw_data_file' ? 'NULL AS updated_at' : 'updated_at'} FROM ${table} WHERE id = $1`, [id])).rows[0];

    // The create-only batch: observation, package and files.
    const obsId = created.body.executed_obs_unit_id as string;
    const edgeObs = (await admin.get(`/executed_obs_units/${obsId}`)).body;
    const rows: [string, string, { created_at: string; updated_at?: string }][] = [
      ['executed_obs_unit', obsId, edgeObs],
      ...edgeObs.raw_data_packages.map((p: { id: string }) => ['raw_data_package', p.id, p]),
      ...edgeObs.raw_data_files.map((f: { id: string }) => ['raw_data_file', f.id, f]),
    ];
    assert.equal(rows.length, 5);
    for (const [table, id, edgeRow] of rows) {
      const c = await atCentral(table, id);
      assert.ok(c, `${table} ${id} is at central`);
      assert.equal(ms(c.created_at), ms(edgeRow.created_at), `${table}.created_at is the edge's`);
      assert.ok(ms(c.created_at) < opened - 2000, `${table}.created_at is from before the link came back`);
      if (edgeRow.updated_at) assert.equal(ms(c.updated_at), ms(edgeRow.updated_at), `${table}.updated_at is the edge's`);
    }

    // Start and finish: the finish's time is the observation's updated_at, at central as at the edge.
    const edgeStarted = (await admin.get(`/executed_obs_units/${start.body.id}`)).body;
    const c = await atCentral('executed_obs_unit', start.body.id);
    assert.equal(ms(c.created_at), ms(edgeStarted.created_at));
    assert.equal(ms(c.updated_at), ms(edgeStarted.updated_at));
    assert.ok(ms(c.updated_at) - ms(c.created_at) >= 1400, 'updated when the finish was written, 1.5 s after the start');
    assert.ok(ms(c.updated_at) < opened - 1000, 'not when central applied it');
  });
});
