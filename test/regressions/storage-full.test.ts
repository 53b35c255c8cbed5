// Found by an adversarial review, on an edge whose DATA_DIR filled up:
// 1. Writes that met a full disk were answered 503 "the write buffer is unavailable", not the 507 the
//    limits promise (SPEC §2.6), though the cause was plain: no space.
// 2. A write answered 201 whose local apply failed (no space for local.db) stayed unreadable at the
//    edge until some later write's catch-up, even after space was freed (SPEC §2.7).
// Here: a real SQLite buffer capped with max_page_count (its commit fails with SQLITE_FULL), and a
// real lock on local.db held by another connection.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteBuffer } from '../../src/edge/buffer/sqlite.js';
import { LocalStore } from '../../src/edge/local-store.js';
import { GroupCommitter } from '../../src/edge/committer.js';
import { createLogger } from '../../src/lib/logger.js';
import { InsufficientStorageError } from '../../src/lib/errors.js';
import { edgeDataDir, localClient, spawnEdge, startTestEdge, type TestEdge } from '../support/edge.js';
import { until } from '../support/daemon.js';
import { tx } from '../edge/buffer-conformance.js';

describe('the buffer out of space', () => {
  const dir = mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), 'opsdb-full-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('answers 507, not 503, and keeps everything accepted before', async () => {
    const buffer = new SqliteBuffer(join(dir, 'buffer.db'));
    const local = new LocalStore(join(dir, 'local.db'));
    // The buffer's file may not grow past its current size plus a few pages: a real SQLITE_FULL.
    const db = (buffer as unknown as { db: Database.Database }).db;
    const pages = db.pragma('page_count', { simple: true }) as number;
    db.pragma(`max_page_count = ${pages + 8}`);
    const committer = new GroupCommitter(buffer, local, { groupCommitMax: 10, bufferMaxBytes: 1e12, minFreeDiskBytes: 0, dataDir: dir }, createLogger('silent'));
    const accepted: string[] = [];
    let refusal: unknown = null;
    for (let i = 0; i < 500 && !refusal; i++) {
      const t = tx([], 'x'.repeat(2000));
      await committer.submit(t).then(() => accepted.push(t.transaction_id), (err: unknown) => (refusal = err));
    }
    assert.ok(refusal, 'the capped file filled up');
    assert.ok(refusal instanceof InsufficientStorageError, `got ${(refusal as Error).constructor.name}: ${(refusal as Error).message}`);
    assert.equal(refusal.status, 507);
    assert.match(refusal.message, /disk under the buffer is full; nothing was stored/);
    assert.ok(accepted.length > 0);
    for (const id of accepted) assert.equal((await buffer.get(id))?.state, 'pending');
    const v = await buffer.verify();
    assert.deepEqual(v.problems, []);
    assert.equal(v.stats.accepted_total, accepted.length);
    committer.close();
    local.close();
    await buffer.close();
  });
});

describe('the free-space limit in a daemon just started', () => {
  it('holds from its first write (the first look at the disk is not skipped)', async () => {
    const dataDir = edgeDataDir('disk-first');
    const token = (await localClient(dataDir, 'http://unused', ['observer'], 'w')).token!;
    const edge = await spawnEdge({ DATA_DIR: dataDir, MIN_FREE_DISK_BYTES: String(Number.MAX_SAFE_INTEGER) });
    try {
      const r = await fetch(`${edge.url}/executed_obs_units/start`, {
        method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ obs_unit_id: 1 }),
      });
      assert.equal(r.status, 507, await r.text());
    } finally {
      await edge.kill('SIGKILL');
    }
  });
});

describe('a write the local store could not take', () => {
  let edge: TestEdge | undefined;
  after(async () => {
    await edge?.stop();
  });

  it('becomes readable once the store can take it, without waiting for another write', async () => {
    edge = await startTestEdge('local-retry');
    const locker = new Database(join(edge.dataDir, 'local.db'));
    locker.exec('BEGIN IMMEDIATE');
    let w;
    try {
      w = await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
      assert.equal(w.status, 201, w.text);
      assert.equal((await edge.admin.get(`/executed_obs_units/${w.body.id}`)).status, 404, 'the lock did stop the local apply');
    } finally {
      locker.exec('COMMIT');
      locker.close();
    }
    // No other write: the catch-up timer alone must bring it back.
    await until('the write readable at the edge', async () => (await edge!.admin.get(`/executed_obs_units/${w.body.id}`)).status === 200, 10_000);
  });
});
