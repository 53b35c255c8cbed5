/**
 * The sync engine (SPEC §2–§4): pushes buffered transactions to central in
 * seq order and records central's per-item answers; pulls the change feed
 * into the replica; compacts what the replica has caught up with.
 * Storage- and framework-neutral: a buffer interface, a client, a sink.
 */
import { BufferLeaseLostError, type Outcome, type TransactionBuffer, type TxError, type TxState, type BufferedTransaction, type ReplayableTransaction } from '../edge/buffer/buffer.js';
import type { SyncView } from '../edge/sync-view.js';
import { ChangesPage, EDGE_CONFLICT_HEADER, REPLICA_HEADER, SINCE_ID_HEADER, SyncBatchResult, type Backlog } from '../lib/api/sync-schemas.js';
import type { Logger } from '../lib/logger.js';
import type { CentralClient, Reply } from './transport.js';
import type { HeldChange, ReplicaSink } from './replica.js';
import { classifyError, classifyReply, errorCode, retryDelayMs, type Failure } from './classify.js';
import { Health } from '../lib/api/schemas.js';
import { WRITABLE_TABLES } from '../lib/api/tables.js';
import { uuidv7 } from '../lib/uuid.js';

export interface EngineOptions {
  site: string;
  buffer: TransactionBuffer;
  client: CentralClient;
  replica: ReplicaSink;
  /** Read before every request, so a new token takes effect at once. */
  token: () => string;
  /** Where that token comes from, for the message when central refuses it (default `SITE_TOKEN`). */
  tokenSource?: () => string;
  log: Logger;
  batchSize: number;
  batchMaxBytes: number;
  /** BUFFER_MAX_BYTES: above half of it, a pull during a drain takes every page it can, so compaction frees space. */
  bufferMaxBytes?: number;
  /** Batches at central at once: 2 sends the next while the last is applied (SYNC_PIPELINE); default 2. */
  pipeline?: number;
  intervalMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /** This process's id, sent with every request (EDGE_ID_HEADER), for the log line of a conflict. */
  edgeId?: string;
  /** How often to probe central's /health while backing off from a failure central itself did not answer. */
  probeMs?: number;
  random?: () => number;
  /**
   * Where the engine keeps what it knows of the link across a restart (the edge: local.db). Without it,
   * a daemon restarted during an outage said healthy, with no last sync and no error, until its first
   * exchange with central had failed: 30 s and more on a link that drops packets.
   */
  memory?: SyncMemory;
  /**
   * SYNCED_RETENTION_HOURS in seconds: how long a compacted transaction's steps are kept with its receipt,
   * to be sent again to a central restored from an older backup (default 0: not kept).
   */
  keepSyncedSeconds?: number;
}

/**
 * Sending again what central may have lost (its database went back in time): the synced transactions the
 * buffer still has whole, in seq order, up to `through_seq` (the last seq when it was found). Central
 * answers `duplicate` for those it still has. Saved with the sync state, so a restart goes on from there.
 */
export interface CentralReplay {
  after_seq: number;
  through_seq: number;
  started_at: string;
  applied: number;
  duplicate: number;
  rejected: number;
  /** The feed position central answered the replay's last batch with (absent before the first). */
  position?: number;
}

/** What the engine knew of the link when it last changed; restored at start. */
export interface SavedSyncState {
  last_sync_at: string | null;
  last_error: TxError | null;
  consecutive_failures: number;
  central_reachable: boolean | null;
  /** A replay to central still under way (absent in what older builds saved). */
  replay?: CentralReplay | null;
  /** The position (and its id) central answered the last batch with (absent in what older builds saved). */
  last_batch_position?: FeedPosition | null;
  /** The last replay's last seq, and the position central answered its last batch with (see compact). */
  replayed_up_to?: { seq: number; position: number } | null;
}

/** A position of central's feed as this edge saw it: the number and what it is in central's history. */
export interface FeedPosition {
  position: number;
  id: string;
}

export interface SyncMemory {
  load(): SavedSyncState | null;
  save(s: SavedSyncState): void;
}

/** A run of successes is saved at most this often (every failure is saved). */
const SAVE_OK_EVERY_MS = 10_000;

export interface EngineEvents {
  applied(n: number): void;
  error(kind: string): void;
  batch(info: { count: number; bytes: number; duration_ms: number; result: string }): void;
}

const RATE_WINDOW_MS = 60_000;
/** States of a row's last local writer in which the replica keeps the local row over central's copy. */
const LOCAL_CHANGE_STANDS: ReadonlySet<TxState | undefined> = new Set<TxState>(['pending', 'in_flight', 'blocked', 'failed']);
/** The tables an edge writes: their rows' changes are held back from the replica while a replay runs. */
const WRITABLE: ReadonlySet<string> = new Set(WRITABLE_TABLES);

/** The position a 409 `central_went_back` names (the one the edge sent), or NaN. */
const wentBackPosition = (r: Reply): number => Number((r.body as { error: { details?: { position?: unknown } } }).error.details?.position);

const notAnAnswer = (r: Reply): Failure => ({
  kind: 'transient', code: 'bad_reply', message: `HTTP ${r.status} with a body that is not central's answer`,
  retryAfterMs: null, answeredBy: 'other', shrink: false,
});
/** A batch sent early, given up on because the batch it follows failed: not a failure of its own. */
const NOT_AFTER_FAILURE: Failure = {
  kind: 'transient', code: 'out_of_order', message: 'the batch sent before it failed; both are sent again, in order',
  retryAfterMs: null, answeredBy: 'central', shrink: false,
};
// A pull reads pages of about PULL_PAGE_ROWS changes (whole feed positions), at most MAX_PULL_PAGES of
// them, before the engine pushes again. While a backlog drains it takes BUSY_PULL_PAGES pages of
// BUSY_PULL_PAGE_ROWS, so the pushes go on (central's RSS during a drain fell with these smaller pages).
// Otherwise pages are bigger: each page costs a round trip on the site's long link, and over a 100 ms
// round trip a catch-up of 10,000 transactions took ≈ 6–8 s with pages of 1,000 and ≈ 1–2 s with 5,000
// (bench:sync). A page is applied and dropped before the one after next is asked for, so a pull holds
// at most two pages in memory, never a whole catch-up.
const PULL_PAGE_ROWS = 5000;
const BUSY_PULL_PAGE_ROWS = 1000;
const MAX_PULL_PAGES = 100;
const BUSY_PULL_PAGES = 5;
const BUSY_PULL_MS = 5000;

export class SyncEngine implements SyncView {
  private status: 'running' | 'paused' | 'stopped' = 'stopped';
  private pausedReason: TxError | null = null;
  private failures = 0;
  private error: TxError | null = null;
  private lastOk: string | null = null;
  private reachable: boolean | null = null;
  /** While waiting after a failure: when the next attempt is due (wall clock, ISO), for /buffer-stats. */
  private nextAttempt: string | null = null;
  private batchSize: number;
  /** The most rows a pull page asks for: halved after a pull timed out or stalled, doubled after one got through. */
  private pullRows = PULL_PAGE_ROWS;
  /** When the last pull ended (performance.now(): intervals are measured on the monotonic clock, so a step of the wall clock neither stops nor hurries pulls and backoffs). */
  private lastPull = Number.NEGATIVE_INFINITY;
  /** Pulls failed in a row while pushes went on, and when the next pull may be tried (see pullFailed). */
  private pullFailures = 0;
  private pullRetryAt = Number.NEGATIVE_INFINITY;
  /** The last pull's failure while pushes go on: shown as last_error until a pull succeeds (a push's success does not hide it). */
  private pullError: TxError | null = null;
  /** A push (or replay batch) failed and none has got through since: central, or the link, is down. */
  private pushDown = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private stopping = false;
  /** Batches applied lately (`at`: performance.now()), for processingRate. */
  private applied: { at: number; n: number }[] = [];
  readonly totals = { applied: 0, batches: 0 };
  private listeners: Partial<EngineEvents>[] = [];
  private conflict: { other_edge_id: string; since: string } | null = null;
  /** A step failed and returning its claims to pending failed too (the buffer not answering): done before the next claim. */
  private releaseOwed = false;

  constructor(private readonly o: EngineOptions) {
    this.batchSize = o.batchSize;
    let saved: SavedSyncState | null = null;
    try {
      saved = o.memory?.load() ?? null;
    } catch (err) {
      o.log.warn({ err: (err as Error).message }, 'what sync knew before the restart could not be read; starting without it');
    }
    if (saved) {
      this.lastOk = saved.last_sync_at;
      this.error = saved.last_error;
      this.failures = saved.consecutive_failures;
      this.reachable = saved.central_reachable;
      this.replay = saved.replay ?? null;
      this.lastBatchPosition = saved.last_batch_position ?? null;
      this.replayedUpTo = saved.replayed_up_to ?? null;
    }
  }

  /**
   * The position central answered the last batch with: the replica may be behind it (pulls are few while
   * a backlog drains), and a central restored to a point between the two has lost that batch.
   */
  private lastBatchPosition: FeedPosition | null = null;

  /**
   * The last replay's last seq and the position of its last answer. A synced transaction still held up
   * to that seq records a position from the history central lost, maybe beyond its feed now; it was sent
   * again, and central's copy of it is at or before that position (see compact).
   */
  private replayedUpTo: { seq: number; position: number } | null = null;

  /** A replay to central under way (see CentralReplay), or null. */
  private replay: CentralReplay | null = null;

  /** When the state was last saved (performance.now()), to save a run of successes only now and then. */
  private savedAt = Number.NEGATIVE_INFINITY;

  private remember(): void {
    if (!this.o.memory) return;
    try {
      this.o.memory.save({
        last_sync_at: this.lastOk, last_error: this.error, consecutive_failures: this.failures, central_reachable: this.reachable, replay: this.replay,
        last_batch_position: this.lastBatchPosition, replayed_up_to: this.replayedUpTo,
      });
      this.savedAt = performance.now();
    } catch (err) {
      // Not worth failing a sync step for: it only matters after a restart.
      this.o.log.debug({ err: (err as Error).message }, 'sync state not saved');
    }
  }

  on(listener: Partial<EngineEvents>): void {
    this.listeners.push(listener);
  }

  private emit<K extends keyof EngineEvents>(k: K, ...args: Parameters<EngineEvents[K]>): void {
    for (const l of this.listeners) (l[k] as ((...a: unknown[]) => void) | undefined)?.(...args);
  }

  // ---- SyncView ------------------------------------------------------------
  state() {
    return this.status;
  }
  lastSyncAt() {
    return this.lastOk;
  }
  lastError() {
    return this.pausedReason ?? this.error ?? this.pullError;
  }
  /** Failed exchanges in a row; a pull failing while pushes go on counts its own run (so /health stays degraded). */
  consecutiveFailures() {
    return Math.max(this.failures, this.pullFailures);
  }
  centralReachable() {
    return this.reachable;
  }
  nextAttemptAt() {
    return this.nextAttempt;
  }
  edgeConflict() {
    return this.conflict;
  }
  centralReplay() {
    return this.replay;
  }
  processingRate() {
    const since = performance.now() - RATE_WINDOW_MS;
    this.applied = this.applied.filter((a) => a.at >= since);
    return this.applied.reduce((s, a) => s + a.n, 0) / (RATE_WINDOW_MS / 1000);
  }

  // ---- lifecycle -----------------------------------------------------------
  start(): void {
    if (this.loop) return;
    this.stopping = false;
    this.status = 'running';
    this.loop = this.run().finally(() => {
      this.status = 'stopped';
      this.loop = null;
    });
  }

  /** Finishes the batch in flight (its answer is recorded), then stops. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.nudge();
    await this.loop;
  }

  /** New work, or new credentials: stop waiting. */
  nudge(): void {
    this.wake?.();
  }

  /** Credentials changed: leave the paused state and try at once. */
  credentialsChanged(): void {
    if (this.status === 'paused') {
      this.status = 'running';
      this.pausedReason = null;
    }
    this.nudge();
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        done();
      };
    });
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      try {
        if (this.status === 'paused') {
          await this.sleep(Math.max(this.o.intervalMs, 5000));
          if (!this.stopping && this.status === 'paused') await this.pull(true);
          continue;
        }
        // No batch of this engine is at central here: a release that failed earlier is owed first, or what a
        // claim whose answer was lost left in flight would stay there, overtaken by everything after it.
        if (this.releaseOwed) {
          await this.o.buffer.releaseInFlight();
          this.releaseOwed = false;
        }
        // What central may have lost goes before anything newer. Pulls go on between its batches, as
        // while a backlog drains: central's changes (a revoked token) must not wait for a long replay.
        if (this.replay) {
          const failure = await this.replayStep(this.replay);
          const pulled = !failure && this.status === 'running' && this.pullDue(true) ? await this.pull(false, BUSY_PULL_PAGES, BUSY_PULL_PAGE_ROWS) : null;
          if (failure?.kind === 'transient') await this.backoff(failure);
          else if (pulled?.kind === 'transient') await this.pullFailed(pulled, true);
          continue;
        }
        const batch = await this.o.buffer.claim(this.batchSize, this.o.batchMaxBytes);
        const failure = batch.length > 0 ? await this.pushPipelined(batch) : null;
        let pulled: Failure | null = null;
        if (!failure && this.status === 'running' && this.pullDue(batch.length > 0)) {
          // While a backlog drains, a pull takes a few pages and lets the pushes go on: getting the data
          // to central comes first, and the replica catches up once the backlog is gone.
          // (Unless the buffer is more than half full: then compaction, which needs the pull, comes first.)
          const busy = batch.length > 0 && !(await this.bufferPressed());
          pulled = await this.pull(false, busy ? BUSY_PULL_PAGES : MAX_PULL_PAGES, busy ? BUSY_PULL_PAGE_ROWS : PULL_PAGE_ROWS);
        }
        if (failure?.kind === 'transient') await this.backoff(failure);
        else if (pulled?.kind === 'transient') await this.pullFailed(pulled, batch.length > 0);
        else if (batch.length === 0 && !failure && !pulled) await this.sleep(this.o.intervalMs);
      } catch (err) {
        if (err instanceof BufferLeaseLostError) {
          // Another daemon syncs this buffer: what is in flight is that one's (or this one's, answered
          // and settled as it comes), so nothing is released here; only claims stop.
          if (this.error?.code !== 'lease_lost') this.o.log.error({ problem: err.message }, 'sync stopped taking work from the buffer: ' + err.message);
          this.fail({ kind: 'transient', code: 'lease_lost', message: err.message, retryAfterMs: null, answeredBy: null, shrink: false });
          await this.waitToRetry(Math.min(this.o.retryMaxMs, 5000), false);
          continue;
        }
        // A local fault (the buffer itself): report it and try again later, never spin. Whatever this
        // engine had claimed goes back to pending, so nothing is stranded in flight or overtaken.
        this.o.log.error({ err }, 'sync engine step failed');
        await this.o.buffer.releaseInFlight().then(
          () => {
            this.releaseOwed = false;
          },
          () => {
            this.releaseOwed = true;
          },
        );
        this.fail({ kind: 'transient', code: 'local', message: (err as Error).message, retryAfterMs: null, answeredBy: null, shrink: false });
        await this.waitToRetry(this.o.retryMaxMs > 5000 ? 5000 : this.o.retryMaxMs, false);
      }
    }
  }

  private fail(f: Failure): void {
    this.failures += 1;
    this.error = { code: f.code, message: f.message, at: new Date().toISOString() };
    // Central itself answered (a 500, a 429, a 503 with its own error body…): it is reachable, just not well.
    if (f.kind === 'transient' && f.answeredBy !== null) this.reachable = f.answeredBy === 'central';
    this.remember();
    this.emit('error', f.code);
  }

  /** Central answered: whether it says another edge process syncs as this site (EDGE_CONFLICT_HEADER). */
  private heard(reply: Reply): void {
    const other = reply.headers.get(EDGE_CONFLICT_HEADER);
    if (other && this.conflict) {
      // Still going on (with three daemons or more, central names the one it heard last): logged once.
      this.conflict = { ...this.conflict, other_edge_id: other };
    } else if (other) {
      this.conflict = { other_edge_id: other, since: new Date().toISOString() };
      this.o.log.error(
        { edge_id: this.o.edgeId, other_edge_id: other },
        `another edge daemon is syncing as site "${this.o.site}" too: two daemons run with SITE_NAME=${this.o.site}. ` +
          'Nothing is lost or doubled, but each slows the other; stop the one that should not run',
      );
    } else if (!other && this.conflict) {
      this.o.log.warn({ other_edge_id: this.conflict.other_edge_id }, `central no longer hears another edge as site "${this.o.site}"`);
      this.conflict = null;
    }
  }

  private succeed(): void {
    const recovered = this.failures > 0 || this.error !== null || this.reachable !== true;
    this.failures = 0;
    this.error = null;
    this.reachable = true;
    this.lastOk = new Date().toISOString();
    if (recovered || performance.now() - this.savedAt >= SAVE_OK_EVERY_MS) this.remember();
  }

  /**
   * A pull failed. When pushes get through (a batch just went, or central itself answered the pull: its
   * feed fails, not the link), the pull waits out a backoff of its own and pushes go on meanwhile: a feed
   * that fails must not hold back observations on their way. Otherwise (no answer, and nothing sent)
   * the link is likely down, and the engine waits as after any failure, ending the wait when central's
   * /health answers again.
   */
  private async pullFailed(f: Extract<Failure, { kind: 'transient' }>, pushed: boolean): Promise<void> {
    if (!pushed && f.answeredBy !== 'central') {
      await this.backoff(f);
      return;
    }
    this.pullFailures += 1;
    this.pullError = { code: f.code, message: `pulling central's changes failed (pushes go on): ${f.message}`, at: new Date().toISOString() };
    this.pullRetryAt = performance.now() + retryDelayMs(this.pullFailures, this.o.retryBaseMs, this.o.retryMaxMs, f.retryAfterMs, this.o.random);
    if (!pushed) await this.sleep(this.o.intervalMs);
  }

  /**
   * A batch got through. After pushes had failed too (central or the link was down), a pull that failed
   * meanwhile failed for the same reason: its own backoff ends, and the next pull goes at once.
   */
  private pushAnswered(): void {
    if (!this.pushDown) return;
    this.pushDown = false;
    this.pullFailures = 0;
    this.pullRetryAt = Number.NEGATIVE_INFINITY;
    this.pullError = null;
  }

  /** Waits out the backoff (Retry-After, if longer, up to RETRY_MAX_MS). */
  private backoff(f: Extract<Failure, { kind: 'transient' }>): Promise<void> {
    const delay = retryDelayMs(this.failures, this.o.retryBaseMs, this.o.retryMaxMs, f.retryAfterMs, this.o.random);
    // Probed only while central itself is not heard (no answer, or a gateway's or a portal's page): when
    // central answered with a status (a 503, a Retry-After, a stalled body), its /health answering says
    // nothing new, and ending the wait on it would only cut central's backoff short.
    return this.waitToRetry(delay, f.answeredBy === 'nobody' || f.answeredBy === 'other');
  }

  /**
   * Sleeps `ms` after a failure, showing when the next attempt is due
   * (next_attempt_at). `probe`: central's /health answering ends the wait at
   * once, so a link that comes back is used at once.
   */
  private async waitToRetry(ms: number, probe: boolean): Promise<void> {
    const until = performance.now() + ms;
    const every = this.o.probeMs ?? 1000;
    this.nextAttempt = new Date(Date.now() + ms).toISOString();
    try {
      while (!this.stopping && performance.now() < until) {
        await this.sleep(Math.min(every, until - performance.now()));
        if (probe && performance.now() < until && (await this.probe())) return;
      }
    } finally {
      this.nextAttempt = null;
    }
  }

  /**
   * Central's own /health answered. A 200 from anything else does not count: a captive portal answers
   * 200 to everything, and ending the wait on it sent it a batch every second, whatever RETRY_BASE_MS
   * and RETRY_MAX_MS said.
   */
  private async probe(): Promise<boolean> {
    try {
      const r = await this.o.client.get('/health', null);
      const h = Health.safeParse(r.body);
      return r.status === 200 && h.success && (h.data.status === 'healthy' || h.data.status === 'degraded');
    } catch {
      return false;
    }
  }

  private async backlog(): Promise<Backlog> {
    const s = await this.o.buffer.stats();
    const oldest = s.oldest_pending_created_at ? Date.parse(s.oldest_pending_created_at) : null;
    return {
      pending: s.pending, in_flight: s.in_flight, blocked: s.blocked, failed: s.failed,
      oldest_pending_age_seconds: oldest === null ? 0 : Math.max(0, (Date.now() - oldest) / 1000),
      last_seq: s.last_seq, pending_bytes: s.pending_bytes,
    };
  }

  private pause(f: Failure): void {
    // A refused token is a failed exchange too: counted in opsdb_sync_errors_total{kind="http_401"}.
    if (this.status !== 'paused') this.emit('error', f.code);
    this.status = 'paused';
    this.reachable = true; // central answered, if only to refuse the token
    this.pausedReason = { code: f.code, message: `central refused the site token: ${f.message}`, at: new Date().toISOString() };
    const source = this.o.tokenSource?.() ?? 'SITE_TOKEN';
    const fix = source === 'SITE_TOKEN'
      ? 'set a valid SITE_TOKEN and restart, or PUT one to /api/sync/site-token'
      : 'PUT a valid one to /api/sync/site-token, or set a new SITE_TOKEN and restart';
    this.o.log.error({ code: f.code, message: f.message, token_source: source }, `sync paused: central refused the site token (${source}); ${fix}`);
  }

  /**
   * Sends `first`; while a batch is at central, claims the next one and sends
   * it too, naming the batch it must follow (central applies it only after
   * that one has committed). At most two batches are in flight, and the next
   * never holds a transaction whose parent is in flight. Stops when a pull is
   * due, on stop, or on a failure (after the other batch's answer is in).
   * Returns the first batch's failure that ended it, or null.
   */
  private async pushPipelined(first: BufferedTransaction[]): Promise<Failure | null> {
    // `done` never rejects: a local fault (the buffer) in one batch must not go unobserved while the
    // engine waits for the other; it is rethrown once both are settled, and run() recovers from it.
    type Sent = { id: string; cancel: AbortController; done: Promise<{ failure: Failure | null } | { error: unknown }> };
    const send = (batch: BufferedTransaction[], after: string | null): Sent => {
      const id = uuidv7();
      const cancel = new AbortController();
      const done = this.push(batch, id, after, cancel.signal).then((failure) => ({ failure }), (error: unknown) => ({ error }));
      return { id, cancel, done };
    };
    let current = send(first, null);
    for (;;) {
      let next: Sent | null = null;
      let claimError: { error: unknown } | null = null;
      if ((this.o.pipeline ?? 2) > 1 && !this.stopping && this.status === 'running' && !this.pullDue(true)) {
        try {
          const batch = await this.o.buffer.claim(this.batchSize, this.o.batchMaxBytes, { notAfterInFlight: true });
          if (batch.length > 0) next = send(batch, current.id);
        } catch (error) {
          claimError = { error };
        }
      }
      const result = await current.done;
      if ('error' in result || claimError || result.failure) {
        // Central holds the next batch until this one commits, which it may never do: stop waiting for it.
        next?.cancel.abort();
        const other = await next?.done;
        for (const r of [result, claimError, other]) if (r && 'error' in r) throw r.error;
        return (result as { failure: Failure | null }).failure;
      }
      if (!next) return null;
      current = next;
    }
  }

  /**
   * Sends one batch and records every answer. Returns the failure, or null.
   * `after`: the batch still at central that this one must follow.
   */
  private async push(batch: BufferedTransaction[], batchId: string, after: string | null, cancel?: AbortSignal): Promise<Failure | null> {
    const started = performance.now();
    const bytes = batch.reduce((s, t) => s + t.bytes, 0);
    const transactions = batch.map((t) => ({
      transaction_id: t.transaction_id, site: t.site, seq: t.seq, created_at: t.created_at, endpoint: t.endpoint, steps: t.steps,
    }));
    let reply: Reply;
    try {
      const backlog = await this.backlog();
      // Batch ids are for pipelining only: with SYNC_PIPELINE=1 they are left out, so that a central older
      // than them (which refuses keys it does not know) can still be synced with.
      const ids = (this.o.pipeline ?? 2) > 1 ? { batch_id: batchId, after_batch: after } : {};
      reply = await this.o.client.post('/api/sync/transactions', { site: this.o.site, transactions, backlog, ...ids }, this.o.token(), this.replicaHeader(), cancel);
    } catch (err) {
      if (cancel?.aborted) return this.pushFailed(batch, NOT_AFTER_FAILURE, started, bytes);
      return this.pushFailed(batch, classifyError(err), started, bytes);
    }
    if (reply.status === 409 && errorCode(reply.body) === 'central_went_back') {
      // Nothing of it was applied: it goes back to pending, behind the replay of what central lost.
      this.heard(reply);
      const f = await this.centralWentBackOnPush(wentBackPosition(reply));
      await this.o.buffer.settle(batch.map((t) => ({ seq: t.seq, outcome: 'retry' as const, error: { code: f.code, message: f.message, at: new Date().toISOString() } })));
      return f;
    }
    if (reply.status !== 200) return this.pushFailed(batch, classifyReply(reply, { batchSize: batch.length }), started, bytes);
    // A 200 from something that is not central (a captive portal, a misrouted proxy) is not an answer,
    // and its lack of a conflict header says nothing about a conflict central reported.
    const parsed = SyncBatchResult.safeParse(reply.body);
    if (!parsed.success) return this.pushFailed(batch, notAnAnswer(reply), started, bytes);
    this.heard(reply);
    // Central answered: reachable, even if recording its answer here fails next (a full disk).
    this.reachable = true;
    this.pushAnswered();
    const body = parsed.data;
    const byId = new Map(body.results.map((r) => [r.transaction_id, r]));
    const now = new Date().toISOString();
    let applied = 0;
    const outcomes: Outcome[] = batch.map((t) => {
      const r = byId.get(t.transaction_id);
      if (!r) return { seq: t.seq, outcome: 'retry', error: { code: 'no_result', message: 'central sent no result for it', at: now } };
      if (r.result === 'rejected') {
        return { seq: t.seq, outcome: 'rejected', error: { code: r.code ?? 'rejected', message: r.reason ?? 'rejected by central', details: r.details, at: now }, central_result: r };
      }
      applied += 1;
      return { seq: t.seq, outcome: r.result, central_result: { result: r.result, position: body.position, at: now } };
    });
    await this.o.buffer.settle(outcomes);
    this.noteBatchPosition(body);
    this.succeed();
    this.batchSize = Math.min(this.o.batchSize, this.batchSize * 2);
    this.applied.push({ at: performance.now(), n: applied });
    // Trimmed here too: only /buffer-stats reads the rate, and an edge watched through /metrics alone kept
    // one entry per batch for good.
    if (this.applied.length > 64) this.processingRate();
    this.totals.applied += applied;
    this.totals.batches += 1;
    const rejected = batch.length - applied;
    this.emit('applied', applied);
    const duration_ms = Math.round(performance.now() - started);
    this.emit('batch', { count: batch.length, bytes, duration_ms, result: rejected ? `applied ${applied}, rejected ${rejected}` : 'applied' });
    this.o.log.info({ count: batch.length, bytes, duration_ms, applied, rejected, position: body.position }, 'sync batch');
    return null;
  }

  private async pushFailed(batch: BufferedTransaction[], f: Failure, started: number, bytes: number): Promise<Failure> {
    const error: TxError = { code: f.code, message: f.message, at: new Date().toISOString() };
    // One transaction central will never take in one piece, or will not take at all (it named it), is that
    // transaction's fault alone: it is rejected, and the others go again at once.
    const culprit = f.kind === 'too_large' && batch.length === 1 ? batch[0] : f.kind === 'refused' ? batch[f.index] : undefined;
    // The others of a batch refused for one transaction's sake are not at fault: their error says so.
    const resent: TxError = culprit && f.kind === 'refused'
      ? { code: 'resent', message: `sent again: central refused another transaction of its batch (seq ${culprit.seq})`, at: error.at }
      : error;
    await this.o.buffer.settle(batch.map((t) => (t === culprit ? { seq: t.seq, outcome: 'rejected' as const, error } : { seq: t.seq, outcome: 'retry' as const, error: resent })));
    if (f.kind === 'too_large' || (f.kind === 'transient' && f.shrink)) this.batchSize = Math.max(1, Math.floor(batch.length / 2));
    if (f.kind === 'auth') this.pause(f);
    // out_of_order: the batch before it failed; that failure is the one to report and back off from.
    else if (f.kind === 'transient' && f.code !== 'out_of_order') {
      this.fail(f);
      this.pushDown = true;
    }
    const duration_ms = Math.round(performance.now() - started);
    this.emit('batch', { count: batch.length, bytes, duration_ms, result: f.code });
    this.o.log.warn({ count: batch.length, bytes, duration_ms, code: f.code, message: f.message, next_batch_size: this.batchSize }, 'sync batch not applied');
    return f;
  }

  /** While draining a backlog, pull now and then (the feed then brings whole batches back at once); when idle, every interval. */
  private pullDue(draining: boolean): boolean {
    const now = performance.now();
    return now >= this.pullRetryAt && now - this.lastPull >= (draining ? Math.max(this.o.intervalMs, BUSY_PULL_MS) : this.o.intervalMs);
  }

  private async bufferPressed(): Promise<boolean> {
    if (!this.o.bufferMaxBytes) return false;
    return (await this.o.buffer.stats()).held_bytes > this.o.bufferMaxBytes / 2;
  }

  /**
   * Asks for the page after `since`, sending the request at once. Never
   * rejects, so a page asked for early and then not needed is no unhandled
   * rejection.
   */
  private fetchPage(since: number, sinceId: string | null, rows: number, backlog: string): Promise<{ reply: Reply } | { err: unknown }> {
    try {
      const headers: Record<string, string> = { 'x-opsdb-backlog': backlog };
      if (sinceId !== null && since > 0) headers[SINCE_ID_HEADER] = sinceId;
      return this.o.client
        .get(`/api/sync/changes?since=${since}&max_rows=${rows}`, this.o.token(), headers)
        .then((reply) => ({ reply }), (err: unknown) => ({ err }));
    } catch (err) {
      return Promise.resolve({ err });
    }
  }

  /**
   * Pulls the change feed into the replica, then compacts what it now covers.
   * The next page is asked for as soon as a page arrives, before that page is
   * applied, so the round trip to central overlaps the local work (on the
   * site's long link, most of a page's time is the round trip).
   */
  private async pull(probing: boolean, maxPages = MAX_PULL_PAGES, pageRows = PULL_PAGE_ROWS): Promise<Failure | null> {
    // The backlog central is told about: once per pull, so the next page's request can go out at once.
    let backlog: string;
    try {
      backlog = JSON.stringify(await this.backlog());
    } catch (err) {
      const f = classifyError(err);
      if (!probing) this.fail(f);
      return f;
    }
    const since = this.o.replica.position();
    const rows = Math.min(pageRows, this.pullRows);
    let next = this.fetchPage(since, this.o.replica.positionId?.() ?? null, rows, backlog);
    let atHead = false;
    for (let page = 0; page < maxPages && !this.stopping; page++) {
      const got = await next;
      if ('err' in got) {
        const f = classifyError(got.err);
        if (f.kind === 'transient' && f.shrink) this.shrinkPull(rows, f);
        if (!probing) this.fail(f);
        return f;
      }
      const reply = got.reply;
      if (reply.status !== 200) {
        const f = classifyReply(reply);
        if (f.kind === 'auth') {
          if (!probing) this.pause(f);
          return f;
        }
        if (!probing) this.fail(f);
        return f;
      }
      const parsed = ChangesPage.safeParse(reply.body);
      if (!parsed.success) {
        const f = notAnAnswer(reply);
        if (!probing) this.fail(f);
        return f;
      }
      if (probing) this.credentialsChanged();
      this.heard(reply);
      const body = parsed.data;
      const asked = page === 0 ? since : this.o.replica.position();
      if (body.since_unknown || (page === 0 && body.head !== undefined && body.head < since)) return await this.centralWentBack(body.head, asked);
      // The page after this one starts where this one ends; ask for it now.
      if (body.more && page + 1 < maxPages && !this.stopping) {
        next = this.fetchPage(body.position, body.position_id ?? null, rows, backlog);
        // Let the request leave before the synchronous apply below holds the event loop.
        await new Promise<void>((r) => setImmediate(r));
      }
      const origins = this.o.replica.originSeqs(body.changes);
      const states = origins.size ? await this.o.buffer.states([...origins.values()]) : new Map();
      // A row whose last local change is still on its way (or failed, for an operator to retry) keeps it;
      // one whose change was synced, or discarded, takes central's copy.
      const keep = new Set([...origins].filter(([, seq]) => LOCAL_CHANGE_STANDS.has(states.get(seq))).map(([k]) => k));
      // While a replay runs, central's copy of a row this site writes may be older than this edge's (central
      // lost the change, and the replay has not sent it again yet): every such change is held back, to be
      // put in place, or replaced by the newer copy the replay makes, once the replay is done (settleHeld).
      if (this.replay) {
        for (const c of body.changes) {
          if (!WRITABLE.has(c.table)) continue;
          const k = `${c.table}:${c.key}`;
          keep.add(k);
          if (!origins.has(k)) origins.set(k, this.replay.through_seq);
        }
      }
      const deferred = this.o.replica.deferredSeqs?.(body.changes) ?? [];
      const deferredStates = deferred.length ? await this.o.buffer.states(deferred) : new Map<number, TxState>();
      // The same rule for an update buffered before its row was here: once synced (compacted too) or
      // discarded, central's copy, which this pull brings, is the row. No push runs during a pull, so one
      // synced now was applied at central before this page was read. Put on top of it, a synced finish
      // hid a newer change made at central (an edge rebuilt on an empty DATA_DIR, its pulls failing).
      const settled = new Set(deferred.filter((s) => !LOCAL_CHANGE_STANDS.has(deferredStates.get(s))));
      this.o.replica.apply(body.changes, body.position, keep, origins, settled, body.position_id ?? null);
      if (!body.more) {
        atHead = true;
        break;
      }
    }
    this.lastPull = performance.now();
    this.pullFailures = 0;
    this.pullRetryAt = Number.NEGATIVE_INFINITY;
    this.pullError = null;
    this.pullRows = Math.min(PULL_PAGE_ROWS, this.pullRows * 2);
    this.succeed();
    // Only with the whole feed read: a pull that stopped part way (while a backlog drains, or after the feed
    // was read again from the start) may not have reached central's later changes of a held row yet.
    if (atHead) await this.settleHeld();
    await this.compact();
    return null;
  }

  /**
   * Central's changes a pull held back while a local change of the row stood
   * (`keep` above). Once neither the local change that held one back nor the
   * row's last local change (the same one, or a later update) stands, central's
   * change is put in place: run after a pull that read the whole feed, it is
   * central's newest change of the row (a newer one replaces it as it is held,
   * or, applied, drops it). A discarded change never reaches central, and
   * central may not change the row again (a row deleted there never does); a
   * synced one is in that copy already. While either stands, the row stays as
   * this edge wrote it.
   */
  private async settleHeld(): Promise<void> {
    // During a replay central's copies may be older than this edge's rows: all stay held until it is done.
    if (this.replay) return;
    const held = this.o.replica.heldChanges?.() ?? [];
    if (held.length === 0) return;
    const seqs = [...new Set(held.flatMap((h) => (h.origin === null ? [h.heldBy] : [h.heldBy, h.origin])))];
    const states = await this.o.buffer.states(seqs);
    const release: HeldChange[] = [];
    const drop: HeldChange[] = [];
    const ru = this.replayedUpTo;
    for (const h of held) {
      // Held by the last replay (every change of the site's rows was, see pull): central's change is the
      // row now, also for a row that is central's copy here, or not here at all.
      const byReplay = ru !== null && h.heldBy === ru.seq;
      // The row is central's copy again (a later change of it was applied), or gone: nothing to put back.
      if (h.origin === null && !byReplay) drop.push(h);
      else if (![h.heldBy, h.origin].some((seq) => seq !== null && LOCAL_CHANGE_STANDS.has(states.get(seq)))) release.push(h);
    }
    if (release.length || drop.length) this.o.replica.settleHeld?.(release, drop);
  }

  /**
   * A page that timed out or stalled: ask for half as many rows next time,
   * as a timed-out batch is sent at half the size. A page still holds at
   * least one whole feed position, which the body's own time limit (bytes
   * must keep arriving, however slowly) lets through.
   */
  private shrinkPull(rows: number, f: Failure): void {
    this.pullRows = Math.max(1, Math.floor(rows / 2));
    this.o.log.warn({ code: f.code, message: f.message, page_rows: rows, next_page_rows: this.pullRows }, 'sync pull not applied');
  }

  /**
   * Central's feed is behind this edge's replica, or gives the replica's
   * position to another change than the one read there (`since_unknown`: the
   * feed went back and on past it again before this pull): its database went
   * back in time (restored from a backup, or failed over to a standby that was
   * behind). Positions after `head`, and maybe some before it, will be
   * given out again, to new changes (a token revoked since, say), which the
   * replica would skip if it stayed where it is; where the two histories part
   * cannot be known here, so the replica reads central's feed again from the
   * start (rows are upserts: reading them again is harmless, and local writes
   * newer than central's are kept as always). What this edge synced after
   * that point may be gone from central: it is logged at level error, and a
   * replay (CentralReplay) sends again every synced transaction the buffer
   * still has whole, before anything newer.
   */
  private async centralWentBack(head: number | undefined, replica: number, onPush = false): Promise<Failure> {
    const where = onPush
      // Refused a batch (REPLICA_HEADER): the replica's position, or the position of the last batch's answer.
      ? `central's change feed does not have position ${replica} as this edge saw it`
      : head !== undefined && head < replica
        ? `central's change feed is at position ${head}, behind this edge's replica at ${replica}`
        // Detected by position_id: the feed went back, then on past the replica's position before this pull.
        : `central's change feed has given position ${replica}, where this edge's replica is, to another change than the one this edge read there`;
    const keptHours = Math.round((this.o.keepSyncedSeconds ?? 0) / 360) / 10;
    const message = `${where}: central's database went back in time ` +
      '(restored from a backup, or failed over to a copy that was behind). The edge reads central\'s feed again from the start, ' +
      `and sends again every synced transaction it still has whole (SYNCED_RETENTION_HOURS=${keptHours}); central applies those it lost. ` +
      'Any synced before that may be missing at central';
    this.o.log.error({ central_position: head, replica_position: replica }, message);
    const through = (await this.o.buffer.stats()).last_seq;
    // Positions of the history central lost mean nothing now.
    this.lastBatchPosition = null;
    this.replayedUpTo = null;
    // Found again during a replay: from the start once more, through what is synced now.
    this.replay = { after_seq: 0, through_seq: through, started_at: new Date().toISOString(), applied: 0, duplicate: 0, rejected: 0 };
    this.o.replica.apply([], 0, new Set(), new Map());
    const f: Failure = { kind: 'transient', code: 'central_behind', message, retryAfterMs: null, answeredBy: 'central', shrink: false };
    this.fail(f);
    return f;
  }

  /**
   * Keeps the newest position a batch was answered with (an older central sends no id: nothing kept),
   * saved at once: a restart must not forget it and check only the replica's older position.
   */
  private noteBatchPosition({ position, position_id }: { position: number; position_id?: string }): void {
    if (!position_id || position <= (this.lastBatchPosition?.position ?? 0)) return;
    this.lastBatchPosition = { position, id: position_id };
    this.remember();
  }

  /**
   * REPLICA_HEADER: the newest position of central's feed this edge knows, the replica's or the last
   * batch's, checked by central before it applies a batch.
   */
  private replicaHeader(): Record<string, string> | undefined {
    const pos = this.o.replica.position();
    const id = this.o.replica.positionId?.() ?? null;
    const last = this.lastBatchPosition;
    if (last && last.position > pos) return { [REPLICA_HEADER]: `${last.position} ${last.id}` };
    return pos > 0 && id !== null ? { [REPLICA_HEADER]: `${pos} ${id}` } : undefined;
  }

  /**
   * Central refused a batch because its feed does not have the replica's position (REPLICA_HEADER). Found
   * on a push, not a pull: before any batch after central went back is applied ahead of the replay. The
   * other batch of a pipelined pair is refused alike; the replica has been read again from the start by
   * then, and it is not reported twice.
   */
  private async centralWentBackOnPush(position: number): Promise<Failure> {
    if (this.o.replica.position() === 0 && this.lastBatchPosition === null && this.replay?.after_seq === 0 && this.error?.code === 'central_behind') {
      return { kind: 'transient', code: 'central_behind', message: this.error.message, retryAfterMs: null, answeredBy: 'central', shrink: false };
    }
    return this.centralWentBack(undefined, Number.isFinite(position) ? position : this.o.replica.position(), true);
  }

  /**
   * Sends the next batch of the replay (CentralReplay), or ends it when nothing is left. A transaction
   * central refuses now goes back to the dead-letter queue (replayed), is logged at level error and
   * counted, and the replay goes on. Returns the failure that stopped this step, or null.
   */
  private async replayStep(r: CentralReplay): Promise<Failure | null> {
    const batch = (await this.o.buffer.replayable(r.after_seq, this.batchSize)).filter((t) => t.seq <= r.through_seq);
    if (batch.length === 0) {
      this.replay = null;
      this.replayedUpTo = { seq: r.through_seq, position: r.position ?? 0 };
      this.remember();
      this.o.log.warn({ ...r, after_seq: undefined },
        `sent again to central what it may have lost: ${r.applied} applied again (central had lost them), ` +
        `${r.duplicate} it still had, ${r.rejected} refused`);
      return null;
    }
    const started = performance.now();
    const transactions = batch.map((t) => ({
      transaction_id: t.transaction_id, site: t.site, seq: t.seq, created_at: t.created_at, endpoint: t.endpoint, steps: t.steps,
    }));
    let reply: Reply;
    try {
      // With the position check too: central may go back again while a replay runs (restored once more).
      reply = await this.o.client.post('/api/sync/transactions', { site: this.o.site, transactions, backlog: await this.backlog() }, this.o.token(), this.replicaHeader());
    } catch (err) {
      const f = classifyError(err);
      this.fail(f);
      this.pushDown = true;
      return f;
    }
    if (reply.status === 409 && errorCode(reply.body) === 'central_went_back') {
      // Nothing of it was applied, and central lost more: the replay starts again from the first seq.
      this.heard(reply);
      return this.centralWentBackOnPush(wentBackPosition(reply));
    }
    const parsed = reply.status === 200 ? SyncBatchResult.safeParse(reply.body) : null;
    if (!parsed?.success) {
      const f = parsed ? notAnAnswer(reply) : classifyReply(reply, { batchSize: batch.length });
      if (f.kind === 'auth') {
        this.pause(f);
        return f;
      }
      if (f.kind === 'transient') {
        this.fail(f);
        this.pushDown = true;
        return f;
      }
      // Too large, or one transaction central cannot read: smaller batches, down to that one alone, refused.
      if (batch.length > 1) {
        this.batchSize = Math.max(1, Math.floor(batch.length / 2));
        return null;
      }
      return this.replayed(r, batch, [{ transaction_id: batch[0]!.transaction_id, result: 'rejected', code: f.code, reason: f.message }], null, started);
    }
    this.heard(reply);
    this.reachable = true;
    this.pushAnswered();
    this.noteBatchPosition(parsed.data);
    return this.replayed(r, batch, parsed.data.results, parsed.data.position, started);
  }

  /**
   * Records a replay batch's answers and moves the replay past it. A transaction central refuses now (it lost
   * it, and cannot take it any more: a row it needs went back too, say) goes back to the dead-letter queue,
   * failed with central's reason, for the operator to see, retry once central has what it needs, or discard.
   */
  private async replayed(
    r: CentralReplay, batch: ReplayableTransaction[], results: { transaction_id: string; result: string; code?: string; reason?: string }[],
    position: number | null, started: number,
  ): Promise<null> {
    if (position !== null) r.position = Math.max(r.position ?? 0, position);
    const byId = new Map(results.map((x) => [x.transaction_id, x]));
    const refused: { seq: number; error: TxError }[] = [];
    const at = new Date().toISOString();
    const counts = { applied: 0, duplicate: 0, rejected: 0 };
    for (const t of batch) {
      const x = byId.get(t.transaction_id);
      if (x?.result === 'applied' || x?.result === 'duplicate') counts[x.result] += 1;
      else {
        counts.rejected += 1;
        refused.push({ seq: t.seq, error: { code: x?.code ?? 'no_result', message: x?.reason ?? 'central sent no result for it', at } });
      }
    }
    if (refused.length > 0) {
      // Not at central any more: a buffer lost later must count them as lost (lost-seqs.ts). First, so a crash
      // in between errs that way.
      this.o.replica.noteUnsynced?.(refused.map((f) => f.seq));
      const moved = await this.o.buffer.failSynced(refused);
      const states = await this.o.buffer.states(moved);
      for (const f of refused) {
        const t = batch.find((b) => b.seq === f.seq)!;
        const state = states.get(f.seq);
        this.o.log.error({ transaction_id: t.transaction_id, seq: t.seq, code: f.error.code, reason: f.error.message, state },
          state === 'failed'
            ? 'central lost this synced transaction (it went back in time) and refused it when it was sent again: it is failed ' +
              'again, in the dead-letter queue; retry it once central has what it needs, or discard it'
            : state === 'blocked'
              ? 'central lost this synced transaction (it went back in time) and refused it when it was sent again: it is blocked, ' +
                'in the dead-letter queue, behind a transaction it needs that central refused too; retry that one and it follows'
              : 'central lost this synced transaction (it went back in time) and refused it when it was sent again; the buffer ' +
                'no longer holds it whole (its kept copy expired, or gave way for room): compare it with central by hand');
      }
    }
    // Counted once the buffer has them: a failure above sends the batch again, and it is counted then.
    r.applied += counts.applied;
    r.duplicate += counts.duplicate;
    r.rejected += counts.rejected;
    r.after_seq = batch.at(-1)!.seq;
    this.batchSize = Math.min(this.o.batchSize, this.batchSize * 2);
    this.succeed();
    this.remember();
    this.o.log.info({ count: batch.length, duration_ms: Math.round(performance.now() - started), after_seq: r.after_seq, through_seq: r.through_seq,
      applied: r.applied, duplicate: r.duplicate, rejected: r.rejected }, 'sync replay batch');
    return null;
  }

  /** Drops synced transactions whose results the replica has caught up with (seq order, stop at the first it has not). */
  private async compact(): Promise<void> {
    // Not while a replay runs: what it has still to send must stay whole, however short of room the buffer is.
    if (this.replay) return;
    const pos = this.o.replica.position();
    const seqs: number[] = [];
    let after = 0;
    const drop = async () => {
      if (seqs.length === 0) return;
      // Recorded first: the local store must know these reached central before the buffer forgets them.
      this.o.replica.noteSynced?.(seqs);
      // Steps kept for a replay, unless the buffer is pressed for room: then the receipts keep none.
      const keep = this.o.keepSyncedSeconds && !(await this.bufferPressed()) ? this.o.keepSyncedSeconds : 0;
      await this.o.buffer.compact(seqs.at(-1)!, keep);
    };
    for (;;) {
      const synced = await this.o.buffer.list({ state: 'synced', after_seq: after, limit: 1000 });
      const ru = this.replayedUpTo;
      for (const t of synced) {
        let p = (t.central_result as { position?: number } | null)?.position ?? Infinity;
        // Sent again by the last replay: its position then, not the one from the history central lost.
        if (ru && t.seq <= ru.seq && ru.position > 0) p = Math.min(p, ru.position);
        if (p > pos) return drop();
        seqs.push(t.seq);
      }
      if (synced.length < 1000) break;
      after = synced.at(-1)!.seq;
    }
    await drop();
  }
}
