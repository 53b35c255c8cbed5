// committer.ts: when applying a durable group to the local store fails, the
// write is still answered 201. An early version then lost it from edge reads:
// the next group's applyBuffered moved applied_seq past the failed group, and
// catchUp() only replays seqs after applied_seq. The acknowledged write stayed
// invisible at the edge (SPEC §2.7) until central's feed brought it back.
// The failure is real: another process holds local.db's write lock longer
// than the busy timeout (an operator's sqlite3 shell, a stuck CLI), so the
// storage thread's apply, and its catch-up, fail with SQLITE_BUSY.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { startTestEdge, type TestEdge } from '../support/edge.js';

describe('a local-store apply failure in group commit', () => {
  let edge: TestEdge | undefined;
  after(async () => {
    await edge?.stop();
  });

  it('keeps the write durable and visible again once the store answers, and across a restart', async () => {
    edge = await startTestEdge('review-gap');
    const locker = new Database(join(edge.dataDir, 'local.db'));
    locker.exec('BEGIN IMMEDIATE');
    let a;
    try {
      a = await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    } finally {
      locker.exec('COMMIT');
      locker.close();
    }
    assert.equal(a.status, 201, a.text);
    const held = await edge.running.buffer.get(a.body.transaction_id);
    assert.equal(held?.state, 'pending', 'the write is in the buffer');
    assert.ok(Number(edge.running.local.getMeta('applied_seq') ?? 0) < held.seq, 'the injected lock did stop the local apply');
    assert.equal((await edge.admin.get(`/executed_obs_units/${a.body.id}`)).status, 404, 'while another process held local.db, the write was stored but could not be applied (the fault took effect)');

    const b = await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 2 } });
    assert.equal(b.status, 201, b.text);
    assert.equal((await edge.admin.get(`/executed_obs_units/${a.body.id}`)).status, 200, 'the next write brought the first one back');
    assert.equal((await edge.admin.get(`/executed_obs_units/${b.body.id}`)).status, 200);

    const dataDir = edge.dataDir;
    await edge.stop();
    edge = await startTestEdge('review-gap', { dataDir, seed: false });
    assert.equal((await edge.admin.get(`/executed_obs_units/${a.body.id}`)).status, 200);
    const finish = await edge.admin.put(`/executed_obs_units/${a.body.id}/finish`, { body: { status: 'success' } });
    assert.ok(finish.status < 300, `finishing it: ${finish.status} ${finish.text}`);
  });
});
