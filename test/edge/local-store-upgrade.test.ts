// A local store made before records kept the transaction that created them (`created_seq`) is brought
// up to date when it is opened: the column is added, filled from the last local writer (`origin_seq`, what
// sync_status showed before), and a second connection opening it at the same time is not disturbed.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { LocalStore } from '../../src/edge/local-store.js';
import { LOCAL_SCHEMA, ENTITY_KEY } from '../../src/edge/local-schema.js';

const dir = mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), 'opsdb-local-upgrade-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('a local store from before created_seq', () => {
  it('gets the column, filled from origin_seq, when opened', () => {
    const path = join(dir, 'local.db');
    const old = new Database(path);
    old.exec(LOCAL_SCHEMA.replaceAll(', created_seq INTEGER', ''));
    assert.ok(!(old.prepare('PRAGMA table_info(raw_data_file)').all() as { name: string }[]).some((c) => c.name === 'created_seq'), 'the old shape');
    old.prepare(`INSERT INTO executed_obs_unit (id, obs_unit_id, site, status, start_time, created_at, updated_at, origin_seq)
                 VALUES ('a', 1, 's', 'running', 't', 't', 't', 7), ('b', 1, 's', 'running', 't', 't', 't', NULL)`).run();
    old.close();

    const first = new LocalStore(path);
    const second = new LocalStore(path);
    try {
      for (const table of Object.keys(ENTITY_KEY)) {
        const cols = (first.db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name);
        assert.ok(cols.includes('created_seq'), `${table} has created_seq`);
      }
      assert.deepEqual(first.findRow('executed_obs_unit', 'a')?.created_seq, 7);
      assert.equal(first.findRow('executed_obs_unit', 'b')?.created_seq, null, 'a row from central has no creating transaction here');
      assert.equal(second.findRow('executed_obs_unit', 'a')?.created_seq, 7);
    } finally {
      first.close();
      second.close();
    }
  });

  it('a create applied over a record already here keeps the transaction that created it', () => {
    const local = new LocalStore(join(dir, 'keep.db'));
    try {
      const step = (id: string) => ({ step_id: 'f', op: 'create' as const, table: 'raw_data_file', id,
        data: { id, name: 'a', path: '/a', size: 1, checksum: 'c', file_type: 'fits', executed_obs_unit_id: 'o' } });
      local.applyBuffered([{ seq: 1, created_at: 't', steps: [step('x')] } as never]);
      local.applyBuffered([{ seq: 2, created_at: 't', steps: [step('x')] } as never]);
      const row = local.findRow('raw_data_file', 'x')!;
      assert.deepEqual([row.created_seq, row.origin_seq], [1, 2]);
    } finally {
      local.close();
    }
  });
});
