/**
 * One conformance suite for every TransactionBuffer implementation, run on
 * real engines. `open()` must give a fresh, empty buffer; `reopen(b)` closes
 * it and opens the same storage again (a restart).
 */
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { NewTransaction, TransactionBuffer, TxError } from '../../src/edge/buffer/buffer.js';
import { DuplicateTransactionError } from '../../src/edge/buffer/buffer.js';

export interface BufferFactory {
  open(): Promise<TransactionBuffer>;
  reopen(b: TransactionBuffer): Promise<TransactionBuffer>;
  /**
   * Closes `b`, makes its storage look as a build before the dependency index left it (no index, no
   * mark of one), and opens it again: an upgrade. Where a backend has no such past, leave it out.
   */
  reopenWithoutDependencyIndex?(b: TransactionBuffer): Promise<TransactionBuffer>;
  /**
   * Closes `b`, makes what a build from before the dependency index leaves when it appends to an indexed
   * buffer (a downgrade): the transactions after seq `after` missing from the index, and the index's mark
   * of how far it goes not moved past `after`; then opens it again with this build. Optional, as above.
   */
  reopenAfterOlderBuildAppended?(b: TransactionBuffer, after: number): Promise<TransactionBuffer>;
  /**
   * Closes `b`, makes what a build from before failSynced leaves (compaction dropped a compacted parent's
   * entries in the dependency index, and there is no mark of how far), and opens it again: an upgrade.
   */
  reopenAfterBuildDroppingCompactedEdges?(b: TransactionBuffer): Promise<TransactionBuffer>;
}

export function tx(depends_on: number[] = [], extra = ''): NewTransaction {
  const id = randomUUID();
  return {
    transaction_id: randomUUID(),
    site: 'observatory',
    created_at: new Date().toISOString(),
    endpoint: 'POST /executed_obs_units/start',
    steps: [{ step_id: 'obs', op: 'create', table: 'executed_obs_unit', id, data: { id, obs_unit_id: 1, note: extra } }],
    depends_on,
  };
}

const err = (code: string): TxError => ({ code, message: `${code} happened`, at: new Date().toISOString() });

async function assertLedger(b: TransactionBuffer) {
  const v = await b.verify();
  assert.deepEqual(v.problems, [], 'verify finds no problem');
  const s = v.stats;
  assert.equal(s.accepted_total, s.applied_total + s.pending + s.in_flight + s.blocked + s.failed + s.discarded, 'ledger holds');
}

export function bufferConformance(name: string, factory: BufferFactory): void {
  describe(`TransactionBuffer conformance: ${name}`, () => {
    let b: TransactionBuffer;
    beforeEach(async () => {
      b = await factory.open();
    });
    afterEach(async () => {
      await b.close();
    });

    it('append assigns consecutive seqs in order and keeps the payload', async () => {
      const [a, c] = await b.append([tx(), tx()]);
      const [d] = await b.append([tx()]);
      assert.equal(c!.seq, a!.seq + 1);
      assert.equal(d!.seq, c!.seq + 1);
      const got = await b.get(a!.transaction_id);
      assert.equal(got?.state, 'pending');
      assert.deepEqual(got?.steps, a!.steps);
      assert.equal(got?.attempts, 0);
      assert.ok(got!.bytes > 0);
      const s = await b.stats();
      assert.equal(s.pending, 3);
      assert.equal(s.accepted_total, 3);
      assert.equal(s.pending_bytes, a!.bytes + c!.bytes + d!.bytes);
      assert.equal(s.last_seq, d!.seq);
      await assertLedger(b);
    });

    it('append rejects a transaction id already held, and writes none of the batch', async () => {
      const a = tx();
      await b.append([a]);
      await assert.rejects(b.append([tx(), a]), DuplicateTransactionError);
      assert.equal((await b.stats()).accepted_total, 1);
      await assertLedger(b);
    });

    it('keeps everything across a reopen, and never reuses a seq after compaction', async () => {
      const [a, c] = await b.append([tx(), tx()]);
      const claimed = await b.claim(10, 1e9);
      await b.settle(claimed.map((t) => ({ seq: t.seq, outcome: 'applied' as const })));
      assert.equal(await b.compact(c!.seq), 2);
      b = await factory.reopen(b);
      assert.equal(await b.get(a!.transaction_id), null);
      const [d] = await b.append([tx()]);
      assert.equal(d!.seq, c!.seq + 1);
      const s = await b.stats();
      assert.equal(s.applied_total, 2);
      assert.equal(s.synced, 0);
      await assertLedger(b);
    });

    it('claim takes pending in seq order, honours count and byte caps, returns at least one', async () => {
      const all = await b.append([tx(), tx(), tx(), tx(), tx()]);
      const first = await b.claim(2, 1e9);
      assert.deepEqual(first.map((t) => t.seq), [all[0]!.seq, all[1]!.seq]);
      assert.ok(first.every((t) => t.state === 'in_flight'));
      const tiny = await b.claim(10, 1);
      assert.deepEqual(tiny.map((t) => t.seq), [all[2]!.seq], 'one even over the byte cap');
      const rest = await b.claim(10, all[3]!.bytes + all[4]!.bytes);
      assert.deepEqual(rest.map((t) => t.seq), [all[3]!.seq, all[4]!.seq]);
      assert.deepEqual(await b.claim(10, 1e9), []);
      assert.equal((await b.stats()).in_flight, 5);
      await assertLedger(b);
    });

    it('settle: applied and duplicate → synced; retry → pending with an attempt counted', async () => {
      const [a, c, d] = await b.append([tx(), tx(), tx()]);
      await b.claim(10, 1e9);
      await b.settle([
        { seq: a!.seq, outcome: 'applied', central_result: { result: 'applied' } },
        { seq: c!.seq, outcome: 'duplicate' },
        { seq: d!.seq, outcome: 'retry', error: err('network') },
      ]);
      assert.equal((await b.get(a!.transaction_id))?.state, 'synced');
      assert.deepEqual((await b.get(a!.transaction_id))?.central_result, { result: 'applied' });
      assert.equal((await b.get(c!.transaction_id))?.state, 'synced');
      const again = await b.get(d!.transaction_id);
      assert.equal(again?.state, 'pending');
      assert.equal(again?.attempts, 1);
      assert.equal(again?.last_error?.code, 'network');
      const s = await b.stats();
      assert.equal(s.applied_total, 2);
      assert.equal(s.synced, 2);
      assert.equal(s.pending, 1);
      assert.deepEqual((await b.claim(10, 1e9)).map((t) => t.seq), [d!.seq], 'retried one is claimed again');
      await assertLedger(b);
    });

    it('settle ignores outcomes for transactions not in flight (idempotent)', async () => {
      const [a] = await b.append([tx()]);
      await b.claim(10, 1e9);
      await b.settle([{ seq: a!.seq, outcome: 'applied' }]);
      await b.settle([{ seq: a!.seq, outcome: 'applied' }]);
      await b.settle([{ seq: a!.seq, outcome: 'rejected', error: err('late') }]);
      await b.settle([{ seq: 999_999, outcome: 'applied' }]);
      const s = await b.stats();
      assert.equal(s.applied_total, 1);
      assert.equal((await b.get(a!.transaction_id))?.state, 'synced');
      await assertLedger(b);
    });

    it('a rejection fails the transaction and blocks its dependents, not unrelated ones', async () => {
      const [parent] = await b.append([tx()]);
      const [child, unrelated] = await b.append([tx([parent!.seq]), tx()]);
      const [grandchild] = await b.append([tx([child!.seq])]);
      const batch = await b.claim(1, 1e9);
      assert.deepEqual(batch.map((t) => t.seq), [parent!.seq]);
      await b.settle([{ seq: parent!.seq, outcome: 'rejected', error: err('validation_error') }]);
      const failed = await b.get(parent!.transaction_id);
      assert.equal(failed?.state, 'failed');
      assert.equal(failed?.last_error?.code, 'validation_error');
      assert.equal((await b.get(child!.transaction_id))?.state, 'blocked');
      assert.equal((await b.get(grandchild!.transaction_id))?.state, 'blocked');
      const next = await b.claim(10, 1e9);
      assert.deepEqual(next.map((t) => t.seq), [unrelated!.seq], 'unrelated work keeps flowing');
      const s = await b.stats();
      assert.equal(s.failed, 1);
      assert.equal(s.blocked, 2);
      await assertLedger(b);
    });

    it('a failure deep in a long backlog blocks what waits on it, across unrelated work, and a retry releases it in order', async () => {
      const [parent] = await b.append([tx()]);
      const [other] = await b.append([tx()]);
      await b.append(Array.from({ length: 300 }, () => tx()));
      const [child, waitsOnOther] = await b.append([tx([parent!.seq]), tx([other!.seq])]);
      await b.append(Array.from({ length: 50 }, () => tx()));
      const [grandchild, twoParents] = await b.append([tx([child!.seq]), tx([other!.seq, child!.seq])]);
      const [last] = await b.append([tx([grandchild!.seq])]);
      const batch = await b.claim(2, 1e9);
      assert.deepEqual(batch.map((t) => t.seq), [parent!.seq, other!.seq]);
      await b.settle([
        { seq: parent!.seq, outcome: 'rejected', error: err('constraint') },
        { seq: other!.seq, outcome: 'applied' },
      ]);
      const state = async (t: { transaction_id: string } | undefined) => (await b.get(t!.transaction_id))?.state;
      for (const t of [child, grandchild, twoParents, last]) assert.equal(await state(t), 'blocked');
      assert.equal(await state(waitsOnOther), 'pending', 'a child of the applied parent is not held');
      assert.equal((await b.stats()).blocked, 4, 'nothing else is blocked');
      await assertLedger(b);
      assert.deepEqual(await b.retry(parent!.transaction_id, 'operator'), { released: [parent!.seq, child!.seq, grandchild!.seq, twoParents!.seq, last!.seq], held: [] });
      assert.equal((await b.stats()).blocked, 0);
      await assertLedger(b);
    });

    it('a child of a parent already synced and compacted is sent, and a later failure of its sibling does not hold it', async () => {
      const [parent] = await b.append([tx()]);
      await b.settle((await b.claim(1, 1e9)).map((t) => ({ seq: t.seq, outcome: 'applied' as const })));
      await b.compact(parent!.seq);
      const [child, sibling] = await b.append([tx([parent!.seq]), tx([parent!.seq])]);
      await assertLedger(b);
      const batch = await b.claim(10, 1e9);
      assert.deepEqual(batch.map((t) => t.seq), [child!.seq, sibling!.seq]);
      await b.settle([{ seq: sibling!.seq, outcome: 'rejected', error: err('constraint') }, { seq: child!.seq, outcome: 'applied' }]);
      assert.equal((await b.get(child!.transaction_id))?.state, 'synced');
      await assertLedger(b);
    });

    if (factory.reopenWithoutDependencyIndex) {
      const withoutIndex = factory.reopenWithoutDependencyIndex.bind(factory);
      it('a buffer written before the dependency index gets it at open: a failure still blocks what waits on it', async () => {
        const [parent] = await b.append([tx()]);
        await b.append([tx()]);
        const [child] = await b.append([tx([parent!.seq])]);
        const [grandchild] = await b.append([tx([child!.seq])]);
        b = await withoutIndex(b);
        await assertLedger(b);
        await b.claim(1, 1e9);
        await b.settle([{ seq: parent!.seq, outcome: 'rejected', error: err('constraint') }]);
        assert.equal((await b.get(child!.transaction_id))?.state, 'blocked');
        assert.equal((await b.get(grandchild!.transaction_id))?.state, 'blocked');
        assert.deepEqual((await b.retry(parent!.transaction_id, 'operator')).released, [parent!.seq, child!.seq, grandchild!.seq]);
        await assertLedger(b);
      });
    }

    if (factory.reopenAfterOlderBuildAppended) {
      const olderAppended = factory.reopenAfterOlderBuildAppended.bind(factory);
      // Found by an upgrade review: after a downgrade and back, a retry of the parent released it alone, and
      // its dependents stayed blocked for good (the index was built once, and never again).
      it('what an older build appended to an indexed buffer (a downgrade, then back) is indexed at open', async () => {
        const [parent] = await b.append([tx()]);
        const [unrelated] = await b.append([tx()]);
        const [child] = await b.append([tx([parent!.seq])]);
        const [grandchild] = await b.append([tx([child!.seq])]);
        b = await olderAppended(b, unrelated!.seq);
        assert.deepEqual((await b.verify()).problems, [], 'the index is whole again');
        assert.deepEqual((await b.claim(2, 1e9)).map((t) => t.seq), [parent!.seq, unrelated!.seq]);
        await b.settle([{ seq: parent!.seq, outcome: 'rejected', error: err('constraint') }, { seq: unrelated!.seq, outcome: 'applied' }]);
        assert.equal((await b.get(child!.transaction_id))?.state, 'blocked');
        assert.equal((await b.get(grandchild!.transaction_id))?.state, 'blocked');
        assert.deepEqual((await b.retry(parent!.transaction_id, 'operator')).released, [parent!.seq, child!.seq, grandchild!.seq]);
        const [later] = await b.append([tx([grandchild!.seq])]);
        assert.deepEqual((await b.verify()).problems, [], 'appends after it are indexed as ever');
        b = await factory.reopen(b);
        assert.equal((await b.get(later!.transaction_id))?.state, 'pending');
        await assertLedger(b);
      });
    }

    it('claim blocks a pending transaction whose parent has failed, and never sends it', async () => {
      const [parent] = await b.append([tx()]);
      await b.claim(10, 1e9);
      await b.settle([{ seq: parent!.seq, outcome: 'rejected', error: err('constraint') }]);
      const [late, other] = await b.append([tx([parent!.seq]), tx()]);
      const claimed = await b.claim(10, 1e9);
      assert.deepEqual(claimed.map((t) => t.seq), [other!.seq]);
      assert.equal((await b.get(late!.transaction_id))?.state, 'blocked');
      await assertLedger(b);
    });

    it('claim with notAfterInFlight stops before the first transaction whose parent is still in flight', async () => {
      const [parent] = await b.append([tx()]);
      assert.equal((await b.claim(10, 1e9)).length, 1);
      const [free, child, after] = await b.append([tx(), tx([parent!.seq]), tx()]);
      // The early batch takes what comes before the child, and nothing after it: order is kept.
      const early = await b.claim(10, 1e9, { notAfterInFlight: true });
      assert.deepEqual(early.map((t) => t.seq), [free!.seq]);
      assert.equal((await b.get(child!.transaction_id))?.state, 'pending');
      // The same claim without the option (the parent's answer is in) takes the child and what follows.
      await b.settle([{ seq: parent!.seq, outcome: 'applied' }, { seq: free!.seq, outcome: 'applied' }]);
      const next = await b.claim(10, 1e9, { notAfterInFlight: true });
      assert.deepEqual(next.map((t) => t.seq), [child!.seq, after!.seq]);
      await assertLedger(b);
    });

    it('in one batch, a child rejected after its parent was rejected is blocked, not failed', async () => {
      const [parent] = await b.append([tx()]);
      const [child] = await b.append([tx([parent!.seq])]);
      const batch = await b.claim(10, 1e9);
      assert.equal(batch.length, 2);
      await b.settle([
        { seq: child!.seq, outcome: 'rejected', error: err('reference_not_found') },
        { seq: parent!.seq, outcome: 'rejected', error: err('validation_error') },
      ]);
      assert.equal((await b.get(parent!.transaction_id))?.state, 'failed');
      assert.equal((await b.get(child!.transaction_id))?.state, 'blocked');
      await assertLedger(b);
    });

    it('retry releases a failed transaction and then its blocked chain, in order', async () => {
      const [parent] = await b.append([tx()]);
      const [child] = await b.append([tx([parent!.seq])]);
      const [grandchild] = await b.append([tx([child!.seq])]);
      await b.claim(1, 1e9);
      await b.settle([{ seq: parent!.seq, outcome: 'rejected', error: err('constraint') }]);
      const { released } = await b.retry(parent!.transaction_id, 'operator');
      assert.deepEqual(released, [parent!.seq, child!.seq, grandchild!.seq]);
      const batch = await b.claim(10, 1e9);
      assert.deepEqual(batch.map((t) => t.seq), [parent!.seq, child!.seq, grandchild!.seq]);
      await b.settle(batch.map((t) => ({ seq: t.seq, outcome: 'applied' as const })));
      assert.equal((await b.stats()).applied_total, 3);
      assert.deepEqual(await b.retry(parent!.transaction_id, 'operator'), { released: [], held: [] }, 'retry of a synced one is a no-op');
      const audit = await b.audit(10);
      assert.ok(audit.some((a) => a.action === 'retry' && a.transaction_id === parent!.transaction_id && a.actor === 'operator'));
      await assertLedger(b);
    });

    it('retryAll releases every failed and blocked transaction', async () => {
      const [p1, p2] = await b.append([tx(), tx()]);
      const [c1] = await b.append([tx([p1!.seq])]);
      await b.claim(2, 1e9);
      await b.settle([
        { seq: p1!.seq, outcome: 'rejected', error: err('x') },
        { seq: p2!.seq, outcome: 'rejected', error: err('y') },
      ]);
      assert.equal((await b.get(c1!.transaction_id))?.state, 'blocked');
      assert.deepEqual(await b.retryAll('cli'), { released: [p1!.seq, p2!.seq, c1!.seq], held: [] });
      const s = await b.stats();
      assert.equal(s.pending, 3);
      assert.equal(s.failed + s.blocked, 0);
      await assertLedger(b);
    });

    it('discard keeps the transaction with an audit record; dependents stay blocked', async () => {
      const [parent] = await b.append([tx()]);
      const [child] = await b.append([tx([parent!.seq])]);
      await b.claim(1, 1e9);
      await b.settle([{ seq: parent!.seq, outcome: 'rejected', error: err('constraint') }]);
      assert.equal(await b.discard(child!.transaction_id + 'x', 'admin', 'typo'), false);
      assert.equal(await b.discard(parent!.transaction_id, 'admin', 'bad calibration run'), true);
      assert.equal(await b.discard(parent!.transaction_id, 'admin', 'again'), false, 'only failed or blocked');
      const gone = await b.get(parent!.transaction_id);
      assert.equal(gone?.state, 'discarded');
      assert.deepEqual(gone?.steps, parent!.steps, 'kept whole');
      assert.equal((await b.get(child!.transaction_id))?.state, 'blocked');
      assert.deepEqual(await b.claim(10, 1e9), []);
      const audit = await b.audit(10);
      assert.ok(audit.some((a) => a.action === 'discard' && a.reason === 'bad calibration run' && a.actor === 'admin'));
      const s = await b.stats();
      assert.equal(s.discarded_total, 1);
      assert.equal(s.discarded, 1);
      await assertLedger(b);
    });

    // Found by the fault-injection runs: retry-failed answered `released` for dependents of a discarded
    // transaction that the claim sent straight back to blocked, so its count overstated what it did.
    it('a retry leaves as it is what a parent would block again, and names the one to act on', async () => {
      const [parent, unrelated] = await b.append([tx(), tx()]);
      const [child, follower] = await b.append([tx([parent!.seq]), { ...tx([parent!.seq]), order_only: [parent!.seq] }]);
      const [grandchild, waitsOnUnrelated] = await b.append([tx([child!.seq]), tx([unrelated!.seq])]);
      await b.claim(2, 1e9);
      await b.settle([
        { seq: parent!.seq, outcome: 'rejected', error: err('constraint') },
        { seq: unrelated!.seq, outcome: 'rejected', error: err('constraint') },
      ]);
      const held = (t: typeof child, by: typeof parent, state: string) =>
        ({ seq: t!.seq, transaction_id: t!.transaction_id, waits_on: { seq: by!.seq, transaction_id: by!.transaction_id, state } });
      // While the parent is failed: retry that one; a retry of its grandchild names it too, through the child.
      assert.deepEqual(await b.retry(grandchild!.transaction_id, 'admin'), { released: [], held: [held(grandchild, parent, 'failed')] });
      assert.equal(await b.discard(parent!.transaction_id, 'admin', 'wrong obs unit'), true);
      assert.deepEqual((await b.claim(10, 1e9)).map((t) => t.seq), [follower!.seq], 'the follower went with the discard');
      await b.settle([{ seq: follower!.seq, outcome: 'applied' }]);

      assert.deepEqual(await b.retry(child!.transaction_id, 'admin'), { released: [], held: [held(child, parent, 'discarded')] });
      assert.deepEqual(await b.retry(grandchild!.transaction_id, 'admin'), { released: [], held: [held(grandchild, parent, 'discarded')] });
      assert.deepEqual(await b.retryAll('admin'), {
        released: [unrelated!.seq, waitsOnUnrelated!.seq],
        held: [held(child, parent, 'discarded'), held(grandchild, parent, 'discarded')],
      });
      for (const t of [child, grandchild]) assert.equal((await b.get(t!.transaction_id))?.state, 'blocked', 'left as it was');
      assert.deepEqual((await b.claim(10, 1e9)).map((t) => t.seq), [unrelated!.seq, waitsOnUnrelated!.seq], 'what it released is sent');
      assert.equal((await b.stats()).blocked, 2);
      assert.ok(!(await b.audit(10)).some((a) => a.action === 'retry' && a.transaction_id === child!.transaction_id), 'no audit record for a retry that did nothing');
      await assertLedger(b);
    });

    it('a parent it only follows (order_only) holds it while failed, and frees it and its chain once discarded', async () => {
      const [parent, other] = await b.append([tx(), tx()]);
      const follower = { ...tx([parent!.seq]), order_only: [parent!.seq] };
      const [f] = await b.append([follower]);
      const [needsFollower] = await b.append([tx([f!.seq])]);
      const [needsOther] = await b.append([{ ...tx([other!.seq, parent!.seq]), order_only: [parent!.seq] }]);
      const [needsParent] = await b.append([tx([parent!.seq])]);
      assert.deepEqual((await b.get(f!.transaction_id))?.order_only, [parent!.seq], 'kept');
      assert.equal((await b.get(needsFollower!.transaction_id))?.order_only, undefined, 'absent when none');
      await b.claim(2, 1e9);
      await b.settle([
        { seq: parent!.seq, outcome: 'rejected', error: err('constraint') },
        { seq: other!.seq, outcome: 'rejected', error: err('constraint') },
      ]);
      assert.deepEqual(await b.claim(10, 1e9), [], 'a failed parent holds followers too: order is kept');
      for (const t of [f, needsFollower, needsOther, needsParent]) assert.equal((await b.get(t!.transaction_id))?.state, 'blocked');

      assert.equal(await b.discard(parent!.transaction_id, 'admin', 'wrong'), true);
      assert.equal((await b.get(f!.transaction_id))?.state, 'pending', 'the follower is free');
      assert.equal((await b.get(needsFollower!.transaction_id))?.state, 'pending', 'and what waits on it');
      assert.equal((await b.get(needsParent!.transaction_id))?.state, 'blocked', 'one that needs the parent stays blocked');
      const batch = await b.claim(10, 1e9);
      assert.deepEqual(batch.map((t) => t.seq), [f!.seq, needsFollower!.seq], 'sent in order');
      assert.equal((await b.get(needsOther!.transaction_id))?.state, 'blocked', 'still waits on its other, failed, parent');

      // A follower appended after the discard, or retried, is not held by it.
      const [late] = await b.append([{ ...tx([parent!.seq]), order_only: [parent!.seq] }]);
      assert.deepEqual((await b.claim(10, 1e9)).map((t) => t.seq), [late!.seq]);
      assert.deepEqual(await b.retry(needsOther!.transaction_id, 'admin'), {
        released: [],
        held: [{ seq: needsOther!.seq, transaction_id: needsOther!.transaction_id, waits_on: { seq: other!.seq, transaction_id: other!.transaction_id, state: 'failed' } }],
      }, 'left blocked: a retry would only block it again behind the failed one');
      assert.equal((await b.get(needsOther!.transaction_id))?.state, 'blocked');
      assert.deepEqual(await b.claim(10, 1e9), []);
      assert.equal(await b.discard(other!.transaction_id, 'admin', 'wrong too'), true);
      assert.equal((await b.get(needsOther!.transaction_id))?.state, 'blocked', 'it needs that one: discarding it frees nothing');
      await assertLedger(b);
    });

    // Found in review (an upgrade): builds before 2026-11-26 made a write wait on the row's last writer, so a
    // file waited on the observation's finish, a preferences write on the one before. Such waits are still
    // in the buffers they left. Once central had refused that finish and it was discarded, the files stayed
    // blocked for good (a retry sent them straight back), though central would take them.
    it('a discarded parent that created no row holds back nothing that waits on it', async () => {
      const [creator] = await b.append([tx()]);
      await b.settle((await b.claim(1, 1e9)).map((t) => ({ seq: t.seq, outcome: 'applied' as const })));
      const obs = (creator!.steps[0] as { id: string }).id;
      const finish: NewTransaction = {
        ...tx(), endpoint: 'PUT /executed_obs_units/{id}/finish',
        steps: [{ step_id: 'finish', op: 'update', table: 'executed_obs_unit', id: obs, data: { status: 'bogus' } }],
      };
      const [update] = await b.append([finish]);
      const [file] = await b.append([tx([update!.seq], 'a file of the observation')]);
      const [next] = await b.append([tx([file!.seq])]);
      await b.claim(1, 1e9);
      await b.settle([{ seq: update!.seq, outcome: 'rejected', error: err('validation_error') }]);
      assert.deepEqual(await b.claim(10, 1e9), [], 'held while the update stands failed');
      assert.equal((await b.get(file!.transaction_id))?.state, 'blocked');

      assert.equal(await b.discard(update!.transaction_id, 'admin', 'central refuses it'), true);
      assert.equal((await b.get(file!.transaction_id))?.state, 'pending', 'free once it is discarded');
      assert.deepEqual((await b.claim(10, 1e9)).map((t) => t.seq), [file!.seq, next!.seq], 'with its chain, in order');
      // One such wait written after the discard (an old build's, replayed), or retried, is not held either.
      const [late] = await b.append([tx([update!.seq])]);
      assert.deepEqual((await b.claim(10, 1e9)).map((t) => t.seq), [late!.seq]);
      await assertLedger(b);
    });

    it('a buffer reopened keeps order_only', async () => {
      const [parent] = await b.append([tx()]);
      const [f] = await b.append([{ ...tx([parent!.seq]), order_only: [parent!.seq] }]);
      b = await factory.reopen(b);
      assert.deepEqual((await b.get(f!.transaction_id))?.order_only, [parent!.seq]);
    });

    it('skipTo raises the seq counter, never lowers it, keeps it across a restart, and leaves an audit record', async () => {
      await b.append([tx(), tx()]);
      assert.equal(await b.skipTo(1, 'opsdb', 'not beyond'), false, 'below the counter: nothing changes');
      assert.equal(await b.skipTo(2, 'opsdb', 'not beyond'), false, 'at the counter: nothing changes');
      assert.equal(await b.skipTo(10, 'opsdb', 'seqs 3-10 lost'), true);
      assert.equal((await b.stats()).last_seq, 10);
      b = await factory.reopen(b);
      const [next] = await b.append([tx()]);
      assert.equal(next!.seq, 11, 'the skipped seqs are never given out');
      const audit = await b.audit(10);
      assert.ok(audit.some((a) => a.action === 'seq_gap' && a.seq === 10 && a.reason === 'seqs 3-10 lost' && a.actor === 'opsdb'), JSON.stringify(audit));
      assert.equal(audit.filter((a) => a.action === 'seq_gap').length, 1);
      const s = await b.stats();
      assert.equal(s.accepted_total, 3, 'nothing was accepted by skipping');
      await assertLedger(b);
      assert.equal((await b.verify()).ok, true);
    });

    it('releaseInFlight returns claimed work to pending, in order, after a restart', async () => {
      const all = await b.append([tx(), tx(), tx()]);
      await b.claim(2, 1e9);
      b = await factory.reopen(b);
      assert.equal((await b.stats()).in_flight, 2, 'in_flight survives a restart');
      assert.equal(await b.releaseInFlight(), 2);
      const batch = await b.claim(10, 1e9);
      assert.deepEqual(batch.map((t) => t.seq), all.map((t) => t.seq));
      await assertLedger(b);
    });

    it('states() answers for held seqs only; list() pages by state and seq', async () => {
      const all = await b.append([tx(), tx(), tx(), tx()]);
      await b.claim(1, 1e9);
      await b.settle([{ seq: all[0]!.seq, outcome: 'applied' }]);
      await b.compact(all[0]!.seq);
      const st = await b.states(all.map((t) => t.seq));
      assert.equal(st.has(all[0]!.seq), false);
      assert.equal(st.get(all[1]!.seq), 'pending');
      const page1 = await b.list({ state: 'pending', limit: 2 });
      assert.deepEqual(page1.map((t) => t.seq), [all[1]!.seq, all[2]!.seq]);
      const page2 = await b.list({ state: 'pending', after_seq: page1.at(-1)!.seq, limit: 2 });
      assert.deepEqual(page2.map((t) => t.seq), [all[3]!.seq]);
      assert.equal((await b.list({ limit: 10 })).length, 3);
    });

    it('compact drops only synced transactions up to the given seq', async () => {
      const all = await b.append([tx(), tx(), tx()]);
      await b.claim(10, 1e9);
      await b.settle([
        { seq: all[0]!.seq, outcome: 'applied' },
        { seq: all[1]!.seq, outcome: 'retry', error: err('timeout') },
        { seq: all[2]!.seq, outcome: 'applied' },
      ]);
      assert.equal(await b.compact(all[1]!.seq), 1);
      assert.equal((await b.get(all[1]!.transaction_id))?.state, 'pending');
      assert.equal((await b.get(all[2]!.transaction_id))?.state, 'synced');
      const s = await b.stats();
      assert.equal(s.synced, 1);
      assert.equal(s.held_bytes, all[1]!.bytes + all[2]!.bytes);
      await assertLedger(b);
    });

    it('keeps a receipt of each compacted transaction: its record without the steps', async () => {
      const all = await b.append([tx(), tx()]);
      await b.claim(10, 1e9);
      await b.settle([
        { seq: all[0]!.seq, outcome: 'retry', error: err('timeout') },
        { seq: all[1]!.seq, outcome: 'retry', error: err('timeout') },
      ]);
      await b.claim(10, 1e9);
      const central_result = { result: 'applied', position: 42, at: new Date().toISOString() };
      await b.settle([{ seq: all[0]!.seq, outcome: 'applied', central_result }, { seq: all[1]!.seq, outcome: 'retry', error: err('timeout') }]);
      assert.equal(await b.receipt(all[0]!.transaction_id), null, 'no receipt while the transaction is held');
      const held = (await b.get(all[0]!.transaction_id))!;

      const before = Date.now();
      assert.equal(await b.compact(all[1]!.seq), 1);
      assert.equal(await b.get(all[0]!.transaction_id), null);
      const r = (await b.receipt(all[0]!.transaction_id))!;
      assert.ok(r, 'a receipt after compaction');
      const { steps: _, ...expected } = held;
      assert.deepEqual({ ...r, compacted_at: undefined }, { ...expected, compacted_at: undefined });
      assert.equal(r.state, 'synced');
      assert.equal(r.attempts, 2, 'sent twice');
      assert.deepEqual(r.central_result, central_result);
      assert.ok(!('steps' in r), 'the steps are gone');
      assert.ok(Date.parse(r.compacted_at) >= before - 1000 && Date.parse(r.compacted_at) <= Date.now() + 1000);
      assert.equal(await b.receipt(all[1]!.transaction_id), null, 'not compacted: still held, no receipt');
      assert.equal(await b.receipt(randomUUID()), null);

      b = await factory.reopen(b);
      assert.deepEqual(await b.receipt(all[0]!.transaction_id), r, 'receipts survive a restart');
      await assertLedger(b);
    });

    it('replayable: synced transactions whole, in seq order, held or compacted with their steps kept; kept steps expire', async () => {
      const all = await b.append([tx(), tx(), tx(), tx(), tx()]);
      const sent = await b.claim(10, 1e9);
      await b.settle(sent.map((t) => (t.seq === all[3]!.seq
        ? { seq: t.seq, outcome: 'rejected' as const, error: err('constraint') }
        : { seq: t.seq, outcome: 'applied' as const })));
      const whole = (t: (typeof all)[number]) =>
        ({ transaction_id: t.transaction_id, site: t.site, seq: t.seq, created_at: t.created_at, endpoint: t.endpoint, steps: t.steps });
      assert.equal(await b.compact(all[0]!.seq), 1, 'compacted without keeping its steps');
      assert.equal(await b.compact(all[2]!.seq, 3600), 2, 'compacted, its steps kept an hour');
      assert.deepEqual(await b.replayable(0, 10), [whole(all[1]!), whole(all[2]!), whole(all[4]!)],
        'kept after compaction, then still held; not the failed one, nor one compacted without keeping');
      assert.deepEqual((await b.replayable(all[1]!.seq, 1)).map((t) => t.seq), [all[2]!.seq], 'after a seq, at most limit');
      assert.deepEqual((await b.replayable(all[2]!.seq, 10)).map((t) => t.seq), [all[4]!.seq]);
      assert.ok(!('steps' in (await b.receipt(all[1]!.transaction_id))!), 'the receipt itself is as before');
      b = await factory.reopen(b);
      assert.deepEqual((await b.replayable(0, 10)).map((t) => t.seq), [all[1]!.seq, all[2]!.seq, all[4]!.seq], 'kept across a restart');

      await b.compact(all[4]!.seq, 1);
      await new Promise((r) => setTimeout(r, 2100));
      await b.compact(all[4]!.seq, 1);
      assert.deepEqual(await b.replayable(all[2]!.seq, 10), [], 'kept steps older than keepSeconds are gone');
      assert.equal((await b.receipt(all[4]!.transaction_id))?.seq, all[4]!.seq, 'the receipts stay');
      await assertLedger(b);
    });

    it('failSynced: synced transactions central refused when sent again go back to the dead-letter queue, whole', async () => {
      const applied = (t: { seq: number }) => ({ seq: t.seq, outcome: 'applied' as const, central_result: { result: 'applied', position: 7 } });
      const refused = (seq: number) => ({ seq, error: err('not_found') });
      const [a0, a1, a2] = await b.append([tx(), tx(), tx()]);
      const [a3] = await b.append([tx([a1!.seq])]);
      await b.settle((await b.claim(10, 1e9)).map(applied));
      const [a5] = await b.append([tx([a1!.seq])]); // pending, waits on a1
      const [a6] = await b.append([tx()]); // pending, unrelated
      const [a7] = await b.append([tx([a2!.seq])]); // pending, waits on a2 (which stays held)
      assert.equal(await b.compact(a1!.seq, 3600), 2, 'a0 and a1 compacted, their steps kept (a1 leaves the dependency index)');
      const before = await b.stats();
      assert.deepEqual((await b.get(a2!.transaction_id))?.central_result, { result: 'applied', position: 7 });
      const moved = await b.failSynced([refused(a3!.seq), refused(a1!.seq), refused(a2!.seq), refused(a6!.seq), refused(a0!.seq)]);
      assert.deepEqual(moved, [a0!.seq, a1!.seq, a2!.seq, a3!.seq], 'the held and the kept ones; not the pending one');
      const got1 = await b.get(a1!.transaction_id);
      assert.equal(got1?.state, 'failed', 'compacted, kept whole: failed again');
      assert.deepEqual(got1?.steps, a1!.steps, 'with its steps');
      assert.equal(got1?.last_error?.code, 'not_found');
      assert.equal(got1?.central_result, null, "central's answer then no longer stands");
      assert.equal((await b.get(a2!.transaction_id))?.central_result, null);
      assert.equal((await b.get(a2!.transaction_id))?.state, 'failed', 'held and synced: failed');
      assert.equal((await b.get(a0!.transaction_id))?.state, 'failed');
      assert.equal((await b.get(a3!.transaction_id))?.state, 'blocked', 'its parent was refused in the same call: blocked, as settle does');
      assert.equal(await b.receipt(a1!.transaction_id), null, 'the receipt went: the transaction is held again');
      assert.equal((await b.get(a5!.transaction_id))?.state, 'blocked', 'a pending one that waits on a refused one is blocked');
      assert.equal((await b.get(a7!.transaction_id))?.state, 'blocked', 'also one that waits on a refused one still held');
      assert.equal((await b.get(a6!.transaction_id))?.state, 'pending', 'an unrelated pending one is not');
      const after = await b.stats();
      assert.equal(after.applied_total, before.applied_total - 4, 'four are applied no more');
      assert.equal(after.failed, 3);
      assert.deepEqual((await b.replayable(0, 10)).map((t) => t.seq).filter((s) => s <= a3!.seq), [], 'nothing of them is replayable now');
      await assertLedger(b);
      assert.deepEqual(await b.failSynced([refused(a1!.seq)]), [], 'a second time: no longer synced, left as it is');

      // The operator's retry of the parent takes its dependents with it: the dependency index names them again.
      const r = await b.retry(a1!.transaction_id, 'op');
      assert.deepEqual(r.released, [a1!.seq, a3!.seq, a5!.seq]);
      assert.deepEqual((await b.retry(a2!.transaction_id, 'op')).released, [a2!.seq, a7!.seq]);
      await b.settle((await b.claim(10, 1e9)).map(applied));
      assert.equal((await b.get(a5!.transaction_id))?.state, 'synced');
      await assertLedger(b);
      b = await factory.reopen(b);
      assert.equal((await b.get(a0!.transaction_id))?.state, 'failed', 'kept across a restart');
      await assertLedger(b);
    });

    it('failSynced after an upgrade from a build that dropped compacted parents from the index finds their dependents', async (t) => {
      if (!factory.reopenAfterBuildDroppingCompactedEdges) return t.skip('this backend has no such past');
      const [p] = await b.append([tx()]);
      await b.settle((await b.claim(1, 1e9)).map((x) => ({ seq: x.seq, outcome: 'applied' as const })));
      const [c] = await b.append([tx([p!.seq])]); // waits on p
      assert.equal(await b.compact(p!.seq, 3600), 1);
      b = await factory.reopenAfterBuildDroppingCompactedEdges(b);
      const [later] = await b.append([tx()]);
      assert.deepEqual(await b.failSynced([{ seq: p!.seq, error: err('not_found') }]), [p!.seq]);
      assert.equal((await b.get(c!.transaction_id))?.state, 'blocked', 'its dependent, found by reading the backlog');
      assert.equal((await b.get(later!.transaction_id))?.state, 'pending');
      await assertLedger(b);
      assert.deepEqual((await b.retry(p!.transaction_id, 'op')).released, [p!.seq, c!.seq], 'and indexed again: a retry takes it along');
    });

    it('failSynced blocks a child behind a parent it put back in an earlier call (another replay batch)', async () => {
      const [p] = await b.append([tx()]);
      const [c] = await b.append([tx([p!.seq])]);
      await b.settle((await b.claim(2, 1e9)).map((x) => ({ seq: x.seq, outcome: 'applied' as const })));
      assert.equal(await b.compact(p!.seq, 3600), 1, 'the parent compacted, kept whole; the child still held');
      assert.deepEqual(await b.failSynced([{ seq: p!.seq, error: err('not_found') }]), [p!.seq]);
      assert.deepEqual(await b.failSynced([{ seq: c!.seq, error: err('not_found') }]), [c!.seq]);
      assert.equal((await b.get(c!.transaction_id))?.state, 'blocked');
      await assertLedger(b);
      assert.deepEqual((await b.retry(p!.transaction_id, 'op')).released, [p!.seq, c!.seq], 'a retry of the parent takes it along');
    });

    it('failSynced puts back a transaction kept whole with the parents it only follows (order_only)', async () => {
      const [p] = await b.append([tx()]);
      const [c] = await b.append([{ ...tx([p!.seq]), order_only: [p!.seq] }]);
      await b.settle((await b.claim(2, 1e9)).map((x) => ({ seq: x.seq, outcome: 'applied' as const })));
      assert.equal(await b.compact(c!.seq, 3600), 2);
      assert.deepEqual(await b.failSynced([{ seq: c!.seq, error: err('not_found') }]), [c!.seq]);
      assert.deepEqual((await b.get(c!.transaction_id))?.order_only, [p!.seq]);
      await assertLedger(b);
    });

    it('failSynced leaves a transaction compacted without its steps as it is', async () => {
      const [a] = await b.append([tx()]);
      await b.settle((await b.claim(1, 1e9)).map((t) => ({ seq: t.seq, outcome: 'applied' as const })));
      assert.equal(await b.compact(a!.seq), 1);
      assert.deepEqual(await b.failSynced([{ seq: a!.seq, error: err('not_found') }]), []);
      assert.equal((await b.receipt(a!.transaction_id))?.seq, a!.seq, 'its receipt stays');
      await assertLedger(b);
    });

    it('compacts any number at once (more than one Redis script call takes)', async () => {
      const all = await b.append(Array.from({ length: 2500 }, () => tx()));
      const claimed = await b.claim(5000, 1e12);
      assert.equal(claimed.length, 2500);
      await b.settle(claimed.map((t) => ({ seq: t.seq, outcome: 'applied' as const })));
      assert.equal(await b.compact(all.at(-1)!.seq), 2500);
      const s = await b.stats();
      assert.equal(s.synced, 0);
      assert.equal(s.held_bytes, 0);
      assert.equal((await b.receipt(all[1234]!.transaction_id))?.seq, all[1234]!.seq);
      await assertLedger(b);
    });

    it('stats report the oldest pending creation time', async () => {
      assert.equal((await b.stats()).oldest_pending_created_at, null);
      const first = tx();
      first.created_at = '2026-01-01T00:00:00.000Z';
      await b.append([first, tx()]);
      assert.equal((await b.stats()).oldest_pending_created_at, '2026-01-01T00:00:00.000Z');
    });

    it('keeps the ledger over a random mix of operations', async () => {
      let rnd = 42;
      const rand = (n: number) => {
        rnd = (rnd * 1103515245 + 12345) % 2 ** 31;
        return Math.floor((rnd / 2 ** 31) * n); // high bits: an LCG's low bits cycle fast
      };
      const held: number[] = [];
      let putBack = 0;
      for (let round = 0; round < 40; round++) {
        const deps = held.length && rand(3) === 0 ? [held[rand(held.length)]!] : [];
        const added = await b.append([tx(deps), tx()]);
        held.push(...added.map((t) => t.seq));
        const batch = await b.claim(1 + rand(4), 1e9);
        const kinds = ['applied', 'duplicate', 'rejected', 'retry'] as const;
        await b.settle(
          batch.map((t) => {
            const k = kinds[rand(4)]!;
            return k === 'applied' || k === 'duplicate' ? { seq: t.seq, outcome: k } : { seq: t.seq, outcome: k, error: err(k) };
          }),
        );
        if (rand(5) === 0) await b.retryAll('fuzz');
        if (rand(7) === 0) {
          const failed = await b.list({ state: 'failed', limit: 1 });
          if (failed[0]) await b.discard(failed[0].transaction_id, 'fuzz', 'random');
        }
        if (rand(6) === 0) await b.compact(held[rand(held.length)]!, rand(2) * 3600);
        if (rand(6) === 0) {
          // Central went back and refuses some of what it had applied: held or compacted, whole or not.
          const some = Array.from({ length: 1 + rand(3) }, () => ({ seq: held[rand(held.length)]!, error: err('not_found') }));
          putBack += (await b.failSynced(some)).length;
        }
        await assertLedger(b);
      }
      assert.ok(putBack > 0, 'the mix put some synced transactions back');
    });
  });
}
