import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { SqliteBuffer } from '../../src/edge/buffer/sqlite.js';
import { RECEIPT_DAYS } from '../../src/edge/buffer/buffer.js';
import { bufferConformance, tx } from './buffer-conformance.js';
import { dropDependencyIndex, dropEdgesOfCompacted, forgetDependenciesAfter } from './sqlite-older-builds.js';

const dir = mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), 'opsdb-buffer-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

bufferConformance('SQLite (WAL, synchronous=FULL, a real file)', {
  open: async () => new SqliteBuffer(join(dir, `buffer-${++n}.db`)),
  reopen: async (b) => {
    await b.close();
    return new SqliteBuffer((b as SqliteBuffer).path);
  },
  reopenWithoutDependencyIndex: async (b) => {
    await b.close();
    const path = (b as SqliteBuffer).path;
    dropDependencyIndex(path);
    return new SqliteBuffer(path);
  },
  reopenAfterOlderBuildAppended: async (b, after) => {
    await b.close();
    const path = (b as SqliteBuffer).path;
    forgetDependenciesAfter(path, after);
    return new SqliteBuffer(path);
  },
  reopenAfterBuildDroppingCompactedEdges: async (b) => {
    await b.close();
    const path = (b as SqliteBuffer).path;
    dropEdgesOfCompacted(path);
    return new SqliteBuffer(path);
  },
});

describe('SQLite compaction of a large backlog', () => {
  it('drops it in chunks, keeps every receipt, and counts the pages it freed as reusable', async () => {
    const path = join(dir, 'compact-chunks.db');
    const b = new SqliteBuffer(path);
    try {
      const all = [];
      for (let i = 0; i < 12; i++) all.push(...(await b.append(Array.from({ length: 1000 }, () => tx([], 'x'.repeat(500))))));
      await b.settle((await b.claim(20_000, 1e12)).map((t) => ({ seq: t.seq, outcome: 'applied' as const })));
      const [keep] = await b.append([tx()]);
      const freeBefore = await b.reusableBytes();
      assert.equal(await b.compact(all.at(-1)!.seq), 12_000, 'more than one chunk');
      const s = await b.stats();
      assert.equal(s.synced, 0);
      assert.equal(s.held_bytes, keep!.bytes);
      assert.ok(await b.receipt(all[0]!.transaction_id));
      assert.ok(await b.receipt(all[11_999]!.transaction_id));
      assert.ok((await b.reusableBytes()) - freeBefore > 12_000 * 500, 'the rows it dropped left free pages that new writes take');
      assert.deepEqual((await b.verify()).problems, []);
    } finally {
      await b.close();
    }
  });
});

describe('SQLite dependency index', () => {
  it('an open cut short while indexing an older buffer leaves it to the next open, which indexes everything', async () => {
    const path = join(dir, 'dep-backfill-retried.db');
    const first = new SqliteBuffer(path);
    const [parent] = await first.append([tx()]);
    const [child] = await first.append([tx([parent!.seq])]);
    await first.close();
    // What an older build left, with one row the indexing cannot read, so the first open fails mid-way.
    const db = new Database(path);
    db.exec('DROP TABLE dep');
    const [broken] = (db.prepare('INSERT INTO tx SELECT seq + 100, transaction_id || \'x\', site, endpoint, created_at, steps, \'[1,\', bytes, state, attempts, last_error, central_result, updated_at, order_only FROM tx WHERE seq = ? RETURNING seq').all(child!.seq) as { seq: number }[]);
    db.close();
    assert.throws(() => new SqliteBuffer(path), /malformed JSON/);
    const repair = new Database(path);
    repair.prepare('DELETE FROM tx WHERE seq = ?').run(broken!.seq);
    repair.close();
    const b = new SqliteBuffer(path);
    try {
      assert.deepEqual((await b.verify()).problems, [], 'the second open indexed what the first could not');
      await b.claim(1, 1e9);
      await b.settle([{ seq: parent!.seq, outcome: 'rejected', error: { code: 'constraint', message: 'no', at: new Date().toISOString() } }]);
      assert.equal((await b.get(child!.transaction_id))?.state, 'blocked');
    } finally {
      await b.close();
    }
  });

  it('verify names a dependency missing from it', async () => {
    const path = join(dir, 'dep-index.db');
    const b = new SqliteBuffer(path);
    try {
      const [parent] = await b.append([tx()]);
      await b.append([tx([parent!.seq])]);
      assert.deepEqual((await b.verify()).problems, []);
      const db = new Database(path);
      db.exec('DELETE FROM dep');
      db.close();
      const v = await b.verify();
      assert.equal(v.ok, false);
      assert.match(v.problems.join('\n'), /dependency index: 1 dependencies/);
    } finally {
      await b.close();
    }
  });

  it('verify beside a running daemon reads one snapshot: a group committed while it reads is no false alarm', async () => {
    // `opsdb buffer verify` opens its own connection to the file the daemon's storage thread writes.
    const path = join(dir, 'verify-live.db');
    const daemon = new SqliteBuffer(path);
    const cli = new SqliteBuffer(path);
    try {
      await daemon.append([tx(), tx()]);
      // The daemon commits a group just after verify has read the counters, before it recounts the rows.
      const reader = cli as unknown as { statsNow: () => unknown };
      const statsNow = reader.statsNow.bind(cli);
      let committed = 0;
      reader.statsNow = () => {
        const s = statsNow();
        void daemon.append([tx()]); // better-sqlite3 commits before append returns its promise
        committed += 1;
        return s;
      };
      const v = await cli.verify();
      assert.equal(committed, 1, 'the group was committed in the middle of verify');
      assert.deepEqual(v.problems, [], 'a sound buffer verified as broken');
      assert.equal(v.stats.pending, 2, 'the counters are those of the moment verify began');
      assert.equal(v.counted.pending, 2, 'and so are the rows counted');
      assert.equal((await daemon.stats()).pending, 3, 'the group is stored');
    } finally {
      await cli.close();
      await daemon.close();
    }
  });
});

describe('SQLite receipts expire', () => {
  it(`answers a receipt for ${RECEIPT_DAYS} days after compaction, then not, and the next compaction drops it`, async () => {
    const path = join(dir, 'receipts.db');
    const b = new SqliteBuffer(path);
    try {
      const [old, fresh] = await b.append([tx(), tx()]);
      await b.settle((await b.claim(10, 1e9)).map((t) => ({ seq: t.seq, outcome: 'applied' as const })));
      assert.equal(await b.compact(fresh!.seq), 2);
      // Age one receipt past the limit, through a second connection to the real file.
      const db = new Database(path);
      const aged = new Date(Date.now() - (RECEIPT_DAYS * 86_400_000 + 60_000)).toISOString();
      db.prepare('UPDATE receipt SET compacted_at = ? WHERE transaction_id = ?').run(aged, old!.transaction_id);
      assert.equal(await b.receipt(old!.transaction_id), null, 'too old to answer');
      assert.ok(await b.receipt(fresh!.transaction_id), 'a recent one still answers');
      await b.compact(0); // nothing to compact, but it prunes
      assert.deepEqual(db.prepare('SELECT transaction_id FROM receipt').all(), [{ transaction_id: fresh!.transaction_id }]);
      db.close();
    } finally {
      await b.close();
    }
  });
});

describe('SQLite buffer made before order_only', () => {
  it('gains the column at open, and its transactions read as having no order-only parent', async () => {
    const path = join(dir, 'before-order-only.db');
    const first = new SqliteBuffer(path);
    const [parent] = await first.append([tx()]);
    const [child] = await first.append([tx([parent!.seq])]);
    await first.close();
    // What an older build made: the same table without the column.
    const db = new Database(path);
    db.exec('ALTER TABLE tx DROP COLUMN order_only');
    db.close();
    const b = new SqliteBuffer(path);
    try {
      assert.equal((await b.get(child!.transaction_id))?.order_only, undefined);
      assert.deepEqual((await b.get(child!.transaction_id))?.depends_on, [parent!.seq]);
      const [f] = await b.append([{ ...tx([parent!.seq]), order_only: [parent!.seq] }]);
      assert.deepEqual((await b.get(f!.transaction_id))?.order_only, [parent!.seq]);
      assert.deepEqual((await b.verify()).problems, []);
    } finally {
      await b.close();
    }
  });
});
