// Found in a contract review (SPEC §2.7: a record's sync_status "never flips back from synced"): a
// record read `synced`, then a local update that had not reached central yet turned it back to
// `pending`/`in_flight`, because sync_status was the state of the last transaction that wrote the row.
// It is now the state of the transaction that created the record here; an update's own progress is at
// /api/transactions/{id}. Real processes: an edge syncing to a real central through a fault proxy that
// refuses connections while the update waits.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { centralDatabase, killAllProcesses, startScenario, waitFor, type CentralDatabase } from '../support/processes.js';

let db: CentralDatabase;

describe('a record\'s sync_status', { timeout: 120_000 }, () => {
  before(async () => {
    db = await centralDatabase('never-back');
  });
  after(async () => {
    await killAllProcesses();
    await db?.drop();
  });

  it('stays synced while a later update of the record waits for central', async (t) => {
    const s = await startScenario(db, 'never-back');
    t.after(() => s.stop());
    const admin = s.admin();
    const start = await admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    assert.equal(start.status, 201, start.text);
    const id = start.body.id as string;
    await waitFor(async () => (await admin.get(`/executed_obs_units/${id}`)).body.sync_status === 'synced', 30_000, 'the start to sync');

    await s.proxy.setMode('refuse');
    const fin = await admin.put(`/executed_obs_units/${id}/finish`, { body: { status: 'success' } });
    assert.equal(fin.status, 202, fin.text);
    // Give the engine time to try (and fail) to send it: the update is pending or in flight, not synced.
    await new Promise((r) => setTimeout(r, 500));
    const tx = await admin.get(`/api/transactions/${fin.body.transaction_id}`);
    assert.ok(['pending', 'in_flight'].includes(tx.body.state), `the update waits: ${tx.text}`);
    const during = await admin.get(`/executed_obs_units/${id}`);
    assert.equal(during.body.status, 'success', 'the update is readable at once');
    assert.equal(during.body.sync_status, 'synced', 'and the record does not flip back from synced');
    const listed = await admin.get('/executed_obs_units/?limit=5');
    assert.equal(listed.body.find((o: { id: string }) => o.id === id).sync_status, 'synced', 'in a list too');

    await s.proxy.setMode('pass');
    await waitFor(async () => (await admin.get(`/api/transactions/${fin.body.transaction_id}`)).body.state === 'synced', 30_000, 'the update to sync');
    const after = await admin.get(`/executed_obs_units/${id}`);
    assert.deepEqual([after.body.status, after.body.sync_status], ['success', 'synced']);
  });
});
