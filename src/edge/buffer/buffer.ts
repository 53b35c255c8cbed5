/**
 * The edge's durable transaction buffer (SPEC §2–§3): a log of write
 * transactions, each in one state, with the ledger
 *   accepted = applied + pending + in_flight + blocked + failed + discarded
 * (applied = synced, compacted or not). Implemented over SQLite and Redis;
 * nothing outside an implementation sees its driver.
 *
 * Every method is atomic: it either happens whole or not at all, and when its
 * promise resolves the change is on disk. Sequence numbers are assigned by
 * `append`, never reused, and every "in order" below means ascending `seq`.
 */
import type { Step } from '../../lib/api/transaction.js';

export const TX_STATES = ['pending', 'in_flight', 'blocked', 'failed', 'synced', 'discarded'] as const;
export type TxState = (typeof TX_STATES)[number];

export interface TxError {
  /** Stable code: central's error code for a rejection, or a transport kind (`network`, `timeout`, `http_503`…). */
  code: string;
  message: string;
  details?: unknown;
  at: string;
}

export interface NewTransaction {
  transaction_id: string;
  site: string;
  created_at: string;
  endpoint: string;
  steps: Step[];
  /** Seqs of earlier, not yet synced transactions that created rows this one references. */
  depends_on: number[];
  /**
   * Of `depends_on`, the ones this transaction only has to follow, not need: the last preferences upsert
   * of the same user. It waits while one of them is failed or blocked (a retried old upsert must not
   * overwrite a newer one), but a discarded one no longer holds it. Absent: none.
   */
  order_only?: number[];
}

/** How long the record of a compacted transaction is kept (its steps are not). */
export const RECEIPT_DAYS = 7;

/** What is left of a synced transaction once compacted: everything but its steps, and when it was compacted. */
/** A synced transaction as it can be sent again: what a batch carries of it. */
export type ReplayableTransaction = Pick<BufferedTransaction, 'transaction_id' | 'site' | 'seq' | 'created_at' | 'endpoint' | 'steps'>;

export type TransactionReceipt = Omit<BufferedTransaction, 'steps'> & { compacted_at: string };

export interface BufferedTransaction extends NewTransaction {
  seq: number;
  state: TxState;
  attempts: number;
  last_error: TxError | null;
  /** Size of the stored payload in bytes (what BUFFER_MAX_BYTES counts). */
  bytes: number;
  updated_at: string;
  /** Central's answer once applied: `{result, …}`. */
  central_result: unknown;
}

export type Outcome =
  | { seq: number; outcome: 'applied' | 'duplicate'; central_result?: unknown }
  | { seq: number; outcome: 'rejected'; error: TxError; central_result?: unknown }
  /** Transient: back to pending with one more attempt counted. */
  | { seq: number; outcome: 'retry'; error: TxError };

/**
 * journal_size_limit of the edge's SQLite files: after a checkpoint the WAL is cut back to this. A steady
 * WAL is ≈ 4 MB (1,000 pages); a large transaction's WAL no longer keeps its disk space afterwards.
 */
export const WAL_SIZE_LIMIT = 8 * 1024 * 1024;

export interface BufferStats {
  pending: number;
  in_flight: number;
  blocked: number;
  failed: number;
  /** Synced but still held until the replica has caught up past them. */
  synced: number;
  discarded: number;
  accepted_total: number;
  applied_total: number;
  discarded_total: number;
  /** Bytes of transactions not yet synced (pending, in flight, blocked, failed). */
  pending_bytes: number;
  /** Bytes of every transaction held (what BUFFER_MAX_BYTES caps). */
  held_bytes: number;
  /** created_at of the oldest pending or in-flight transaction, or null. */
  oldest_pending_created_at: string | null;
  last_seq: number;
}

export interface AuditRecord {
  at: string;
  transaction_id: string;
  seq: number;
  /** `seq_gap`: the buffer was found behind the local store, and its seq counter raised (skipTo). */
  action: 'discard' | 'retry' | 'seq_gap';
  actor: string;
  reason: string | null;
}

export interface ListQuery {
  state?: TxState | undefined;
  /** Only seqs greater than this (cursor). */
  after_seq?: number | undefined;
  limit: number;
}

export interface VerifyReport {
  ok: boolean;
  problems: string[];
  stats: BufferStats;
  /** Counts recomputed from the stored transactions, by state. */
  counted: Record<TxState, number>;
  /** What could not be checked this time, and why (not a problem: `ok` does not depend on it). */
  notes?: string[];
}

/** A transaction a retry left as it is, and the parent that holds it. */
export interface HeldTransaction {
  seq: number;
  transaction_id: string;
  /**
   * A transaction it needs that was discarded, directly or through its
   * parents (central can never take it: discard this one too), or, for the
   * retry of one transaction, a parent that is still failed or blocked
   * (retry that one: this one follows it).
   */
  waits_on: { seq: number; transaction_id: string; state: 'discarded' | 'failed' | 'blocked' };
}

/** Why a retry left `h` as it is, and what the operator can do: for the API's 409 and the CLI. */
export function heldReason(h: HeldTransaction): string {
  const p = h.waits_on;
  const it = `Transaction ${h.transaction_id} (seq ${h.seq})`;
  const parent = `transaction ${p.transaction_id} (seq ${p.seq})`;
  if (p.state === 'discarded') {
    return `${it} needs ${parent}, which was discarded: central can never take it, and a retry would only block it again; discard it too`;
  }
  return `${it} waits on ${parent}, which is ${p.state}: retry that one, and this one follows it`;
}

/** What an operator retry did: the seqs back to pending, in order, and those left held. */
export interface RetryOutcome {
  released: number[];
  held: HeldTransaction[];
}

export interface TransactionBuffer {
  readonly backend: 'sqlite' | 'redis';

  /**
   * Make `txs` durable, in the given order, with consecutive new seqs. All or
   * none. Ids already present are rejected with DuplicateTransactionError.
   */
  append(txs: NewTransaction[]): Promise<BufferedTransaction[]>;

  /**
   * Move the oldest pending transactions to `in_flight` and return them in
   * order: at most `maxCount`, and at most `maxBytes` (at least one is always
   * returned if any is pending). A pending transaction whose parent is failed,
   * blocked or discarded is moved to `blocked` instead and skipped, so it is
   * never sent ahead of its parent and never holds up unrelated ones.
   *
   * With `notAfterInFlight` (a batch claimed while another is still at
   * central), the claim stops before the first transaction with a parent in
   * flight: whether that parent is applied is not known yet.
   */
  claim(maxCount: number, maxBytes: number, opts?: { notAfterInFlight?: boolean }): Promise<BufferedTransaction[]>;

  /**
   * Record central's answers for claimed transactions, in seq order.
   * applied/duplicate → synced; rejected → failed with the error, and every
   * transaction (transitively) depending on it that is not synced → blocked;
   * a rejected transaction whose parent failed in this same call is blocked,
   * not failed. retry → pending, attempts + 1. Results for seqs not in flight
   * are ignored (idempotent).
   */
  settle(outcomes: Outcome[]): Promise<void>;

  /** Every in-flight transaction back to pending (start-up after a crash; abandoning a batch). Returns how many. */
  releaseInFlight(): Promise<number>;

  /**
   * An operator retry: a failed transaction back to pending, and its blocked
   * dependents with it (they follow in seq order). No-op unless failed or
   * blocked. A transaction a parent still holds is left as it is, and named
   * in `held` with that parent: a retry would only send it back to blocked.
   */
  retry(transactionId: string, actor: string): Promise<RetryOutcome>;

  /**
   * Retry every failed and blocked transaction, except those that need a
   * discarded one (directly, or through another left blocked): central can
   * never take them, and they are named in `held`.
   */
  retryAll(actor: string): Promise<RetryOutcome>;

  /**
   * An operator discard: failed or blocked → discarded (kept, with an audit
   * record). Its dependents stay blocked. Returns false when the transaction
   * is in another state.
   */
  discard(transactionId: string, actor: string, reason: string): Promise<boolean>;

  /**
   * Raises the seq counter to `seq`, so the next append gets `seq + 1`, with
   * an audit record (action `seq_gap`). For a buffer found behind the local
   * store (restored from an older backup, or a Redis that lost its data):
   * the seqs it lost are never given to new writes. False, with nothing
   * changed, when the counter is already at `seq` or beyond.
   */
  skipTo(seq: number, actor: string, reason: string): Promise<boolean>;

  get(transactionId: string): Promise<BufferedTransaction | null>;
  /**
   * A synced transaction that compaction dropped: its record without the
   * steps, kept for RECEIPT_DAYS after compaction, so a client can still ask
   * how its write ended. Null for one still held, or never seen, or older.
   */
  receipt(transactionId: string): Promise<TransactionReceipt | null>;
  list(q: ListQuery): Promise<BufferedTransaction[]>;
  /** States of the given seqs; a seq no longer held (compacted) is absent from the map. */
  states(seqs: number[]): Promise<Map<number, TxState>>;
  audit(limit: number): Promise<AuditRecord[]>;

  /** O(1): from counters kept with every change. */
  stats(): Promise<BufferStats>;

  /**
   * Drop synced transactions with seq ≤ upToSeq (the replica has them). Returns how many. With
   * `keepSeconds`, each one's steps stay with its receipt for that long (at most RECEIPT_DAYS), so it
   * can be sent again to a central restored from an older backup (`replayable`); older kept steps go.
   */
  compact(upToSeq: number, keepSeconds?: number): Promise<number>;

  /**
   * Synced transactions with seq > afterSeq, in seq order, at most `limit`, whole: those still held and
   * those compacted with their steps kept. What a central restored from a backup may have lost.
   */
  replayable(afterSeq: number, limit: number): Promise<ReplayableTransaction[]>;

  /**
   * Synced transactions central refused when they were sent again (a replay after central went back in
   * time: it lost them, and now cannot take them), each back in the dead-letter queue with its error, whole,
   * for the operator to see, retry or discard: `failed`, or `blocked` when a parent refused in the same call
   * holds it (as settle does). Found held, or compacted with its steps kept (then its receipt goes). The
   * ledger moves each from applied to failed (or blocked); pending transactions that wait on one are
   * blocked, and the dependency index names them again. Returns the seqs moved, in order: one no longer
   * whole (compacted without its steps), or not synced, is left as it is.
   */
  failSynced(refusals: { seq: number; error: TxError }[]): Promise<number[]>;

  /**
   * Bytes inside the buffer's own files that new transactions take before the files grow (SQLite: the
   * free pages compaction leaves). The disk watermark counts them as free: compaction does not hand
   * space back to the file system, and without them writes refused for MIN_FREE_DISK_BYTES stayed
   * refused after the backlog had drained. Absent: nothing to count (Redis keeps its data elsewhere).
   */
  reusableBytes?(): Promise<number>;

  /**
   * Gives the file system back what the WALs hold beyond the data (a checkpoint that truncates them):
   * asked for when the disk is below MIN_FREE_DISK_BYTES. Absent: nothing to give back.
   */
  reclaim?(): Promise<void>;

  /** Integrity check and ledger check against a full recount. */
  verify(): Promise<VerifyReport>;

  close(): Promise<void>;
}

/** What a transaction counts against BUFFER_MAX_BYTES: its stored payload plus a fixed row overhead. */
const stepsJsonCache = new WeakMap<Step[], string>();

/**
 * The JSON text of a transaction's steps, made once per steps array: the
 * size check, the group committer and the buffer's row all need it, and it is
 * the largest string a write makes. Steps are never changed once drafted.
 */
export function stepsJson(steps: Step[]): string {
  let json = stepsJsonCache.get(steps);
  if (json === undefined) {
    json = JSON.stringify(steps);
    stepsJsonCache.set(steps, json);
  }
  return json;
}

/** Records the JSON text `steps` was parsed from (the storage thread receives steps as text). */
export function rememberStepsJson(steps: Step[], json: string): void {
  stepsJsonCache.set(steps, json);
}

export function transactionBytes(tx: Pick<NewTransaction, 'steps' | 'endpoint'>, json = stepsJson(tx.steps)): number {
  return Buffer.byteLength(json) + tx.endpoint.length + 128;
}

export class DuplicateTransactionError extends Error {
  constructor(readonly transactionId: string) {
    super(`transaction ${transactionId} is already in the buffer`);
  }
}

/**
 * The buffer's seq counter is below a seq it has already given out: it lost
 * data while the daemon ran (a Redis restarted without it). Nothing was
 * appended; see lost-seqs.ts for what the edge does about it.
 */
export class BufferBehindError extends Error {
  constructor(
    /** The buffer's last seq now. */
    readonly last: number,
    /** The highest seq it had given out before. */
    readonly expected: number,
  ) {
    super(`the buffer's last seq is ${last}, but it had given out seqs up to ${expected}: it has lost data`);
  }
}

/** A buffer that cannot be opened or fails its integrity check: the daemon must not accept writes. */
export class BufferUnavailableError extends Error {}

/**
 * The storage stopped while a call was being carried out: it may or may not
 * have taken effect (a write may be on disk). Not "nothing was stored".
 */
export class OutcomeUnknownError extends BufferUnavailableError {}

/**
 * The storage is up but may lose what it is given (a Redis whose settings
 * changed while the edge ran), and weak durability is not allowed: nothing
 * was appended.
 */
export class BufferNotDurableError extends BufferUnavailableError {}

/**
 * Another daemon holds this buffer's lease (Redis: two daemons of one site on one Redis): this process
 * must not take work from it, or two sync engines would send one backlog out of order.
 */
export class BufferLeaseLostError extends BufferUnavailableError {}

const UNAVAILABLE_CODES = /^(SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|CORRUPT|NOTADB|READONLY)|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT)/;

/** True for errors that mean the storage under the buffer is not answering (not a bug, not bad input). */
export function isBufferUnavailable(err: unknown): boolean {
  if (err instanceof BufferUnavailableError) return true;
  const e = err as { code?: unknown; name?: unknown };
  return (typeof e?.code === 'string' && UNAVAILABLE_CODES.test(e.code)) || e?.name === 'MaxRetriesPerRequestError';
}
