// SYNC_PIPELINE=2: a buffer fault while two batches are out crashes the edge daemon.
//
// SyncEngine.pushPipelined (src/sync/engine.ts) starts `next.done = push(B)`
// and then awaits `current.done` (batch A). Nothing observes `next.done` until
// A's answer is in. If push(B) REJECTS in the meantime — its settle() (or
// backlog()) throws because the buffer is not answering (Redis down, SQLite
// busy) — the rejection is unhandled: Node (--unhandled-rejections=throw, the
// default) raises it as an uncaught exception and the daemon exits. The same
// holds for `current.done` while the engine awaits claim() of the next batch.
// Before the change (and with SYNC_PIPELINE=1) the same fault is caught by
// run(): "a local fault (the buffer itself): report it and try again later",
// in_flight released, the daemon keeps serving (503 on writes, reads go on).
//
// Interleaving forced here, with real processes:
//   1. a real central whose MAX_BODY_BYTES (16 KiB) is below the edge's, an edge
//      on a Redis buffer (its own redis-server), SYNC_BATCH_SIZE=1;
//   2. two writes buffered while the engine is paused (a 401 from a middlebox): tx1
//      small, tx2 ~50 KiB; the link then passes (with a delay), the probe pull
//      un-pauses the engine (so no pull is due, and the next batch is sent early);
//   3. the test holds a row A's insert needs (obs_unit 1, FOR UPDATE), so batch
//      A=[tx1] waits at central (holding the site row, as a long apply does);
//   4. the edge sends A, then B=[tx2] (after_batch=A). As soon as B is on the
//      wire, Redis is killed. Central answers B 413 at once (too large); the
//      edge's settle of B fails (Redis down) while A is still outstanding.
// Expected: the daemon stays up (the engine reports a local fault and retries).
// Before the fix the edge process exited on the unhandled rejection; now each
// batch's promise is settled into a result at once and rethrown after both are in.
// Guarantees touched: the edge must keep running through a buffer outage
// (SPEC §2.4/§2.5: failures are reported and retried, never a dead daemon);
// severity: medium (acknowledged data is durable, but the site daemon dies on a
// transient Redis/SQLite hiccup, and with Redis still down it cannot restart).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  Acked, addSite, centralDatabase, createObservation, edgeDir, killAllProcesses, spawnCentral, startEdgeProcess, waitFor,
  type CentralDatabase,
} from '../support/processes.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { startRedisServer, tempDir } from '../support/services.js';

let db: CentralDatabase;

describe('pipeline: a buffer fault while the early batch is out', { timeout: 90_000 }, () => {
  before(async () => {
    db = await centralDatabase('pipe-unobs');
  });
  after(async () => {
    await killAllProcesses();
    await db?.drop();
  });

  it('the edge daemon survives a Redis outage hitting the early batch before the first is answered', async (t) => {
    const site = `pipe-unobs-${process.pid}`;
    const tmp = await tempDir('pipe-unobs');
    const redis = await startRedisServer(join(tmp.path, 'redis'));
    const [token, central, dir] = await Promise.all([
      addSite(db.url, site),
      spawnCentral({ DATABASE_URL: db.url, MAX_BODY_BYTES: String(16 * 1024) }),
      edgeDir('pipe-unobs'),
    ]);
    const proxy = await FaultProxy.start(central.port, 'pass');
    const edge = await startEdgeProcess({
      SITE_NAME: site, DATA_DIR: dir.dataDir, CENTRAL_URL: proxy.url, SITE_TOKEN: token,
      SYNC_INTERVAL_MS: '200', RETRY_BASE_MS: '100', RETRY_MAX_MS: '300', SYNC_TIMEOUT_MS: '20000', MIN_FREE_DISK_BYTES: '0',
      SYNC_BATCH_SIZE: '1', SYNC_PIPELINE: '2', BUFFER_BACKEND: 'redis', REDIS_URL: redis.url,
    });
    let stderr = '';
    edge.child.stderr!.on('data', (d) => (stderr += d));
    const lock = await db.pool.connect();
    t.after(async () => {
      await lock.query('ROLLBACK').catch(() => {});
      lock.release();
      await Promise.allSettled([edge.kill('SIGKILL'), central.kill('SIGKILL'), proxy.close()]);
      await redis.kill().catch(() => {});
      dir.remove();
      await tmp.cleanup();
    });

    const admin = dir.admin(edge.url);
    const acked = new Acked();
    // The replica catches up first (so later pulls are one small page).
    await waitFor(() => proxy.seen.some((r) => /changes\?since=[1-9]/.test(r.path)), 15_000, 'the replica to catch up');
    // Then a middlebox "refuses the token" while the writes are buffered: the engine pauses (no push, no pull).
    await proxy.setMode({
      respond: { status: 401, body: '{"error":{"code":"unauthorized","message":"no"}}', headers: { 'content-type': 'application/json' } },
    });
    await waitFor(async () => (await admin.get('/buffer-stats')).body.background_processor === 'paused', 10_000, 'the engine to pause');
    assert.equal((await createObservation(admin, acked)).status, 201);
    const files = Array.from({ length: 300 }, (_, n) => ({
      name: `big_${n}.fits`, path: `/data/raw/a-rather-long-directory-name/for-a-big-transaction/big_${n}.fits`,
      size: 1000 + n, checksum: `sha256:${'0'.repeat(40)}${n}`, file_type: 'fits',
    }));
    const big = await admin.post('/api/demo/create-observation', {
      body: { obs_data: { obs_unit_id: 1, start_time: '2025-01-01T00:00:00Z', package_name: 'big', instrument_module_configuration_id: 1 }, raw_files: files },
    });
    assert.equal(big.status, 201, big.text);

    await waitFor(async () => {
      const st = (await admin.get('/buffer-stats')).body;
      return st.background_processor === 'paused' && st.pending_transactions === 2;
    }, 15_000, 'the engine to pause with both writes pending');
    // Central will hold batch A (holding the site row) at its insert, as a long apply would: the
    // obs_unit it references is locked. The pull is not held up by this.
    await lock.query('BEGIN');
    await lock.query('SELECT 1 FROM obs_unit WHERE id = 1 FOR UPDATE');

    proxy.captureBodies = true;
    await proxy.setMode({ delay: 700 });
    // B (the early batch, after_batch = A) is on the wire: the buffer goes away now.
    await waitFor(
      () => proxy.seen.some((r) => r.method === 'POST' && r.complete && /"after_batch":"[0-9a-f-]{36}"/.test(r.body ?? '')),
      15_000, 'the early batch to be sent',
      () => proxy.seen.map((r) => `${r.method} ${r.path} ${r.complete} ${(r.body ?? '').slice(0, 0)}`),
    );
    await redis.kill();

    // B's 413 comes back in ~1.5 s while A is still held at central; give it time.
    const code = await Promise.race([edge.exited, new Promise<'alive'>((r) => setTimeout(() => r('alive'), 10_000))]);
    assert.equal(
      code, 'alive',
      `the edge daemon exited (${code}) on a buffer fault during a pipelined push:\n${stderr.slice(-1500)}\n` +
        `last log lines:\n${edge.lines.slice(-4).join('\n')}`,
    );
  });
});
