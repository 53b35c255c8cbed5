// Found in review: the sync request's time limit (SYNC_TIMEOUT_MS) covered sending the request too. On a
// slow uplink a large transaction (a bulk of many files) timed out on every attempt; a timeout only
// shrinks the batch, down to that one transaction, so it and everything behind it waited forever, and an
// operator could not even discard it (it is pending, not failed). A request now gets SYNC_TIMEOUT_MS plus
// the time to send its bytes at 256 kbit/s. Real processes: an edge, a fault proxy that passes the edge's
// bytes at 100 KiB/s (with backpressure), a central on PostgreSQL.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { centralDatabase, createObservation, killAllProcesses, startScenario, type CentralDatabase } from '../support/processes.js';

let db: CentralDatabase;

describe('sync over a slow uplink', { timeout: 180_000 }, () => {
  before(async () => {
    db = await centralDatabase('slow-link');
  });
  after(async () => {
    await killAllProcesses();
    await db?.drop();
  });

  it('a transaction that takes several SYNC_TIMEOUT_MS to send gets through, and the writes behind it follow', async (t) => {
    const s = await startScenario(db, 'slow-link', { mode: { rate: 100 * 1024 }, edgeEnv: { SYNC_TIMEOUT_MS: '1500' } });
    t.after(() => s.stop());
    const admin = s.admin();
    const obs = await admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    assert.equal(obs.status, 201, obs.text);
    s.acked.transactions.push(obs.body.transaction_id);
    s.acked.observations.push(obs.body.id);
    s.acked.createdBy.set(obs.body.id, obs.body.transaction_id);
    // About 700 KB: some 7 s to send at 100 KiB/s, several times SYNC_TIMEOUT_MS.
    const files = Array.from({ length: 1500 }, (_, i) => ({
      name: `scan_${i}.fits`, path: `/data/raw/${'night-2026-11-26/'.repeat(20)}scan_${i}.fits`, size: 1_000_000 + i, checksum: `sha256:${i}`, file_type: 'fits',
    }));
    const bulk = await admin.post('/raw_data_files/bulk', { body: { executed_obs_unit_id: obs.body.id, files } });
    assert.equal(bulk.status, 201, bulk.text);
    s.acked.transactions.push(bulk.body.transaction_id);
    s.acked.files.push(...(bulk.body.ids as string[]));
    const big = await admin.get(`/api/transactions/${bulk.body.transaction_id}`);
    assert.ok(big.body.bytes > 600_000, `a large transaction (${big.body.bytes} bytes)`);
    for (let i = 0; i < 5; i++) assert.equal((await createObservation(admin, s.acked)).status, 201);

    // Everything reaches central exactly once, the small writes behind the large one included.
    await s.verify(120_000);
    const files_at_central = await db.pool.query('SELECT count(*)::int AS n FROM raw_data_file WHERE executed_obs_unit_id = $1', [obs.body.id]);
    assert.equal(files_at_central.rows[0].n, 1500);
    const after = await admin.get(`/api/transactions/${bulk.body.transaction_id}`);
    assert.equal(after.body.state !== 'pending' && after.body.state !== 'in_flight', true, after.text);
    assert.ok(after.body.attempts <= 2, `sent once, not timed out again and again (attempts ${after.body.attempts})`);
  });
});
