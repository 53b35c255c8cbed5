// Found in review: when the disk under DATA_DIR filled up all the way (another program wrote to it, or the
// watermark was set low), SQLite could not record central's answers nor compact what central held, and the
// edge retried without end: central had every transaction, the edge kept them in flight, refused every
// write, and nothing could free the space. The edge now keeps DISK_RESERVE_BYTES of room in a file once the
// disk gets near its watermark, and gives it back when the disk is full, so sync can finish and compact.
// A real 64 MiB file system (tmpfs: the test runs as root, like CI), central on PostgreSQL, the fault proxy.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { centralDatabase, killAllProcesses, startScenario, waitFor, type CentralDatabase } from '../support/processes.js';
import { client } from '../support/http.js';
import { bulkOfFiles, mountSmallDisk } from '../support/small-disk.js';

const FS_BYTES = 64 * 1024 * 1024;
const stats = async (url: string) => (await (await fetch(`${url}/buffer-stats`)).json()) as Record<string, number>;

/** What another program does: writes until the disk is full. */
function fillDisk(path: string): void {
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
}

describe('a disk filled to the last byte under an edge', () => {
  let disk: ReturnType<typeof mountSmallDisk>;
  let db: CentralDatabase;
  before(async () => {
    disk = mountSmallDisk('full-disk', FS_BYTES);
    db = await centralDatabase('disk_reserve');
  });
  after(async () => {
    await killAllProcesses();
    await db?.drop();
    disk?.unmount();
  });

  it('still syncs and compacts what it holds, and takes writes again once the other program frees its space', async (t) => {
    const s = await startScenario(db, 'disk-reserve', {
      edgeEnv: { MIN_FREE_DISK_BYTES: String(1024 * 1024), DISK_RESERVE_BYTES: String(8 * 1024 * 1024), SYNC_INTERVAL_MS: '100', RETRY_BASE_MS: '50', RETRY_MAX_MS: '400' },
    });
    t.after(() => s.stop());
    const reserve = join(s.dir.dataDir, 'disk-reserve');
    await waitFor(async () => existsSync(reserve), 10_000, 'the reserve made (the disk is within 1 GiB of its watermark)');
    const c = () => client(s.edge.url, s.dir.adminToken);
    const obs = await c().post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    assert.equal(obs.status, 201, obs.text);
    await waitFor(async () => (await stats(s.edge.url)).applied_total === 1, 15_000, 'the first write synced');

    // During an outage, writes pile up; then another program takes every byte left.
    await s.proxy.setMode('refuse');
    const bulk = (i: number) => bulkOfFiles(obs.body.id, i);
    for (let i = 0; i < 60; i++) assert.equal((await c().post('/raw_data_files/bulk', { body: bulk(i) })).status, 201);
    const filler = join(disk.path, 'another-program');
    fillDisk(filler);
    await waitFor(async () => !existsSync(reserve), 10_000, 'the reserve given back');

    // The link comes back: everything reaches central and is compacted, though the disk was full.
    await s.proxy.setMode('pass');
    await waitFor(async () => {
      const st = await stats(s.edge.url);
      return st.applied_total === 61 && st.in_flight_transactions === 0 && st.synced_awaiting_replica === 0;
    }, 60_000, 'drained and compacted', () => stats(s.edge.url));

    // The other program frees its space: writes are taken again, and the reserve is made again.
    rmSync(filler);
    await waitFor(async () => (await c().post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).status === 201, 10_000, 'a write taken again');
    await waitFor(async () => existsSync(reserve), 10_000, 'the reserve made again');
  });
});
