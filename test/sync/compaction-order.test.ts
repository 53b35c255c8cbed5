// The buffer forgets a synced transaction (compaction) only after the local store has recorded it as
// synced and put everything it holds on disk (fsync of local.db and its WAL): the local store commits
// without an fsync of its own, and a power cut must not keep the compaction while losing the rows and
// central's copy it relied on (found in review). What can be shown without cutting power: the order of
// the calls, on the real engine, a real central, a real SQLite buffer and local store; and that the
// flush itself runs on the store's real files.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { until } from '../support/daemon.js';
import { engineFor } from '../support/engine.js';
import { randomUUID } from 'node:crypto';
import { uuidv7 } from '../../src/lib/uuid.js';
import { LocalStore } from '../../src/edge/local-store.js';

describe('compaction after the local store is on disk', () => {
  let central: TestCentral;
  let dir: string;
  before(async () => {
    central = await startTestCentral('compaction-order');
    dir = mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), 'opsdb-compaction-order-'));
  });
  after(async () => {
    await central?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('records the seqs as synced and flushes local.db before the buffer drops them', async () => {
    const { engine, local, buffer, close } = await engineFor(central, 'compactorder', dir);
    const calls: string[] = [];
    const noteSynced = local.noteSynced.bind(local);
    local.noteSynced = (seqs) => {
      calls.push(`noteSynced ${seqs.join(',')}`);
      noteSynced(seqs);
    };
    const flush = local.flushToDisk.bind(local);
    local.flushToDisk = () => {
      calls.push('flush');
      flush();
    };
    const compact = buffer.compact.bind(buffer);
    buffer.compact = async (upTo) => {
      calls.push(`compact ${upTo}`);
      return compact(upTo);
    };
    try {
      const id = randomUUID();
      await buffer.append([{
        transaction_id: uuidv7(), site: 'compactorder', created_at: new Date().toISOString(), endpoint: 'POST /executed_obs_units/start',
        steps: [{ step_id: 'obs', op: 'create', table: 'executed_obs_unit', id, data: { id, obs_unit_id: 1, site: 'compactorder', status: 'running', start_time: new Date().toISOString() } }],
        depends_on: [],
      }]);
      engine.start();
      await until('the transaction compacted', async () => calls.some((c) => c.startsWith('compact')), 20_000);
      assert.deepEqual(calls.slice(0, 3), ['noteSynced 1', 'flush', 'compact 1']);
      assert.equal((await buffer.stats()).synced, 0);
    } finally {
      await close();
    }
  });

  it('a seq central lost and refused when sent again leaves the synced record', () => {
    const local = new LocalStore(join(dir, 'unsynced-local.db'));
    try {
      local.noteSynced([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20]);
      local.noteUnsynced([3, 7, 10, 15, 20]);
      assert.deepEqual(JSON.parse(local.getMeta('synced_seqs')!), [[1, 2], [4, 6], [8, 9]]);
    } finally {
      local.close();
    }
  });
});
