// The local store's record of central's changes held back by a local change (held_change), on a real
// SQLite file: the earliest local change that held one back is kept, and a feed read again from an
// earlier position (central went back in time) drops them all. The flows through a real central are
// in test/regressions/held-central-change.test.ts.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LocalStore } from '../../src/edge/local-store.js';
import type { BufferedTransaction } from '../../src/edge/buffer/buffer.js';

const dir = mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), 'opsdb-held-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const ID = '01a21c64-0cf9-7000-a914-f2ea400ff4a8';
const KEY = `executed_obs_unit:${ID}`;
const row = (fields: Record<string, unknown> = {}) => ({
  id: ID, obs_unit_id: 1, site: 's', status: 'running', start_time: '2026-11-27T00:00:00.000Z', end_time: null, mean_pwv: null,
  mean_elevation: null, instrument_module_configuration_id: null, created_at: '2026-11-27T00:00:00.000Z', updated_at: '2026-11-27T00:00:00.000Z', ...fields,
});
/** A buffered finish of the observation, as transaction `seq`. */
const finish = (seq: number): BufferedTransaction => ({
  transaction_id: `01a21c64-0000-7000-8000-${String(seq).padStart(12, '0')}`, site: 's', created_at: '2026-11-27T01:00:00.000Z',
  endpoint: 'PUT /executed_obs_units/{id}/finish', depends_on: [], seq, state: 'pending', attempts: 0, last_error: null, bytes: 1,
  updated_at: '2026-11-27T01:00:00.000Z', central_result: null,
  steps: [{ step_id: 'finish', op: 'update', table: 'executed_obs_unit', id: ID, data: { status: 'aborted', mean_pwv: seq } }],
});

describe('held_change in the local store', () => {
  it('keeps the earliest local change that held a row back, and forgets everything when the feed goes back', () => {
    const local = new LocalStore(join(dir, 'local.db'));
    try {
      local.apply([{ table: 'executed_obs_unit', key: ID, row: row() }], 10, new Set(), new Map());
      local.applyBuffered([finish(1)]);
      // Central deletes the row while finish 1 stands: held back.
      local.apply([{ table: 'executed_obs_unit', key: ID, row: null }], 20, new Set([KEY]), new Map([[KEY, 1]]));
      assert.deepEqual(local.heldChanges(), [{ table: 'executed_obs_unit', key: ID, heldBy: 1, origin: 1 }]);
      // A second finish; central's next change of the row is held back by it, but the first still counts.
      local.applyBuffered([finish(2)]);
      local.apply([{ table: 'executed_obs_unit', key: ID, row: row({ mean_pwv: 0.7 }) }], 30, new Set([KEY]), new Map([[KEY, 2]]));
      assert.deepEqual(local.heldChanges(), [{ table: 'executed_obs_unit', key: ID, heldBy: 1, origin: 2 }]);
      // Released: central's newest change (its copy with mean_pwv 0.7), not the delete before it.
      local.settleHeld(local.heldChanges(), []);
      assert.deepEqual(local.heldChanges(), []);
      const [back] = local.listExecutedObsUnits({ limit: 10 }).items as { mean_pwv: number; status: string }[];
      assert.equal(back?.mean_pwv, 0.7);
      assert.equal(back?.status, 'running');

      // Held again, then central's feed is read from the start (it went back to a backup): dropped.
      local.applyBuffered([finish(3)]);
      local.apply([{ table: 'executed_obs_unit', key: ID, row: null }], 40, new Set([KEY]), new Map([[KEY, 3]]));
      assert.equal(local.heldChanges().length, 1);
      local.apply([], 0, new Set(), new Map());
      assert.deepEqual(local.heldChanges(), [], 'a change from a history central no longer has is not kept');
      assert.equal(local.position(), 0);
    } finally {
      local.close();
    }
  });
});
