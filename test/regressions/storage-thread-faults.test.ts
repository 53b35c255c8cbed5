// Found in review of the storage thread (src/edge/buffer/thread.ts):
// 1. A write that depends on a pending row asked the buffer for its parents'
//    states with a trip to the storage thread, queued behind the commit in
//    progress; a later write with no parents overtook it and got the lower
//    seq. States are now read in the HTTP thread, so seqs follow arrival.
// 2. When the storage thread died after a commit's fsync but before its
//    answer, the client was told "nothing was stored, retry later"; a retry
//    is a new transaction, so the observation would reach central twice. The
//    503 now says the outcome is unknown and names the transaction to look up.
// 3. When the thread died before a group was sent (while the committer read
//    the buffer's counts), no write of the group was ever answered.
// The stalled commit of case 1 is real: another connection holds local.db's
// write lock, so the storage thread waits in the local apply after the
// buffer's commit.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { startTestEdge, type TestEdge } from '../support/edge.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Holds local.db's write lock until released: the storage thread's next local apply waits. */
function lockLocalStore(edge: TestEdge): () => void {
  const db = new Database(join(edge.dataDir, 'local.db'));
  db.exec('BEGIN IMMEDIATE');
  return () => {
    db.exec('COMMIT');
    db.close();
  };
}

/**
 * Stops the edge's storage thread as the given call is sent to it. The thread
 * is idle then: stopping it inside SQLite's native code would abort the whole
 * process (better-sqlite3 cannot throw into a terminating thread).
 */
function stopThreadOn(edge: TestEdge, method: string): void {
  const worker = (edge.running.buffer as unknown as { worker: { postMessage(m: { method: string }): void; terminate(): Promise<number> } }).worker;
  const post = worker.postMessage.bind(worker);
  worker.postMessage = (m) => {
    if (m.method === method) void worker.terminate();
    post(m);
  };
}

describe('the storage thread under a stalled commit', () => {
  const edges: TestEdge[] = [];
  after(async () => {
    for (const e of edges) await e.stop().catch(() => {});
  });

  it('gives seqs in arrival order, also to a write that has to look up its parents', async () => {
    const edge = await startTestEdge('thread-order');
    edges.push(edge);
    const obs = await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    assert.equal(obs.status, 201, obs.text);

    const release = lockLocalStore(edge);
    let stalled, withParent, plain;
    let answered = 0;
    try {
      stalled = edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 2 } }); // its commit now waits on the lock
      void stalled.then(() => (answered += 1));
      await sleep(150);
      withParent = edge.admin.post('/raw_data_package/', { body: { name: 'pkg', executed_obs_unit_id: obs.body.id } });
      await sleep(150);
      plain = edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 3 } });
      await sleep(150);
      assert.equal(answered, 0, 'the first commit is still stalled when the other two arrive (the window under test is open)');
    } finally {
      release();
    }
    const [a, b, c] = await Promise.all([stalled, withParent, plain]);
    for (const r of [a, b, c]) assert.equal(r.status, 201, r.text);
    const seq = async (txId: string) => (await edge.running.buffer.get(txId))!.seq;
    const seqs = [await seq(a.body.transaction_id), await seq(b.body.transaction_id), await seq(c.body.transaction_id)];
    assert.deepEqual([...seqs].sort((x, y) => x - y), seqs, `seqs follow arrival order: ${seqs.join(', ')}`);
    assert.deepEqual((await edge.running.buffer.get(b.body.transaction_id))!.depends_on, [await seq(obs.body.transaction_id)]);
  });

  it('answers every write of a group with 503 when the thread dies before the group is sent, never leaves one hanging', { timeout: 20_000 }, async () => {
    const edge = await startTestEdge('thread-death-early');
    edges.push(edge);
    // The group committer asks for the buffer's counts (the 507 limits) before it sends a group: the thread stops then.
    stopThreadOn(edge, 'stats');
    const res = await Promise.all([1, 2, 3].map((u) => edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: u } })));
    for (const r of res) {
      assert.equal(r.status, 503, r.text);
      assert.match(r.body.error.message, /nothing was stored/);
    }
  });

  it('answers a write caught by the thread dying mid-commit with "may have been kept" and its transaction id', async () => {
    const first = await startTestEdge('thread-death');
    edges.push(first);
    // The thread stops as the group is handed to it: the committer cannot know whether it was stored.
    stopThreadOn(first, 'commitGroup');
    const res = await first.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    assert.equal(res.status, 503, res.text);
    assert.match(res.body.error.message, /may or may not have been kept/);
    const id = res.body.error.details.transaction_id as string;
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.ok((await first.running.failed) instanceof Error, 'the daemon is told it must stop');

    const dataDir = first.dataDir;
    await first.stop();
    edges.pop();
    const again = await startTestEdge('thread-death', { dataDir, seed: false });
    edges.push(again);
    // Here the thread stopped before reading the group: the look-up the 503 names says it was not kept.
    const look = await again.admin.get(`/api/transactions/${id}`);
    assert.equal(look.status, 404, look.text);
    assert.equal((await again.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).status, 201);
  });
});
