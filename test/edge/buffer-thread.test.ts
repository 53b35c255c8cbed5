/**
 * The SQLite buffer in its own thread (the daemon's default): the same
 * conformance suite as in the caller's thread, plus what the thread adds:
 * group commits applied to the local store there and seen at once by the
 * caller's connection, errors that keep their class across the thread, and a
 * dead thread that fails every call instead of hanging it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ThreadedSqliteBuffer } from '../../src/edge/buffer/thread.js';
import { BufferUnavailableError, DuplicateTransactionError, OutcomeUnknownError, isBufferUnavailable, type NewTransaction } from '../../src/edge/buffer/buffer.js';
import { LocalStore } from '../../src/edge/local-store.js';
import { bufferConformance, tx } from './buffer-conformance.js';
import { dropDependencyIndex, dropEdgesOfCompacted, forgetDependenciesAfter } from './sqlite-older-builds.js';

const dir = mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), 'opsdb-buffer-thread-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = () => {
  n += 1;
  return { buffer: join(dir, `buffer-${n}.db`), local: join(dir, `local-${n}.db`) };
};

bufferConformance('SQLite in the storage thread', {
  open: async () => {
    const p = fresh();
    return ThreadedSqliteBuffer.open(p.buffer, p.local);
  },
  reopen: async (b) => {
    await b.close();
    const path = (b as ThreadedSqliteBuffer).path;
    return ThreadedSqliteBuffer.open(path, path.replace(/buffer-(\d+)\.db$/, 'local-$1.db'));
  },
  reopenWithoutDependencyIndex: async (b) => {
    await b.close();
    const path = (b as ThreadedSqliteBuffer).path;
    dropDependencyIndex(path);
    return ThreadedSqliteBuffer.open(path, path.replace(/buffer-(\d+)\.db$/, 'local-$1.db'));
  },
  reopenAfterOlderBuildAppended: async (b, after) => {
    await b.close();
    const path = (b as ThreadedSqliteBuffer).path;
    forgetDependenciesAfter(path, after);
    return ThreadedSqliteBuffer.open(path, path.replace(/buffer-(\d+)\.db$/, 'local-$1.db'));
  },
  reopenAfterBuildDroppingCompactedEdges: async (b) => {
    await b.close();
    const path = (b as ThreadedSqliteBuffer).path;
    dropEdgesOfCompacted(path);
    return ThreadedSqliteBuffer.open(path, path.replace(/buffer-(\d+)\.db$/, 'local-$1.db'));
  },
});

const stepId = (t: NewTransaction): string => (t.steps[0] as { id: string }).id;

/** A start-observation write with every column the local store requires. */
function observation(): NewTransaction {
  const t = tx();
  const id = stepId(t);
  t.steps = [{ step_id: 'obs', op: 'create', table: 'executed_obs_unit', id,
    data: { id, obs_unit_id: 1, site: 'observatory', status: 'running', start_time: new Date().toISOString() } }];
  return t;
}

describe('the storage thread', () => {
  it('commits a group durably and applies it to the local store before answering', async () => {
    const p = fresh();
    const local = new LocalStore(p.local);
    const b = await ThreadedSqliteBuffer.open(p.buffer, p.local);
    try {
      const txs = [observation(), observation(), observation()];
      const { stored, localError } = await b.commitGroup(txs);
      assert.equal(localError, null);
      assert.deepEqual(stored.map((t) => t.seq), [1, 2, 3]);
      assert.deepEqual(stored.map((t) => t.transaction_id), txs.map((t) => t.transaction_id));
      assert.deepEqual(stored[0]!.steps, txs[0]!.steps, 'the caller gets its own steps back');
      // Read in this thread's own connection, right after the answer: read-your-writes across threads.
      assert.equal(local.appliedSeq(), 3);
      for (const t of txs) assert.ok(local.findRow('executed_obs_unit', stepId(t)), `row of ${t.transaction_id} is visible`);
      assert.equal((await b.get(txs[1]!.transaction_id))?.seq, 2, 'and durable in the buffer');
      // A write the local store cannot take is still durable, and the reason comes back to be logged.
      const { stored: bad, localError: why } = await b.commitGroup([tx()]);
      assert.equal(bad[0]!.seq, 4);
      assert.match(why ?? '', /NOT NULL constraint failed/);
      assert.equal((await b.get(bad[0]!.transaction_id))?.state, 'pending');
    } finally {
      await b.close();
      local.close();
    }
  });

  it('keeps error classes: a repeated id is a DuplicateTransactionError and stores nothing of its group', async () => {
    const p = fresh();
    const b = await ThreadedSqliteBuffer.open(p.buffer, p.local);
    try {
      const first = tx();
      await b.commitGroup([first]);
      await assert.rejects(b.commitGroup([tx(), first]), (err: unknown) => err instanceof DuplicateTransactionError && err.transactionId === first.transaction_id);
      await assert.rejects(b.append([first]), DuplicateTransactionError);
      assert.equal((await b.stats()).accepted_total, 1);
    } finally {
      await b.close();
    }
  });

  it('a call that cannot be sent to the thread fails alone; the buffer goes on', async () => {
    const p = fresh();
    const b = await ThreadedSqliteBuffer.open(p.buffer, p.local);
    try {
      const bad = { ...tx(), extra: () => 1 } as unknown as NewTransaction;
      await assert.rejects(b.append([bad]), /could not be cloned/);
      assert.equal((await b.append([tx()]))[0]!.seq, 1);
    } finally {
      await b.close();
    }
  });

  it('refuses to open a file that is not a database, with the path in the message', async () => {
    const p = fresh();
    writeFileSync(p.buffer, 'not a database '.repeat(400));
    await assert.rejects(ThreadedSqliteBuffer.open(p.buffer, p.local), (err: unknown) => err instanceof BufferUnavailableError && err.message.includes(p.buffer));
  });

  it('a commit that finished just before the thread stopped is answered as stored, not as "may or may not"', async () => {
    const p = fresh();
    const b = await ThreadedSqliteBuffer.open(p.buffer, p.local);
    const worker = (b as unknown as { worker: import('node:worker_threads').Worker }).worker;
    const done = b.commitGroup([tx()]);
    // The thread commits, answers, and then stops on its own (here: made to exit by a message of its own
    // protocol) while this thread is busy, as the HTTP thread is under load, and has not read the answer.
    worker.postMessage({ id: 0, method: 'close', args: [] });
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
    const r = await done;
    assert.deepEqual(r.stored.map((t) => t.seq), [1]);
    await exited;
    await b.close();
  });

  it('when the thread dies, calls waiting and later calls fail as unavailable, and the daemon is told once', async () => {
    const p = fresh();
    const failures: Error[] = [];
    const b = await ThreadedSqliteBuffer.open(p.buffer, p.local, (err) => failures.push(err));
    await b.commitGroup([tx()]);
    // The thread is kept busy with a large group, so the call behind it is still waiting when the thread
    // dies (a bare stats() could be answered first on a loaded machine: the test then failed now and then).
    const busy = b.commitGroup(Array.from({ length: 3000 }, () => tx()));
    const waiting = b.stats();
    await (b as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
    // A call the thread had received may have taken effect: not "nothing happened".
    for (const call of [busy, waiting]) {
      await assert.rejects(call, (err: unknown) => err instanceof OutcomeUnknownError && isBufferUnavailable(err) && /may or may not/.test((err as Error).message));
    }
    await assert.rejects(b.commitGroup([tx()]), BufferUnavailableError);
    assert.equal(failures.length, 1);
    await b.close();
  });
});
