// committer.ts: when applying a durable group to the local store fails, the
// write is still answered 201 with the comment "the local view catches up
// from the buffer at the next start". It does not: the next group's
// applyBuffered moves applied_seq past the failed group, and catchUp() only
// replays seqs after applied_seq. The acknowledged write stays invisible at
// the edge (SPEC §2.7) until central's feed brings it back, and while offline
// every later write referencing it is refused (404/422).
// The local-store failure (disk full, SQLITE_BUSY from a CLI writer, I/O
// error) is injected by making applyBuffered throw once.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestEdge, type TestEdge } from '../support/edge.js';

describe('a local-store apply failure in group commit', () => {
  let edge: TestEdge | undefined;
  after(async () => {
    await edge?.stop();
  });

  it('is repaired by the next start, as the committer promises', async () => {
    edge = await startTestEdge('review-gap');
    const local = edge.running.local;
    const real = local.applyBuffered.bind(local);
    let failOnce = true;
    local.applyBuffered = (txs) => {
      if (failOnce) {
        failOnce = false;
        const err = new Error('database or disk is full') as Error & { code: string };
        err.code = 'SQLITE_FULL';
        throw err;
      }
      return real(txs);
    };
    const a = await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    assert.equal(a.status, 201, a.text);
    const b = await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 2 } });
    assert.equal(b.status, 201, b.text);

    const dataDir = edge.dataDir;
    await edge.stop();
    edge = await startTestEdge('review-gap', { dataDir, seed: false });
    assert.equal((await edge.admin.get(`/executed_obs_units/${b.body.id}`)).status, 200);
    const gotA = await edge.admin.get(`/executed_obs_units/${a.body.id}`);
    const finish = await edge.admin.put(`/executed_obs_units/${a.body.id}/finish`, { body: { status: 'success' } });
    assert.equal(gotA.status, 200, `acknowledged write ${a.body.id} is still invisible after a restart (finish → ${finish.status})`);
  });
});
