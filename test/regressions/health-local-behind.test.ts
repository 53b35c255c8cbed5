// Found in review: writes answered 201 that the local store could not take (held by another process,
// a full disk) were not readable at the edge until it caught up, and /health said healthy all along;
// with MIN_FREE_DISK_BYTES=0 a full disk never showed either. /health is now degraded until the local
// store has caught up. A real edge and a second connection holding local.db.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { startTestEdge, type TestEdge } from '../support/edge.js';
import { until } from '../support/daemon.js';

describe('writes the local store has not taken yet', () => {
  let edge: TestEdge | undefined;
  let holder: Database.Database | undefined;
  after(async () => {
    if (holder?.inTransaction) holder.exec('ROLLBACK');
    holder?.close();
    await edge?.stop();
  });

  it('make /health degraded until the local store catches up', { timeout: 60_000 }, async () => {
    edge = await startTestEdge('health-local-behind');
    assert.equal((await edge.anonymous.get('/health')).body.status, 'healthy');
    holder = new Database(join(edge.dataDir, 'local.db'));
    holder.exec('BEGIN EXCLUSIVE');
    const w = await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    assert.equal(w.status, 201, w.text);
    assert.equal((await edge.admin.get(`/api/transactions/${w.body.transaction_id}`)).body.state, 'pending', 'durable');
    assert.equal((await edge.anonymous.get('/health')).body.status, 'degraded');
    holder.exec('ROLLBACK');
    await until('caught up, healthy again', async () => (await edge!.anonymous.get('/health')).body.status === 'healthy', 30_000);
    assert.equal((await edge.admin.get(`/executed_obs_units/${w.body.id}`)).status, 200, 'readable');
  });
});
