// SYNC_PIPELINE on real processes: an edge (`opsdb serve`) drains a backlog
// through a slow link (the fault proxy's delay mode) to a real central. With
// 2, each batch after the first is sent while the one before is still at
// central and names it; central applies them in seq order. With 1, one batch
// at a time. Either way: exactly one copy, in order, the ledger holds.
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertSeqOrder, centralDatabase, createObservation, killAllProcesses, startScenario, type CentralDatabase, type Scenario,
} from '../support/processes.js';

let db: CentralDatabase;

interface SentBatch {
  batch_id?: string;
  after_batch?: string | null;
  transactions: { seq: number }[];
}

async function drainThroughSlowLink(t: TestContext, label: string, pipeline: string): Promise<{ s: Scenario; batches: SentBatch[] }> {
  const s = await startScenario(db, label, { mode: 'refuse', edgeEnv: { SYNC_BATCH_SIZE: '4', SYNC_PIPELINE: pipeline } });
  t.after(() => s.stop());
  s.proxy.captureBodies = true;
  const admin = s.admin();
  for (let i = 0; i < 40; i += 8) {
    const res = await Promise.all(Array.from({ length: 8 }, () => createObservation(admin, s.acked)));
    for (const r of res) assert.equal(r.status, 201, JSON.stringify(r.body));
  }
  await s.proxy.setMode({ delay: 40 });
  const st = await s.verify(30_000);
  assert.equal(st.applied_total, 40);
  await assertSeqOrder(db.pool, s.site, s.acked);
  const batches = s.proxy.seen
    .filter((r) => r.method === 'POST' && r.path.startsWith('/api/sync/transactions') && r.body)
    .map((r) => JSON.parse(r.body!) as SentBatch);
  return { s, batches };
}

describe('SYNC_PIPELINE: the next batch sent while the last is at central (real processes)', { timeout: 120_000 }, () => {
  before(async () => {
    db = await centralDatabase('pipeline');
  });
  after(async () => {
    await killAllProcesses();
    await db?.drop();
  });

  it('2 (default): batches sent early name the batch before them, start after it in seq, and central applies all in order', async (t) => {
    const { batches } = await drainThroughSlowLink(t, 'two', '2');
    const early = batches.filter((b) => b.after_batch);
    assert.ok(early.length >= 3, `${early.length} of ${batches.length} batches were sent early`);
    for (const b of early) {
      const before = batches.find((p) => p.batch_id === b.after_batch);
      assert.ok(before, `batch ${b.batch_id} names a batch that was sent (${b.after_batch})`);
      const lastBefore = Math.max(...before.transactions.map((x) => x.seq));
      assert.ok(Math.min(...b.transactions.map((x) => x.seq)) > lastBefore, 'a batch sent early comes after the one it follows');
    }
    t.diagnostic(`${batches.length} batches, ${early.length} sent early`);
  });

  it('1: one batch at a time, none sent early, and without batch ids (which a central older than them refuses)', async (t) => {
    const { batches } = await drainThroughSlowLink(t, 'one', '1');
    assert.ok(batches.length >= 10, `${batches.length} batches`);
    // An older central's schema is strict: "Unrecognized keys: batch_id, after_batch" was a 422 for every batch.
    for (const b of batches) assert.deepEqual(Object.keys(b).sort(), ['backlog', 'site', 'transactions'], 'only the keys every central knows');
  });
});
