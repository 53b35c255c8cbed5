// Found in review: writes refused for MIN_FREE_DISK_BYTES during an outage stayed refused after the link
// came back and the backlog had drained and been compacted, until a restart. Compaction frees pages inside
// buffer.db, which SQLite reuses but does not hand back to the file system, and the WAL kept the size a
// large transaction had given it; the watermark only asked the file system. Now the free pages count as
// free space, compaction runs in chunks, and the WAL is cut back after checkpoints (journal_size_limit).
// A real 40 MiB file system (tmpfs: the test runs as root, like CI), central on PostgreSQL, the fault proxy.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { centralDatabase, killAllProcesses, startScenario, waitFor, type CentralDatabase } from '../support/processes.js';
import { client } from '../support/http.js';
import { bulkOfFiles, mountSmallDisk } from '../support/small-disk.js';

const FS_BYTES = 40 * 1024 * 1024;
const MIN_FREE = 24 * 1024 * 1024;
const stats = async (url: string) => (await (await fetch(`${url}/buffer-stats`)).json()) as Record<string, number>;

describe('the free-disk watermark after an outage drains', () => {
  let disk: ReturnType<typeof mountSmallDisk>;
  let db: CentralDatabase;
  before(async () => {
    disk = mountSmallDisk('small-disk', FS_BYTES);
    db = await centralDatabase('disk_watermark');
  });
  after(async () => {
    await killAllProcesses();
    await db?.drop();
    disk?.unmount();
  });

  it('takes writes again once the backlog is gone, without a restart', async (t) => {
    const s = await startScenario(db, 'disk-watermark', { edgeEnv: { MIN_FREE_DISK_BYTES: String(MIN_FREE), SYNC_INTERVAL_MS: '100', RETRY_BASE_MS: '50', RETRY_MAX_MS: '400' } });
    t.after(() => s.stop());
    const c = () => client(s.edge.url, s.dir.adminToken);
    const obs = await c().post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    assert.equal(obs.status, 201, obs.text);
    await waitFor(async () => (await stats(s.edge.url)).applied_total === 1, 15_000, 'the first write synced');

    // The link is down; bulk file writes fill the disk down to the watermark.
    await s.proxy.setMode('refuse');
    const bulk = (i: number) => bulkOfFiles(obs.body.id, i);
    let refused: { error: { message: string } } | null = null;
    let accepted = 0;
    for (let i = 0; i < 2000 && !refused; i++) {
      const r = await c().post('/raw_data_files/bulk', { body: bulk(i) });
      if (r.status === 201) accepted += 1;
      else if (r.status === 507) refused = r.body;
      else assert.fail(`${r.status} ${r.text}`);
    }
    assert.ok(refused && accepted > 20, `refused for the disk after ${accepted} writes`);
    assert.match(refused.error.message, /MIN_FREE_DISK_BYTES/);

    // The link is back: everything drains and is compacted.
    await s.proxy.setMode('pass');
    await waitFor(async () => {
      const st = await stats(s.edge.url);
      return st.pending_transactions === 0 && st.in_flight_transactions === 0 && st.synced_awaiting_replica === 0;
    }, 60_000, 'drained and compacted');
    const wal = statSync(join(s.dir.dataDir, 'buffer.db-wal')).size;
    t.diagnostic(`file system free ${statfsSync(disk.path).bavail * statfsSync(disk.path).bsize}, buffer.db-wal ${wal}`);

    // A write is taken again (the watermark is looked at again within a second).
    await waitFor(async () => (await c().post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).status === 201, 10_000, 'a write taken again');
    await waitFor(async () => (await stats(s.edge.url)).applied_total === accepted + 2, 15_000, 'and synced');
  });
});
