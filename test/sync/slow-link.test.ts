// Found in review: the sync request's time limit (SYNC_TIMEOUT_MS) covered sending the request too. On a
// slow uplink a large transaction (a bulk of many files) timed out on every attempt; a timeout only
// shrinks the batch, down to that one transaction, so it and everything behind it waited forever, and an
// operator could not even discard it (it is pending, not failed). A request now gets SYNC_TIMEOUT_MS plus
// the time to send its bytes at 256 kbit/s. Real processes: an edge, a fault proxy that passes the edge's
// bytes at 100 KiB/s (with backpressure), a central on PostgreSQL.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { centralDatabase, createObservation, killAllProcesses, startScenario, startWithBigBulk, type CentralDatabase } from '../support/processes.js';

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
    // About 700 KB: some 7 s to send at 100 KiB/s, several times SYNC_TIMEOUT_MS.
    const { obsId, bulkTx, bytes } = await startWithBigBulk(admin, s.acked, 1500);
    assert.ok(bytes > 600_000, `a large transaction (${bytes} bytes)`);
    for (let i = 0; i < 5; i++) assert.equal((await createObservation(admin, s.acked)).status, 201);

    // Everything reaches central exactly once, the small writes behind the large one included.
    await s.verify(120_000);
    const files_at_central = await db.pool.query('SELECT count(*)::int AS n FROM raw_data_file WHERE executed_obs_unit_id = $1', [obsId]);
    assert.equal(files_at_central.rows[0].n, 1500);
    const after = await admin.get(`/api/transactions/${bulkTx}`);
    assert.equal(after.body.state !== 'pending' && after.body.state !== 'in_flight', true, after.text);
    assert.ok(after.body.attempts <= 2, `sent once, not timed out again and again (attempts ${after.body.attempts})`);
  });
});
