/**
 * The SQLite buffer run in its own thread (the daemon's default). Each
 * method is sent to the storage thread (thread-worker.ts) and answered in the
 * order sent, with the same results and error classes as SqliteBuffer in the
 * caller's thread; only `states()` reads through a read-only connection here. `commitGroup` appends a group of writes and applies it to
 * the local store in that thread: the commit, the fsync and the row inserts
 * then no longer stop the event loop that serves HTTP.
 *
 * If the thread dies, every call still waiting fails with OutcomeUnknownError
 * (it may have taken effect) and every later call with BufferUnavailableError
 * (503 to clients; nothing is acknowledged that was not committed), and
 * `onFailure` tells the daemon.
 */
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import Database from 'better-sqlite3';
import {
  BufferUnavailableError,
  OutcomeUnknownError,
  stepsJson,
  type AuditRecord,
  type BufferStats,
  type BufferedTransaction,
  type ListQuery,
  type NewTransaction,
  type Outcome,
  type ReplayableTransaction,
  type RetryOutcome,
  type TransactionBuffer,
  type TransactionReceipt,
  type TxError,
  type TxState,
  type VerifyReport,
} from './buffer.js';
import { STATE_OF_SQL, readStates } from './sqlite.js';
import { fromWire, type CommitReply, type Reply, type WireError, type WireTransaction } from './thread-protocol.js';

/** Starts the worker module with tsx's loader when this code itself runs from TypeScript sources. */
const BOOT = `const { workerData } = require('node:worker_threads');
(async () => {
  if (workerData.tsx) (await import(workerData.tsx)).register();
  await import(workerData.entry);
})();`;

const YOUNG_GENERATION_MB = 4;

export interface GroupCommit {
  stored: BufferedTransaction[];
  localError: string | null;
  localRecovered: string | null;
}

export class ThreadedSqliteBuffer implements TransactionBuffer {
  readonly backend = 'sqlite' as const;
  private next = 1;
  private readonly waiting = new Map<number, { resolve(v: unknown): void; reject(e: unknown): void }>();
  private failure: Error | null = null;
  private closing = false;

  private exited = false;

  private constructor(
    readonly path: string,
    private readonly worker: Worker,
    /**
     * A read-only connection in the caller's thread for states(): a write
     * checks its parents' states on arrival, and a trip to the storage thread
     * (queued behind a commit) would let later writes overtake it.
     */
    private readonly reader: Database.Database,
    private readonly stateOf: Database.Statement,
    /** The storage thread's answers arrive here (its own channel, so they can be taken without waiting: see poll). */
    private readonly replies: MessagePort,
  ) {
    worker.once('exit', () => (this.exited = true));
  }

  /**
   * Opens the buffer at `bufferPath` and a connection to the local store at
   * `localPath` in a new thread. Rejects (BufferUnavailableError) when the
   * buffer cannot be opened, like `new SqliteBuffer`.
   */
  static async open(bufferPath: string, localPath: string, onFailure: (err: Error) => void = () => {}): Promise<ThreadedSqliteBuffer> {
    const fromSource = import.meta.url.endsWith('.ts');
    const { port1: replies, port2: repliesForThread } = new MessageChannel();
    const worker = new Worker(BOOT, {
      eval: true,
      transferList: [repliesForThread],
      // The thread allocates little and briefly; V8's default young generation would add ≈ 40 MB of RSS.
      resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
      workerData: {
        bufferPath,
        localPath,
        replies: repliesForThread,
        entry: new URL(fromSource ? './thread-worker.ts' : './thread-worker.js', import.meta.url).href,
        tsx: fromSource ? import.meta.resolve('tsx/esm/api') : null,
      },
    });
    let onError = (_err: Error) => {};
    let onExit = (_code: number) => {};
    const first = await new Promise<{ ready: boolean; error?: WireError }>((resolve, reject) => {
      onError = reject;
      onExit = (code) => reject(new BufferUnavailableError(`the buffer thread exited (code ${code}) before opening ${bufferPath}`));
      worker.once('message', resolve);
      worker.once('error', onError);
      worker.once('exit', onExit);
    }).catch((err: Error) => ({ ready: false, error: { kind: 'unavailable' as const, message: err.message } }));
    // Only these two: a Worker keeps listeners of its own (they ref and unref its port).
    worker.off('error', onError);
    worker.off('exit', onExit);
    if (!first.ready) {
      replies.close();
      await worker.terminate();
      const err = fromWire(first.error!);
      throw err instanceof BufferUnavailableError ? err : new BufferUnavailableError(`cannot open the SQLite buffer at ${bufferPath}: ${err.message}`, { cause: err });
    }
    let reader: Database.Database | undefined;
    let stateOf: Database.Statement;
    try {
      // Reads in WAL mode do not wait on the writer; a short timeout keeps any odd lock from stalling the HTTP thread.
      reader = new Database(bufferPath, { readonly: true, fileMustExist: true, timeout: 100 });
      stateOf = reader.prepare(STATE_OF_SQL);
    } catch (err) {
      reader?.close();
      replies.close();
      await worker.terminate();
      throw new BufferUnavailableError(`cannot open the SQLite buffer at ${bufferPath} for reading: ${(err as Error).message}`, { cause: err });
    }
    const b = new ThreadedSqliteBuffer(bufferPath, worker, reader, stateOf, replies);
    replies.on('message', (m: Reply) => b.answer(m));
    replies.on('messageerror', (err) => b.fail(err, onFailure));
    // An answer that arrives unreadable cannot be matched to its call: fail them all rather than leave one
    // waiting forever. (Not terminate(): stopping a thread inside SQLite's native code aborts the process.)
    worker.on('messageerror', (err) => b.fail(err, onFailure));
    worker.on('error', (err) => b.fail(err, onFailure));
    worker.on('exit', (code) => b.fail(new Error(`exited with code ${code}`), onFailure));
    return b;
  }

  /**
   * Takes the storage thread's answers that have arrived, now, instead of
   * when the event loop next looks: under load it is busy reading requests,
   * and a finished commit would wait behind them while the storage thread
   * idles. The group committer calls this as each write comes in.
   */
  poll(): void {
    if (!this.failure) this.takeReplies();
  }

  /** Answers every call whose reply is waiting on the channel. */
  private takeReplies(): void {
    try {
      for (let m = receiveMessageOnPort(this.replies); m; m = receiveMessageOnPort(this.replies)) this.answer(m.message as Reply);
    } catch {
      // The channel is closed: nothing is waiting on it.
    }
  }

  private answer(m: Reply): void {
    const w = this.waiting.get(m.id);
    if (!w) return;
    this.waiting.delete(m.id);
    if (m.ok) w.resolve(m.value);
    else w.reject(fromWire(m.error));
  }

  private fail(cause: Error, onFailure: (err: Error) => void): void {
    if (this.failure) return;
    // Node tells of a thread's exit (or error) before it delivers what the thread sent on a channel of
    // one's own: a call that finished just before the thread stopped has its answer waiting there, and
    // must get it, not "may or may not have taken effect".
    this.takeReplies();
    this.failure = new BufferUnavailableError(
      this.closing ? 'the buffer is closed' : `the buffer thread stopped (${cause.message}); nothing more can be stored until the daemon restarts`,
      { cause },
    );
    // Calls the thread had received may have taken effect before it stopped: their outcome is unknown.
    const unknown = new OutcomeUnknownError(`the buffer thread stopped (${cause.message}) while carrying out this call; it may or may not have taken effect`, { cause });
    for (const w of this.waiting.values()) w.reject(unknown);
    this.waiting.clear();
    if (!this.closing) onFailure(this.failure);
  }

  private call<T>(method: string, ...args: unknown[]): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<T>((resolve, reject) => {
      const id = this.next++;
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      try {
        this.worker.postMessage({ id, method, args });
      } catch (err) {
        // Not sent (a value that cannot be cloned): nothing happened.
        this.waiting.delete(id);
        reject(err);
      }
    });
  }

  /**
   * Appends `txs` (one commit) and applies them to the local store, both in
   * the storage thread. The writes are durable when this resolves; a
   * `localError` says the local view could not take them yet (it catches up
   * from the buffer with the next group or at start).
   */
  async commitGroup(txs: NewTransaction[]): Promise<GroupCommit> {
    const wire: WireTransaction[] = txs.map((t) => ({
      transaction_id: t.transaction_id, site: t.site, created_at: t.created_at, endpoint: t.endpoint, depends_on: t.depends_on,
      ...(t.order_only?.length ? { order_only: t.order_only } : {}), steps_json: stepsJson(t.steps),
    }));
    const reply = await this.call<CommitReply>('commitGroup', wire);
    const stored = txs.map((t, i): BufferedTransaction => {
      const s = reply.stored[i]!;
      return { ...t, seq: s.seq, state: 'pending', attempts: 0, last_error: null, bytes: s.bytes, updated_at: s.updated_at, central_result: null };
    });
    return { stored, localError: reply.localError, localRecovered: reply.localRecovered };
  }

  /** The buffer alone, as SqliteBuffer.append: the local store is left to the caller. */
  append(txs: NewTransaction[]): Promise<BufferedTransaction[]> {
    return this.call('append', txs);
  }

  claim(maxCount: number, maxBytes: number, opts?: { notAfterInFlight?: boolean }): Promise<BufferedTransaction[]> {
    return this.call('claim', maxCount, maxBytes, opts);
  }
  settle(outcomes: Outcome[]): Promise<void> {
    return this.call('settle', outcomes);
  }
  releaseInFlight(): Promise<number> {
    return this.call('releaseInFlight');
  }
  retry(transactionId: string, actor: string): Promise<RetryOutcome> {
    return this.call('retry', transactionId, actor);
  }
  retryAll(actor: string): Promise<RetryOutcome> {
    return this.call('retryAll', actor);
  }
  discard(transactionId: string, actor: string, reason: string): Promise<boolean> {
    return this.call('discard', transactionId, actor, reason);
  }
  skipTo(seq: number, actor: string, reason: string): Promise<boolean> {
    return this.call('skipTo', seq, actor, reason);
  }
  get(transactionId: string): Promise<BufferedTransaction | null> {
    return this.call('get', transactionId);
  }
  /** Brings the storage thread's local-store connection up to the buffer (after a failed apply). Returns how many it applied. */
  catchUpLocal(): Promise<number> {
    return this.call('catchUpLocal');
  }
  receipt(transactionId: string): Promise<TransactionReceipt | null> {
    return this.call('receipt', transactionId);
  }
  list(q: ListQuery): Promise<BufferedTransaction[]> {
    return this.call('list', q);
  }
  async states(seqs: number[]): Promise<Map<number, TxState>> {
    if (!this.reader.open) throw new BufferUnavailableError('the buffer is closed');
    return readStates(this.stateOf, seqs);
  }
  audit(limit: number): Promise<AuditRecord[]> {
    return this.call('audit', limit);
  }
  stats(): Promise<BufferStats> {
    return this.call('stats');
  }
  compact(upToSeq: number, keepSeconds?: number): Promise<number> {
    return this.call('compact', upToSeq, keepSeconds);
  }
  replayable(afterSeq: number, limit: number): Promise<ReplayableTransaction[]> {
    return this.call('replayable', afterSeq, limit);
  }
  failSynced(refusals: { seq: number; error: TxError }[]): Promise<number[]> {
    return this.call('failSynced', refusals);
  }
  reusableBytes(): Promise<number> {
    return this.call('reusableBytes');
  }
  /** Both files the storage thread writes: the buffer and the local store. */
  reclaim(): Promise<void> {
    return this.call('reclaim');
  }
  verify(): Promise<VerifyReport> {
    return this.call('verify');
  }

  async close(): Promise<void> {
    if (!this.failure) {
      this.closing = true;
      await this.call('close').catch(() => {});
    } else if (!this.exited) {
      // Failed but still running (an unreadable answer): ask it to close its files and wait a little, rather
      // than terminate() it in the middle of SQLite's native code, which aborts the process.
      try {
        this.worker.postMessage({ id: 0, method: 'close', args: [] });
      } catch {
        // Gone in the meantime.
      }
      await new Promise<void>((resolve) => {
        if (this.exited) return resolve();
        const timer = setTimeout(resolve, 5000);
        this.worker.once('exit', () => (clearTimeout(timer), resolve()));
      });
    }
    await this.worker.terminate();
    this.replies.close();
    if (this.reader.open) this.reader.close();
  }
}
