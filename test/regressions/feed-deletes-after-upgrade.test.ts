// Found in review (an upgrade): builds before 2026-11-26 skipped the change feed's deletes (`row: null`).
// Upgraded, the edge went on from where its replica was, so what central had deleted meanwhile (a token, an
// observation deleted in SQL) stayed at the edge for good. A replica made before the current build now
// reads central's feed again from the start, once. A real central on PostgreSQL, the real engine.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { until } from '../support/daemon.js';
import { engineFor } from '../support/engine.js';
import { LocalStore } from '../../src/edge/local-store.js';

describe('a replica made by a build that skipped deletes', () => {
  let central: TestCentral;
  let dir: string;
  before(async () => {
    central = await startTestCentral('deletes-upgrade');
    dir = mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), 'opsdb-deletes-upgrade-'));
  });
  after(async () => {
    await central?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads the feed again from the start, once, and so receives the deletes it skipped', async () => {
    const names = (local: LocalStore) => local.listReference('observing_program').map((p) => p.name);
    let edge = await engineFor(central, 'deletes-upgrade', dir);
    edge.engine.start();
    await central.db.query(`INSERT INTO observing_program (name) VALUES ('deleted while the old build ran')`);
    await until('the replica to have it', async () => names(edge.local).includes('deleted while the old build ran'));
    await edge.close();

    // What the old build did: central deletes the row, the edge reads past the delete without applying it.
    await central.db.query(`DELETE FROM observing_program WHERE name = 'deleted while the old build ran'`);
    const head = Number((await central.db.query('SELECT pos FROM feed_position WHERE id = 1')).rows[0].pos);
    const old = new LocalStore(join(dir, 'local.db'));
    old.setMeta('replica_position', String(head));
    old.deleteMeta('replica_position_id');
    old.deleteMeta('feed_deletes_applied');
    old.close();

    edge = await engineFor(central, 'deletes-upgrade-2', dir);
    try {
      assert.equal(edge.local.feedReadAgain, true);
      assert.equal(edge.local.position(), 0);
      edge.engine.start();
      await until('the delete to reach the replica', async () => !names(edge.local).includes('deleted while the old build ran'), 10_000);
      await until('the replica to reach the head again', async () => edge.local.position() >= head);
    } finally {
      await edge.close();
    }
    const again = new LocalStore(join(dir, 'local.db'));
    try {
      assert.equal(again.feedReadAgain, false, 'once');
      assert.ok(again.position() >= head, 'the position is kept from then on');
    } finally {
      again.close();
    }
  });

  it('a new replica has nothing to read again', () => {
    const fresh = new LocalStore(join(dir, 'fresh.db'));
    try {
      assert.equal(fresh.feedReadAgain, false);
      assert.equal(fresh.getMeta('feed_deletes_applied'), '1');
    } finally {
      fresh.close();
    }
  });
});
