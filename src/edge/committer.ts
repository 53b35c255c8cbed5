/**
 * Group commit: writes that arrive while the event loop is busy are made
 * durable together, in one buffer append (one fsync), and each is answered
 * only after that commit. Groups are committed one after another, so seqs
 * follow arrival order and the local store applies them in that order.
 */
import { statfs } from 'node:fs/promises';
import type { BufferedTransaction, NewTransaction, TransactionBuffer } from './buffer/buffer.js';
import { BufferBehindError, BufferNotDurableError, OutcomeUnknownError, transactionBytes } from './buffer/buffer.js';
import { ThreadedSqliteBuffer } from './buffer/thread.js';
import { applyOrCatchUp, catchUp, type LocalApply, type LocalStore } from './local-store.js';
import type { Logger } from '../lib/logger.js';
import { InsufficientStorageError, UnavailableError } from '../lib/errors.js';

const DISK_CHECK_MS = 1000;
/** How often the buffer's held bytes are read again while every write fits (see GroupCommitter.held). */
const HELD_CHECK_MS = 1000;
/** Closer than this to MIN_FREE_DISK_BYTES, free space is asked for at every group, not once a second. */
const DISK_NEAR_BYTES = 64 * 1024 * 1024;
/** Below MIN_FREE_DISK_BYTES, the WALs are cut back (a truncating checkpoint) at most this often. */
const RECLAIM_MS = 5000;
/**
 * What a write costs on disk, as a multiple of its transaction's bytes, until the next look at the
 * disk: the buffer row, its copy in the WAL, and the local store's rows.
 */
const DISK_COST_FACTOR = 3;
/** What commit() returns for a group whose writers it has already answered (refused, failed, or found stored). */
const ANSWERED = (): void => {};
/** Retrying the local store's catch-up after it failed: first after 1 s, doubling up to 30 s. */
const LOCAL_RETRY_MS = { first: 1000, max: 30_000 };

interface Item {
  tx: NewTransaction;
  resolve(t: BufferedTransaction): void;
  reject(err: unknown): void;
}

export interface CommitLimits {
  /** Most writes per commit. */
  groupCommitMax: number;
  bufferMaxBytes: number;
  minFreeDiskBytes: number;
  dataDir: string;
}

/** The buffer's storage is out of space: SQLite's disk full, or Redis refusing writes for maxmemory. */
function storageFull(err: unknown): boolean {
  for (let e = err as { code?: unknown; message?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (e.code === 'SQLITE_FULL' || (typeof e.message === 'string' && e.message.startsWith('OOM '))) return true;
  }
  return false;
}

export class GroupCommitter {
  private queue: Item[] = [];
  private running: Promise<void> | null = null;
  /** The last look at the disk (`at`: performance.now(), monotonic; none yet at start). */
  private disk = { at: Number.NEGATIVE_INFINITY, free: Number.POSITIVE_INFINITY };
  /**
   * The local store's catch-up after a failed apply: a timer waiting, or a
   * catch-up running (`again`: another failure came in meanwhile, so one more
   * pass follows). Nothing is scheduled once closed.
   */
  private localRetry = { timer: null as NodeJS.Timeout | null, running: false, again: false, delayMs: LOCAL_RETRY_MS.first, closed: false };
  /** Why writes answered 201 are not readable here yet (the local store did not take them), or null. */
  private behind: string | null = null;
  /** Set while appends fail: what was logged, and when (the same failure is logged once a minute, not per group). */
  private failing: { message: string; at: number; full: boolean } | null = null;
  /**
   * Bytes the buffer holds, as last read plus what was appended since. Only
   * appends make it grow, so it is never below the truth; it is read again
   * before a write would be refused for it, and once a second.
   */
  private held = { bytes: 0, at: Number.NEGATIVE_INFINITY };
  /** Sizes of the groups committed, for benchmarks and logs. */
  readonly groups = { count: 0, transactions: 0 };

  constructor(
    private readonly buffer: TransactionBuffer,
    private readonly local: LocalStore,
    private readonly limits: CommitLimits,
    private readonly log: Logger,
    /** Called after each durable commit (the sync engine wakes up). */
    private readonly onCommit: () => void = () => {},
    /**
     * An append found the buffer behind the seqs it had given out (a Redis
     * that lost its data while the daemon ran): records the loss and raises
     * the buffer's counter, after which the append is tried once more.
     */
    private readonly onBehind: (err: BufferBehindError) => Promise<void> = async (err) => {
      throw err;
    },
  ) {}

  submit(tx: NewTransaction): Promise<BufferedTransaction> {
    if (this.buffer instanceof ThreadedSqliteBuffer) this.buffer.poll();
    return new Promise((resolve, reject) => {
      this.queue.push({ tx, resolve, reject });
      this.running ??= this.run();
    });
  }

  /** Resolves when everything submitted so far is committed (a group's writers may be answered a moment later: see run). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /**
   * Commits the queue group after group. A group's writers are answered only
   * once the next group is on its way to storage: answering takes the event
   * loop about a millisecond for a large group, and the storage would
   * otherwise sit idle through it.
   */
  private async run(): Promise<void> {
    // Let every request already readable on a socket join the first group.
    await new Promise<void>((r) => setImmediate(r));
    let answer: () => void = ANSWERED;
    try {
      while (this.queue.length > 0) {
        const next = this.commit(this.queue.splice(0, this.limits.groupCommitMax));
        // After the microtasks that send the next group to storage have run.
        setImmediate(answer);
        answer = await next;
      }
    } finally {
      this.running = null;
      answer();
    }
  }

  /**
   * Free bytes under DATA_DIR: asked of the file system once a second, or at
   * every call when near MIN_FREE_DISK_BYTES; in between, what was accepted
   * since is taken off the last figure (see spend).
   */
  async freeDisk(): Promise<number> {
    const now = performance.now();
    if (now - this.disk.at > DISK_CHECK_MS || this.disk.free < this.limits.minFreeDiskBytes + DISK_NEAR_BYTES) {
      const look = async () => {
        const s = await statfs(this.limits.dataDir).catch(() => null);
        return s ? s.bavail * s.bsize : Number.POSITIVE_INFINITY;
      };
      let free = await look();
      // Below the watermark: the WALs give back what they hold beyond the data (at most every RECLAIM_MS).
      if (free < this.limits.minFreeDiskBytes && this.buffer.reclaim && now - this.reclaimedAt > RECLAIM_MS) {
        this.reclaimedAt = now;
        await this.buffer.reclaim().catch(() => {});
        free = await look();
      }
      // Near the watermark, the room compaction left inside the buffer's file counts too (writes take it
      // first), up to half the watermark: it holds buffer rows only, and the local store's rows still take
      // the disk, so the file system keeps at least half of MIN_FREE_DISK_BYTES whatever the buffer reuses.
      if (free < this.limits.minFreeDiskBytes + DISK_NEAR_BYTES && this.buffer.reusableBytes) {
        free += Math.min(await this.buffer.reusableBytes().catch(() => 0), Math.floor(this.limits.minFreeDiskBytes / 2));
      }
      this.disk = { at: now, free };
    }
    return this.disk.free;
  }

  /** When the WALs were last cut back for the disk watermark (performance.now()). */
  private reclaimedAt = Number.NEGATIVE_INFINITY;

  /** Takes what a group just accepted off the free-space figure until the next look at the disk. */
  private spend(bytes: number): void {
    this.disk.free -= bytes * DISK_COST_FACTOR;
  }

  /** Stops the local store's catch-up timer for good (the daemon is stopping). */
  close(): void {
    this.localRetry.closed = true;
    if (this.localRetry.timer) clearTimeout(this.localRetry.timer);
    this.localRetry.timer = null;
  }

  /** Read-your-writes: applies a durable group to the local view, and logs what could not be. */
  private async applyLocally(stored: BufferedTransaction[]): Promise<void> {
    this.report(stored, await applyOrCatchUp(this.buffer, this.local, stored));
  }

  /** Why new writes are refused with 507 by the storage itself (a full disk, Redis out of memory), until one is stored; or null. */
  storageFull(): string | null {
    return this.failing?.full ? this.failing.message : null;
  }

  /** Logs a failed append once per minute while the same failure lasts: one line per group would flood the log. */
  private appendFailed(err: unknown, full: boolean): void {
    const message = (err as Error)?.message ?? String(err);
    const now = performance.now();
    if (this.failing?.message !== message || now - this.failing.at > 60_000) {
      this.log.error({ err }, 'buffer append failed');
      this.failing = { message, at: now, full };
    }
  }

  /** Why some writes answered 201 are not readable at this edge yet, until the local store catches up; or null. */
  localBehind(): string | null {
    return this.behind;
  }

  private report(stored: BufferedTransaction[], r: LocalApply): void {
    this.behind = r.error;
    if (r.error) {
      this.log.error({ first_seq: stored[0]?.seq, problem: r.error }, 'the local store did not take buffered writes; they are durable, and it catches up with the next write or within seconds');
      this.retryLocal();
    } else if (this.localRetry.timer) {
      // A later group applied, which catches up whatever came before it: no need to wait for the timer.
      clearTimeout(this.localRetry.timer);
      this.localRetry.timer = null;
      this.localRetry.delayMs = LOCAL_RETRY_MS.first;
    }
    if (r.recovered) this.log.warn({ first_seq: stored[0]?.seq, problem: r.recovered }, 'applying buffered writes to the local store failed once; the catch-up from the buffer applied them');
  }

  /**
   * Catches the local store up with the buffer on a timer, so writes answered
   * 201 while it could not take them become readable without waiting for the
   * next write (SPEC §2.7). Retries with a growing delay until it works.
   */
  private retryLocal(): void {
    const state = this.localRetry;
    if (state.closed) return;
    if (state.running) {
      state.again = true;
      return;
    }
    if (state.timer) return;
    state.timer = setTimeout(() => {
      state.timer = null;
      state.running = true;
      state.again = false;
      const run = this.buffer instanceof ThreadedSqliteBuffer ? this.buffer.catchUpLocal() : catchUp(this.buffer, this.local);
      void run.then(
        (n) => {
          state.running = false;
          state.delayMs = LOCAL_RETRY_MS.first;
          if (!state.again) this.behind = null;
          this.log.info({ applied: n }, 'the local store caught up with the buffer');
          if (state.again) this.retryLocal();
        },
        (err: unknown) => {
          state.running = false;
          state.delayMs = Math.min(state.delayMs * 2, LOCAL_RETRY_MS.max);
          if (state.closed) return;
          this.log.warn({ problem: (err as Error).message, next_try_ms: state.delayMs }, 'the local store could not catch up with the buffer yet');
          this.retryLocal();
        },
      );
    }, state.delayMs);
    state.timer.unref();
  }

  /**
   * Makes a group durable and visible in the local store. With the SQLite
   * buffer in its own thread both happen there, off the event loop.
   */
  private async appendAndApply(txs: NewTransaction[]): Promise<BufferedTransaction[]> {
    if (!(this.buffer instanceof ThreadedSqliteBuffer)) {
      const stored = await this.buffer.append(txs);
      await this.applyLocally(stored);
      return stored;
    }
    const { stored, localError, localRecovered } = await this.buffer.commitGroup(txs);
    this.report(stored, { error: localError, recovered: localRecovered });
    return stored;
  }

  /**
   * After a failed append: did it land anyway (the connection dropped after
   * Redis ran the script)? Appends are all-or-nothing, so the first id tells.
   * If it landed, the writes are answered as stored.
   */
  private async landed(items: Item[]): Promise<boolean> {
    try {
      const first = await this.buffer.get(items[0]!.tx.transaction_id);
      if (!first) return false;
      const stored = await Promise.all(items.map((i) => this.buffer.get(i.tx.transaction_id)));
      if (stored.some((t) => !t)) return false;
      await this.applyLocally(stored as BufferedTransaction[]);
      items.forEach((item, i) => item.resolve(stored[i]!));
      this.onCommit();
      return true;
    } catch {
      return false;
    }
  }

  /** The buffer's held bytes (see `held`); read from the buffer when `fresh`, or when the last read is a second old. */
  private async heldBytes(fresh: boolean): Promise<number> {
    const now = performance.now();
    if (fresh || now - this.held.at > HELD_CHECK_MS) this.held = { bytes: (await this.buffer.stats()).held_bytes, at: now };
    return this.held.bytes;
  }

  /** Which writes of a group fit under the limits; the others are refused with 507. Returns those to store, and their bytes. */
  private async admit(group: Item[]): Promise<{ accepted: Item[]; bytes: number }> {
    const fits = (held: number, bytes: number) => held + bytes <= this.limits.bufferMaxBytes;
    const sizes = group.map((item) => transactionBytes(item.tx));
    let held = await this.heldBytes(false);
    // The figure kept may be high (the backlog drained since): read it again rather than refuse on it.
    if (!fits(held, sizes.reduce((a, b) => a + b, 0))) held = await this.heldBytes(true);
    const free = await this.freeDisk();
    const accepted: Item[] = [];
    let bytes = 0;
    group.forEach((item, i) => {
      const size = sizes[i]!;
      if (free - (bytes + size) * DISK_COST_FACTOR < this.limits.minFreeDiskBytes) {
        item.reject(new InsufficientStorageError(
          `Disk under the buffer is nearly full (${free} bytes free, MIN_FREE_DISK_BYTES=${this.limits.minFreeDiskBytes}); nothing accepted is lost, but new writes are refused until space is freed`,
          { free_disk_bytes: free, min_free_disk_bytes: this.limits.minFreeDiskBytes },
        ));
      } else if (!fits(held + bytes, size)) {
        item.reject(new InsufficientStorageError(
          `Buffer is full (${held + bytes} of BUFFER_MAX_BYTES=${this.limits.bufferMaxBytes} bytes held); nothing accepted is lost, but new writes are refused until the backlog drains to central`,
          { held_bytes: held + bytes, buffer_max_bytes: this.limits.bufferMaxBytes },
        ));
      } else {
        bytes += size;
        accepted.push(item);
      }
    });
    return { accepted, bytes };
  }

  /**
   * Stores a group (those of its writes that fit) and returns how to answer
   * its writers; refusals and failures are answered at once.
   */
  private async commit(group: Item[]): Promise<() => void> {
    let accepted: Item[] = [];
    try {
      const admitted = await this.admit(group);
      accepted = admitted.accepted;
      if (accepted.length === 0) return ANSWERED;
      this.spend(admitted.bytes);
      const txs = accepted.map((i) => i.tx);
      const stored = await this.appendAndApply(txs).catch(async (err: unknown) => {
        if (!(err instanceof BufferBehindError)) throw err;
        await this.onBehind(err);
        return this.appendAndApply(txs);
      });
      this.held.bytes += admitted.bytes;
      if (this.failing) {
        this.log.info({ problem: this.failing.message }, 'buffer appends work again');
        this.failing = null;
      }
      this.groups.count += 1;
      this.groups.transactions += stored.length;
      this.onCommit();
      return () => accepted.forEach((item, i) => item.resolve(stored[i]!));
    } catch (err) {
      // The figure kept is no longer known to be right.
      this.held.at = Number.NEGATIVE_INFINITY;
      if (err instanceof BufferNotDurableError) {
        // Nothing was sent to the storage; the change of its settings was logged once, when it was seen.
        const refused = new UnavailableError(`Nothing was stored: ${err.message}`, { backend: this.buffer.backend });
        for (const item of accepted.length ? accepted : group) item.reject(refused);
        return ANSWERED;
      }
      if (accepted.length > 0 && (await this.landed(accepted))) return ANSWERED;
      this.appendFailed(err, storageFull(err));
      if (err instanceof OutcomeUnknownError && accepted.length > 0) {
        // The storage stopped mid-commit: the write may be on disk. Say so, and how to find out, so a
        // client does not send it again as a new transaction.
        for (const item of accepted) {
          const id = item.tx.transaction_id;
          item.reject(new UnavailableError(
            `The edge's storage stopped while this write was being stored; it may or may not have been kept. Once the edge is back, GET /api/transactions/${id} tells: 404 means it was not kept and can be sent again.`,
            { transaction_id: id },
          ));
        }
        return ANSWERED;
      }
      if (storageFull(err)) {
        const full = new InsufficientStorageError(
          `The ${this.buffer.backend === 'redis' ? 'Redis server holding the buffer is out of memory' : 'disk under the buffer is full'}; nothing was stored, and nothing accepted is lost. New writes are refused until space is freed`,
          this.buffer.backend === 'redis' ? { backend: 'redis', problem: (err as Error).message } : { min_free_disk_bytes: this.limits.minFreeDiskBytes },
        );
        for (const item of accepted.length ? accepted : group) item.reject(full);
        return ANSWERED;
      }
      const unavailable = new UnavailableError('The write buffer is unavailable; nothing was stored, retry later');
      for (const item of accepted.length ? accepted : group) item.reject(unavailable);
      return ANSWERED;
    }
  }
}
