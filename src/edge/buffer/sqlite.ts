/**
 * The default buffer: one SQLite file in WAL mode with synchronous=FULL, so a
 * commit is on disk before its promise resolves. State counts and byte sums
 * are kept in a counters table in the same transactions, so stats() is O(1)
 * whatever the backlog. No SQLite transaction is ever held across an await.
 */
import { withFileProblem } from '../data-dir-lock.js';
import Database from 'better-sqlite3';
import {
  type TxError,
  BufferNotDurableError,
  BufferUnavailableError,
  DuplicateTransactionError,
  TX_STATES,
  stepsJson,
  transactionBytes,
  type AuditRecord,
  type BufferStats,
  type BufferedTransaction,
  type ListQuery,
  type HeldTransaction,
  type NewTransaction,
  type Outcome,
  type ReplayableTransaction,
  type RetryOutcome,
  type TransactionBuffer,
  type TransactionReceipt,
  type TxState,
  type VerifyReport,
  RECEIPT_DAYS,
  WAL_SIZE_LIMIT,
} from './buffer.js';
import { FileGuard, bufferFileGone } from './file-guard.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tx (
  seq            INTEGER PRIMARY KEY,
  transaction_id TEXT NOT NULL UNIQUE,
  site           TEXT NOT NULL,
  endpoint       TEXT NOT NULL,
  created_at     TEXT NOT NULL,
  steps          TEXT NOT NULL,
  depends_on     TEXT NOT NULL,
  bytes          INTEGER NOT NULL,
  state          TEXT NOT NULL CHECK (state IN ('pending','in_flight','blocked','failed','synced','discarded')),
  attempts       INTEGER NOT NULL DEFAULT 0,
  last_error     TEXT,
  central_result TEXT,
  updated_at     TEXT NOT NULL,
  order_only     TEXT
);
CREATE INDEX IF NOT EXISTS tx_state_seq ON tx (state, seq);
CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- What compaction leaves of a synced transaction (no steps), for RECEIPT_DAYS.
CREATE TABLE IF NOT EXISTS receipt (
  transaction_id TEXT PRIMARY KEY,
  seq            INTEGER NOT NULL,
  site           TEXT NOT NULL,
  endpoint       TEXT NOT NULL,
  created_at     TEXT NOT NULL,
  depends_on     TEXT NOT NULL,
  bytes          INTEGER NOT NULL,
  attempts       INTEGER NOT NULL,
  last_error     TEXT,
  central_result TEXT,
  updated_at     TEXT NOT NULL,
  compacted_at   TEXT NOT NULL,
  steps          TEXT,
  order_only     TEXT
);
CREATE INDEX IF NOT EXISTS receipt_compacted_at ON receipt (compacted_at);
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY, at TEXT NOT NULL, transaction_id TEXT NOT NULL, seq INTEGER NOT NULL,
  action TEXT NOT NULL, actor TEXT NOT NULL, reason TEXT
);
`;

/** Receipts whose steps are kept (compact's keepSeconds): by seq for replayable, by age to drop them. */
const KEPT_INDEXES = `
CREATE INDEX IF NOT EXISTS receipt_kept_seq ON receipt (seq) WHERE steps IS NOT NULL;
CREATE INDEX IF NOT EXISTS receipt_kept_at ON receipt (compacted_at) WHERE steps IS NOT NULL;
`;

/** States of a parent that hold a child back: it waits behind them, blocked. */
const HOLDING: ReadonlySet<TxState | undefined> = new Set<TxState>(['failed', 'blocked']);

/** Synced transactions dropped per SQLite transaction by compact(). */
const COMPACT_CHUNK = 5000;

/**
 * Who waits on whom (depends_on, order-only parents included), so a failure, a retry or a discard visits
 * a transaction's dependents, not the whole backlog after it. The counter `dep_through` is the last seq
 * whose dependencies are in it: every append moves it with `last_seq`. A build from before the index
 * moves only `last_seq` (a buffer it made, or one it was downgraded to and wrote), so at open the
 * transactions after `dep_through` are indexed; with no `dep_through` or no table yet, all of them. Done in one
 * transaction with the table's creation: an open cut short (a full disk, a kill) leaves neither.
 */
const DEP_TABLE = 'CREATE TABLE IF NOT EXISTS dep (parent INTEGER NOT NULL, child INTEGER NOT NULL, PRIMARY KEY (parent, child)) WITHOUT ROWID';
const INDEX_DEPS_AFTER = `INSERT OR IGNORE INTO dep (parent, child)
  SELECT CAST(j.value AS INTEGER), tx.seq FROM tx, json_each(tx.depends_on) AS j
  WHERE tx.seq > ? AND tx.depends_on <> '[]' AND tx.state <> 'synced'`;

const COUNTERS = [
  'last_seq', 'accepted_total', 'applied_total', 'discarded_total',
  ...TX_STATES.map((s) => `n_${s}`), ...TX_STATES.map((s) => `bytes_${s}`),
];

interface Row {
  seq: number;
  transaction_id: string;
  site: string;
  endpoint: string;
  created_at: string;
  steps: string;
  depends_on: string;
  /** JSON array, or NULL for none (and on a buffer made before the column). */
  order_only?: string | null;
  bytes: number;
  state: TxState;
  attempts: number;
  last_error: string | null;
  central_result: string | null;
  updated_at: string;
}

const fromRow = (r: Row): BufferedTransaction => ({
  seq: r.seq,
  transaction_id: r.transaction_id,
  site: r.site,
  endpoint: r.endpoint,
  created_at: r.created_at,
  steps: JSON.parse(r.steps),
  depends_on: JSON.parse(r.depends_on),
  ...(r.order_only ? { order_only: JSON.parse(r.order_only) as number[] } : {}),
  bytes: r.bytes,
  state: r.state,
  attempts: r.attempts,
  last_error: r.last_error ? JSON.parse(r.last_error) : null,
  central_result: r.central_result ? JSON.parse(r.central_result) : null,
  updated_at: r.updated_at,
});

/** States of the given seqs through `SELECT state FROM tx WHERE seq = ?` (also run from a read-only connection). */
export const STATE_OF_SQL = 'SELECT state FROM tx WHERE seq = ?';
export function readStates(stateOf: Database.Statement, seqs: number[]): Map<number, TxState> {
  const out = new Map<number, TxState>();
  for (const s of new Set(seqs)) {
    const r = stateOf.get(s) as { state: TxState } | undefined;
    if (r) out.set(s, r.state);
  }
  return out;
}

/** Receipts compacted before this are no longer answered, and go at the next compaction. */
const receiptCutoff = (now: Date) => new Date(now.getTime() - RECEIPT_DAYS * 86_400_000).toISOString();

const BLOCKING: ReadonlySet<TxState> = new Set(['failed', 'blocked', 'discarded']);
const NONE_HELD: ReadonlyMap<number, HeldTransaction['waits_on']> = new Map();

export class SqliteBuffer implements TransactionBuffer {
  readonly backend = 'sqlite' as const;
  private readonly db: Database.Database;
  private readonly stmt;
  /** Is the file at `path` still the one open here? Checked before every append. */
  private readonly guard: FileGuard;

  /** Transactions up to this seq were compacted by builds that dropped their edges in the dependency index. */
  private readonly depsKeptAfter: number;

  constructor(readonly path: string) {
    try {
      this.db = new Database(path);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma('busy_timeout = 5000');
      // After a checkpoint the WAL is cut back to this, so a large compaction's WAL does not keep its disk space.
      this.db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT}`);
      // No integrity scan here: on a million-transaction buffer it costs a second at every start.
      // A file that is not a database fails right here; `opsdb buffer verify` runs the full check.
      this.db.exec(SCHEMA);
      // A buffer made before order_only existed gets the column (NULL: no order-only parent).
      const cols = this.db.prepare('PRAGMA table_info(tx)').all() as { name: string }[];
      if (!cols.some((c) => c.name === 'order_only')) this.db.exec('ALTER TABLE tx ADD COLUMN order_only TEXT');
      // And one made before receipts kept steps gets that column (NULL: not kept).
      const receiptCols = this.db.prepare('PRAGMA table_info(receipt)').all() as { name: string }[];
      if (!receiptCols.some((c) => c.name === 'steps')) this.db.exec('ALTER TABLE receipt ADD COLUMN steps TEXT');
      if (!receiptCols.some((c) => c.name === 'order_only')) this.db.exec('ALTER TABLE receipt ADD COLUMN order_only TEXT');
      this.db.exec(KEPT_INDEXES);
      this.db.transaction(() => {
        const made = this.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dep'`).get() === undefined;
        this.db.exec(DEP_TABLE);
        const counter = (name: string) => (this.db.prepare('SELECT value FROM counter WHERE name = ?').get(name) as { value: number } | undefined)?.value;
        const last = counter('last_seq') ?? 0;
        const recorded = counter('dep_through');
        const through = made ? 0 : recorded ?? 0;
        if (through < last) this.db.prepare(INDEX_DEPS_AFTER).run(through);
        if (recorded !== last) this.db.prepare("INSERT OR REPLACE INTO counter (name, value) VALUES ('dep_through', ?)").run(last);
        // Builds before this one dropped a compacted parent's edges: failSynced finds the dependents of a
        // transaction up to this seq by reading the backlog, of a later one in the index.
        if (counter('deps_kept_after') === undefined) {
          this.db.prepare("INSERT INTO counter (name, value) VALUES ('deps_kept_after', ?)").run(last);
        }
      }).immediate();
      const seed = this.db.prepare('INSERT OR IGNORE INTO counter (name, value) VALUES (?, 0)');
      this.db.transaction(() => COUNTERS.forEach((c) => seed.run(c))).immediate();
      this.depsKeptAfter = (this.db.prepare("SELECT value FROM counter WHERE name = 'deps_kept_after'").get() as { value: number }).value;
      this.guard = new FileGuard(path);
    } catch (err) {
      const said = withFileProblem(path, err);
      throw new BufferUnavailableError(
        said === err ? `cannot open the SQLite buffer at ${path}: ${(err as Error).message}` : `the SQLite buffer: ${(said as Error).message}`,
        { cause: err },
      );
    }
    const db = this.db;
    this.stmt = {
      insert: db.prepare(`INSERT INTO tx (seq, transaction_id, site, endpoint, created_at, steps, depends_on, order_only, bytes, state, updated_at)
                          VALUES (@seq, @transaction_id, @site, @endpoint, @created_at, @steps, @depends_on, @order_only, @bytes, 'pending', @updated_at)`),
      bump: db.prepare('UPDATE counter SET value = value + ? WHERE name = ?'),
      counter: db.prepare('SELECT name, value FROM counter'),
      byId: db.prepare('SELECT * FROM tx WHERE transaction_id = ?'),
      bySeq: db.prepare('SELECT * FROM tx WHERE seq = ?'),
      stepsOf: db.prepare('SELECT steps FROM tx WHERE seq = ?'),
      pendingFrom: db.prepare(`SELECT * FROM tx WHERE state = 'pending' AND seq > ? ORDER BY seq LIMIT ?`),
      stateOf: db.prepare(STATE_OF_SQL),
      setState: db.prepare('UPDATE tx SET state = ?, updated_at = ? WHERE seq = ?'),
      settle: db.prepare(`UPDATE tx SET state = @state, attempts = attempts + @inc, last_error = coalesce(@last_error, last_error),
                          central_result = coalesce(@central_result, central_result), updated_at = @now WHERE seq = @seq`),
      inState: db.prepare('SELECT seq, bytes FROM tx WHERE state = ? ORDER BY seq'),
      retryable: db.prepare('SELECT seq, transaction_id, state, bytes, depends_on, order_only FROM tx WHERE state = ? ORDER BY seq'),
      idOf: db.prepare('SELECT transaction_id FROM tx WHERE seq = ?'),
      addDep: db.prepare('INSERT OR IGNORE INTO dep (parent, child) VALUES (?, ?)'),
      children: db.prepare(`SELECT tx.seq, tx.state, tx.bytes, tx.depends_on, tx.order_only FROM dep JOIN tx ON tx.seq = dep.child
                            WHERE dep.parent = ? AND tx.state IN ('pending','in_flight','blocked')`),
      // Edges whose child was compacted. One whose parent was compacted stays while its child is held: a synced
      // parent holds nobody back, but failSynced may put it back, and then it needs its dependents again.
      dropDeps: db.prepare(`DELETE FROM dep WHERE parent <= ? AND NOT EXISTS (SELECT 1 FROM tx WHERE tx.seq = dep.child)`),
      // Two index probes on (state, seq); an IN list would scan with a million rows held.
      oldest: db.prepare(`SELECT created_at AS t FROM (
          SELECT * FROM (SELECT seq, created_at FROM tx WHERE state = 'pending' ORDER BY seq LIMIT 1)
          UNION ALL SELECT * FROM (SELECT seq, created_at FROM tx WHERE state = 'in_flight' ORDER BY seq LIMIT 1))
        ORDER BY seq LIMIT 1`),
      audit: db.prepare('INSERT INTO audit (at, transaction_id, seq, action, actor, reason) VALUES (?, ?, ?, ?, ?, ?)'),
      compactable: db.prepare(`SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM tx WHERE state = 'synced' AND seq <= ?`),
      // The last seq of the next chunk to compact: the chunk-th synced transaction up to the given seq, or the last one.
      compactChunkEnd: db.prepare(`SELECT max(seq) AS m FROM (SELECT seq FROM tx WHERE state = 'synced' AND seq <= ? ORDER BY seq LIMIT ?)`),
      compact: db.prepare(`DELETE FROM tx WHERE state = 'synced' AND seq <= ?`),
      keepReceipts: db.prepare(`INSERT OR REPLACE INTO receipt
          (transaction_id, seq, site, endpoint, created_at, depends_on, bytes, attempts, last_error, central_result, updated_at, compacted_at, steps,
           order_only)
          SELECT transaction_id, seq, site, endpoint, created_at, depends_on, bytes, attempts, last_error, central_result, updated_at, @now,
                 CASE WHEN @keep THEN steps END, CASE WHEN @keep THEN order_only END
            FROM tx WHERE state = 'synced' AND seq <= @upTo`),
      dropReceipts: db.prepare('DELETE FROM receipt WHERE compacted_at < ?'),
      dropKeptSteps: db.prepare('UPDATE receipt SET steps = NULL WHERE steps IS NOT NULL AND compacted_at < ?'),
      replayable: db.prepare(`SELECT transaction_id, site, seq, created_at, endpoint, steps FROM (
          SELECT * FROM (SELECT transaction_id, site, seq, created_at, endpoint, steps FROM receipt
                          WHERE steps IS NOT NULL AND seq > @after ORDER BY seq LIMIT @limit)
          UNION ALL
          SELECT * FROM (SELECT transaction_id, site, seq, created_at, endpoint, steps FROM tx
                          WHERE state = 'synced' AND seq > @after ORDER BY seq LIMIT @limit))
        ORDER BY seq LIMIT @limit`),
      keptBySeq: db.prepare(`SELECT * FROM receipt WHERE seq = ? AND steps IS NOT NULL`),
      insertFailed: db.prepare(`INSERT INTO tx (seq, transaction_id, site, endpoint, created_at, steps, depends_on, order_only, bytes, state,
                                                attempts, last_error, central_result, updated_at)
                                VALUES (@seq, @transaction_id, @site, @endpoint, @created_at, @steps, @depends_on, @order_only, @bytes, @state,
                                        @attempts, @last_error, @central_result, @updated_at)`),
      dropReceipt: db.prepare('DELETE FROM receipt WHERE transaction_id = ?'),
      // Central's answer then (applied, at a position of the history it lost) no longer stands.
      refuseSynced: db.prepare('UPDATE tx SET state = @state, last_error = @last_error, central_result = NULL, updated_at = @now WHERE seq = @seq'),
      parentExists: db.prepare('SELECT 1 FROM tx WHERE seq = ?'),
      // Transactions still to send that name one of the seqs (a JSON array) in depends_on: compaction dropped those edges.
      indexChildrenOf: db.prepare(`INSERT OR IGNORE INTO dep (parent, child)
          SELECT CAST(j.value AS INTEGER), tx.seq FROM tx, json_each(tx.depends_on) AS j
          WHERE tx.seq > @after AND tx.state IN ('pending','in_flight','blocked','failed') AND tx.depends_on <> '[]'
            AND j.value IN (SELECT value FROM json_each(@parents))`),
      // Not the kept steps: a receipt is the record without them.
      receipt: db.prepare(`SELECT transaction_id, seq, site, endpoint, created_at, depends_on, bytes, attempts, last_error, central_result,
                                  updated_at, compacted_at FROM receipt WHERE transaction_id = ? AND compacted_at >= ?`),
    };
  }

  private counters(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.stmt.counter.all() as { name: string; value: number }[]) out[r.name] = r.value;
    return out;
  }

  /** Moves one row between states, keeping counts and byte sums. Inside a transaction only. */
  private move(seq: number, from: TxState, to: TxState, bytes: number, now: string): void {
    this.stmt.setState.run(to, now, seq);
    this.shift(from, to, bytes);
  }

  /** Counter changes of the running `atomic` call, written once at its end (not four UPDATEs a row). */
  private readonly deltas = new Map<string, number>();

  private shift(from: TxState, to: TxState, bytes: number, n = 1): void {
    for (const [name, d] of [[`n_${from}`, -n], [`n_${to}`, n], [`bytes_${from}`, -bytes], [`bytes_${to}`, bytes]] as const) this.tally(name, d);
  }

  private tally(name: string, d: number): void {
    this.deltas.set(name, (this.deltas.get(name) ?? 0) + d);
  }

  /** Runs `fn` in one SQLite transaction, with the counter changes it made by `shift`. */
  private atomic<T>(fn: () => T): T {
    return this.db.transaction(() => {
      try {
        const out = fn();
        for (const [name, d] of this.deltas) if (d !== 0) this.stmt.bump.run(d, name);
        return out;
      } finally {
        this.deltas.clear();
      }
    }).immediate();
  }

  async append(txs: NewTransaction[]): Promise<BufferedTransaction[]> {
    // Removed or replaced under this process, the file would take the commit, and a restart would lose it.
    const gone = this.guard.problem();
    if (gone) throw new BufferNotDurableError(bufferFileGone(gone));
    const now = new Date().toISOString();
    const run = this.db.transaction(() => {
      let seq = this.counters().last_seq!;
      let total = 0;
      const out: BufferedTransaction[] = [];
      for (const t of txs) {
        seq += 1;
        const steps = stepsJson(t.steps);
        const bytes = transactionBytes(t, steps);
        try {
          this.stmt.insert.run({
            transaction_id: t.transaction_id, site: t.site, endpoint: t.endpoint, created_at: t.created_at, seq, steps,
            depends_on: JSON.stringify(t.depends_on), order_only: t.order_only?.length ? JSON.stringify(t.order_only) : null,
            bytes, updated_at: now,
          });
        } catch (err) {
          if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') throw new DuplicateTransactionError(t.transaction_id);
          throw err;
        }
        for (const parent of t.depends_on) this.stmt.addDep.run(parent, seq);
        total += bytes;
        out.push({ ...t, seq, state: 'pending', attempts: 0, last_error: null, bytes, updated_at: now, central_result: null });
      }
      const added = seq - (this.counters().last_seq ?? 0);
      this.stmt.bump.run(added, 'last_seq');
      this.stmt.bump.run(added, 'dep_through');
      this.stmt.bump.run(txs.length, 'accepted_total');
      this.stmt.bump.run(txs.length, 'n_pending');
      this.stmt.bump.run(total, 'bytes_pending');
      return out;
    });
    return run.immediate();
  }

  async claim(maxCount: number, maxBytes: number, opts: { notAfterInFlight?: boolean } = {}): Promise<BufferedTransaction[]> {
    const now = new Date().toISOString();
    return this.atomic(() => {
      const out: BufferedTransaction[] = [];
      let bytes = 0;
      let after = 0;
      const blocked = new Set<number>();
      while (out.length < maxCount) {
        const rows = this.stmt.pendingFrom.all(after, Math.max(maxCount * 2, 64)) as Row[];
        if (rows.length === 0) break;
        for (const r of rows) {
          after = r.seq;
          const deps = JSON.parse(r.depends_on) as number[];
          const orderOnly = r.order_only ? (JSON.parse(r.order_only) as number[]) : [];
          const parents = deps.map((d) => (blocked.has(d) ? 'blocked' : ((this.stmt.stateOf.get(d) as { state: TxState } | undefined)?.state ?? 'synced')));
          const stuck = parents.some((state, i) => BLOCKING.has(state) && !(state === 'discarded' && (orderOnly.includes(deps[i]!) || this.createsNothing(deps[i]!))));
          if (!stuck && opts.notAfterInFlight && parents.includes('in_flight')) return out;
          if (stuck) {
            this.move(r.seq, 'pending', 'blocked', r.bytes, now);
            blocked.add(r.seq);
            continue;
          }
          if (out.length >= maxCount || (out.length > 0 && bytes + r.bytes > maxBytes)) return out;
          this.move(r.seq, 'pending', 'in_flight', r.bytes, now);
          bytes += r.bytes;
          out.push({ ...fromRow(r), state: 'in_flight' });
        }
      }
      return out;
    });
  }

  async settle(outcomes: Outcome[]): Promise<void> {
    const now = new Date().toISOString();
    const sorted = [...outcomes].sort((a, b) => a.seq - b.seq);
    this.atomic(() => {
      const failedNow = new Set<number>();
      for (const o of sorted) {
        const row = this.stmt.bySeq.get(o.seq) as Row | undefined;
        if (!row || row.state !== 'in_flight') continue;
        const deps = JSON.parse(row.depends_on) as number[];
        const parentFailed = deps.some((d) => failedNow.has(d));
        let to: TxState;
        if (o.outcome === 'applied' || o.outcome === 'duplicate') to = 'synced';
        else if (o.outcome === 'rejected') to = parentFailed ? 'blocked' : 'failed';
        else to = parentFailed ? 'blocked' : 'pending';
        this.stmt.settle.run({
          seq: o.seq,
          state: to,
          inc: o.outcome === 'retry' ? 1 : 1,
          last_error: 'error' in o ? JSON.stringify(o.error) : null,
          central_result: 'central_result' in o && o.central_result !== undefined ? JSON.stringify(o.central_result) : null,
          now,
        });
        this.shift('in_flight', to, row.bytes);
        if (to === 'synced') this.stmt.bump.run(1, 'applied_total');
        if (to === 'failed' || to === 'blocked') failedNow.add(o.seq);
      }
      if (failedNow.size > 0) this.blockDependents(failedNow, now);
    });
  }

  /**
   * Marks every not-yet-synced transaction depending (transitively) on one in `stuck` as blocked. It
   * walks the dependency index from the stuck ones: the work grows with their dependents, not with the
   * backlog (a rejection in a million pending transactions visits only what waits on it).
   */
  private blockDependents(stuck: Set<number>, now: string): void {
    this.walkDependents([...stuck], (d) => {
      if (stuck.has(d.seq)) return false;
      stuck.add(d.seq);
      if (d.state === 'pending') this.move(d.seq, 'pending', 'blocked', d.bytes, now);
      return true;
    });
  }

  /**
   * Visits the not-yet-synced dependents of `from` through the dependency index, and theirs in turn
   * for each one `take` takes (returns true for).
   */
  private walkDependents(from: number[], take: (d: Row) => boolean): void {
    const queue = [...from];
    for (let p = queue.pop(); p !== undefined; p = queue.pop()) {
      for (const d of this.stmt.children.all(p) as Row[]) if (take(d)) queue.push(d.seq);
    }
  }

  async releaseInFlight(): Promise<number> {
    const now = new Date().toISOString();
    return this.atomic(() => {
      const rows = this.stmt.inState.all('in_flight') as { seq: number; bytes: number }[];
      for (const r of rows) this.move(r.seq, 'in_flight', 'pending', r.bytes, now);
      return rows.length;
    });
  }

  async retry(transactionId: string, actor: string): Promise<RetryOutcome> {
    const now = new Date().toISOString();
    return this.atomic(() => {
      const row = this.stmt.byId.get(transactionId) as Row | undefined;
      if (!row || (row.state !== 'failed' && row.state !== 'blocked')) return { released: [], held: [] };
      let by = this.holder(row, NONE_HELD, true);
      // Through parents blocked themselves, to the one an operator can act on: one failed, or discarded.
      while (by?.state === 'blocked') {
        const up = this.holder(this.stmt.bySeq.get(by.seq) as Row, NONE_HELD, true);
        if (!up) break;
        by = up;
      }
      if (by) return { released: [], held: [{ seq: row.seq, transaction_id: row.transaction_id, waits_on: by }] };
      this.move(row.seq, row.state, 'pending', row.bytes, now);
      this.stmt.audit.run(now, row.transaction_id, row.seq, 'retry', actor, null);
      return { released: [row.seq, ...this.releaseBlocked(row.seq, new Set([row.seq]), () => false, now)], held: [] };
    });
  }

  async retryAll(actor: string): Promise<RetryOutcome> {
    const now = new Date().toISOString();
    return this.atomic(() => {
      const rows = (['failed', 'blocked'] as const).flatMap((state) => this.stmt.retryable.all(state) as Row[]).sort((a, b) => a.seq - b.seq);
      const released: number[] = [];
      const held: HeldTransaction[] = [];
      const heldSeqs = new Map<number, HeldTransaction['waits_on']>();
      for (const r of rows) {
        // In seq order: a parent is settled (released or held) before what waits on it.
        const by = this.holder(r, heldSeqs, false);
        if (by) {
          heldSeqs.set(r.seq, by);
          held.push({ seq: r.seq, transaction_id: r.transaction_id, waits_on: by });
          continue;
        }
        this.move(r.seq, r.state, 'pending', r.bytes, now);
        released.push(r.seq);
      }
      if (released.length > 0) this.stmt.audit.run(now, '*', 0, 'retry', actor, `retry-all: ${released.length}`);
      return { released, held };
    });
  }

  /**
   * The parent that would send `r` straight back to blocked: one it needs (not one it only follows) that
   * was discarded, one in `held` (then the discarded one that holds that parent), and with `failedToo` one
   * still failed or blocked. Null if none.
   */
  private holder(r: Row, held: ReadonlyMap<number, HeldTransaction['waits_on']>, failedToo: boolean): HeldTransaction['waits_on'] | null {
    const orderOnly = r.order_only ? (JSON.parse(r.order_only) as number[]) : [];
    for (const d of JSON.parse(r.depends_on) as number[]) {
      const through = held.get(d);
      if (through) return through;
      const state = (this.stmt.stateOf.get(d) as { state: TxState } | undefined)?.state;
      const holds = (failedToo && (state === 'failed' || state === 'blocked'))
        || (state === 'discarded' && !orderOnly.includes(d) && !this.createsNothing(d));
      if (holds) {
        const { transaction_id } = this.stmt.idOf.get(d) as { transaction_id: string };
        return { seq: d, transaction_id, state: state as 'discarded' | 'failed' | 'blocked' };
      }
    }
    return null;
  }

  async discard(transactionId: string, actor: string, reason: string): Promise<boolean> {
    const now = new Date().toISOString();
    return this.atomic(() => {
      const row = this.stmt.byId.get(transactionId) as Row | undefined;
      if (!row || (row.state !== 'failed' && row.state !== 'blocked')) return false;
      this.move(row.seq, row.state, 'discarded', row.bytes, now);
      this.stmt.bump.run(1, 'discarded_total');
      this.stmt.audit.run(now, row.transaction_id, row.seq, 'discard', actor, reason);
      // Those that only had to follow it are free now, and so is what waits on them.
      const nothing = this.createsNothing(row.seq);
      const follows = (d: Row) => nothing || (d.order_only ? (JSON.parse(d.order_only) as number[]).includes(row.seq) : false);
      this.releaseBlocked(row.seq, new Set(), follows, now);
      return true;
    });
  }

  /**
   * True when the transaction creates no row (only updates and upserts): none can need it, and one that
   * waits on it only follows it. Written by this build, such a wait is in order_only; builds before
   * 2026-11-26 made a write wait on the row's last writer (a finish, a finalize, a preferences upsert), and
   * their buffers still hold such waits. Read only for a discarded parent.
   */
  private createsNothing(seq: number): boolean {
    const r = this.stmt.stepsOf.get(seq) as { steps: string } | undefined;
    return r !== undefined && (JSON.parse(r.steps) as { op: string }[]).every((st) => st.op !== 'create' && st.op !== 'bulk_create');
  }

  /**
   * Sends blocked dependents of `from` back to pending: those `starts` names, and those waiting on one
   * in `freed` (which grows as it goes, so whole chains go), found through the dependency index; not one
   * another parent still holds (the claim would block it again). Returns their seqs, in order.
   */
  private releaseBlocked(from: number, freed: Set<number>, starts: (d: Row) => boolean, now: string): number[] {
    const released: number[] = [];
    this.walkDependents([from], (d) => {
      if (d.state !== 'blocked' || freed.has(d.seq)) return false;
      if (!starts(d) && !(JSON.parse(d.depends_on) as number[]).some((x) => freed.has(x))) return false;
      if (this.holder(d, NONE_HELD, true)) return false;
      freed.add(d.seq);
      released.push(d.seq);
      this.move(d.seq, 'blocked', 'pending', d.bytes, now);
      return true;
    });
    return released.sort((a, b) => a - b);
  }

  async skipTo(seq: number, actor: string, reason: string): Promise<boolean> {
    const now = new Date().toISOString();
    return this.atomic(() => {
      const last = this.counters().last_seq!;
      if (last >= seq) return false;
      this.stmt.bump.run(seq - last, 'last_seq');
      this.stmt.audit.run(now, '-', seq, 'seq_gap', actor, reason);
      return true;
    });
  }

  async get(transactionId: string): Promise<BufferedTransaction | null> {
    const r = this.stmt.byId.get(transactionId) as Row | undefined;
    return r ? fromRow(r) : null;
  }

  async replayable(afterSeq: number, limit: number): Promise<ReplayableTransaction[]> {
    const rows = this.stmt.replayable.all({ after: afterSeq, limit }) as (Omit<ReplayableTransaction, 'steps'> & { steps: string })[];
    return rows.map((r) => ({ ...r, steps: JSON.parse(r.steps) as ReplayableTransaction['steps'] }));
  }

  async failSynced(refusals: { seq: number; error: TxError }[]): Promise<number[]> {
    const now = new Date().toISOString();
    return this.atomic(() => {
      const moved = new Set<number>();
      const revived: number[] = [];
      const stateOf = (seq: number) => (this.stmt.stateOf.get(seq) as { state: TxState } | undefined)?.state;
      for (const r of [...refusals].sort((a, b) => a.seq - b.seq)) {
        if (moved.has(r.seq)) continue;
        const held = this.stmt.bySeq.get(r.seq) as Row | undefined;
        const kept = held ? undefined : this.stmt.keptBySeq.get(r.seq) as (Row & { compacted_at: string }) | undefined;
        const row = held ?? kept;
        if (!row || (held && held.state !== 'synced')) continue;
        const deps = JSON.parse(row.depends_on) as number[];
        // Blocked behind a parent that central refused (in this call or an earlier one) or that waits itself,
        // as a rejection is in settle: a retry of that parent takes it along.
        const to: TxState = deps.some((d) => moved.has(d) || HOLDING.has(stateOf(d))) ? 'blocked' : 'failed';
        const lastError = JSON.stringify(r.error);
        if (held) {
          this.stmt.refuseSynced.run({ seq: r.seq, state: to, last_error: lastError, now });
          this.shift('synced', to, row.bytes);
        } else {
          this.stmt.insertFailed.run({ ...row, state: to, last_error: lastError, central_result: null, updated_at: now });
          this.stmt.dropReceipt.run(row.transaction_id);
          revived.push(r.seq);
          // Held again: counted in its state (compaction had taken it out of the synced ones).
          this.tally(`n_${to}`, 1);
          this.tally(`bytes_${to}`, row.bytes);
        }
        this.tally('applied_total', -1);
        for (const d of deps) if (this.stmt.parentExists.get(d)) this.stmt.addDep.run(d, r.seq);
        moved.add(r.seq);
      }
      // Compaction keeps a parent's edges while its children are held; a build before that did not (up to
      // deps_kept_after): their dependents still held are found by their depends_on, a read of the backlog.
      const legacy = revived.filter((seq) => seq <= this.depsKeptAfter);
      if (legacy.length > 0) this.stmt.indexChildrenOf.run({ after: legacy[0], parents: JSON.stringify(legacy) });
      if (moved.size > 0) this.blockDependents(new Set(moved), now);
      return [...moved];
    });
  }

  async receipt(transactionId: string): Promise<TransactionReceipt | null> {
    const r = this.stmt.receipt.get(transactionId, receiptCutoff(new Date())) as (Omit<Row, 'steps' | 'state'> & { compacted_at: string }) | undefined;
    if (!r) return null;
    const { steps: _, ...t } = fromRow({ ...r, steps: '[]', state: 'synced' });
    return { ...t, compacted_at: r.compacted_at };
  }

  async list(q: ListQuery): Promise<BufferedTransaction[]> {
    const rows = q.state
      ? this.db.prepare('SELECT * FROM tx WHERE state = ? AND seq > ? ORDER BY seq LIMIT ?').all(q.state, q.after_seq ?? 0, q.limit)
      : this.db.prepare('SELECT * FROM tx WHERE seq > ? ORDER BY seq LIMIT ?').all(q.after_seq ?? 0, q.limit);
    return (rows as Row[]).map(fromRow);
  }

  async states(seqs: number[]): Promise<Map<number, TxState>> {
    return readStates(this.stmt.stateOf, seqs);
  }

  async audit(limit: number): Promise<AuditRecord[]> {
    return this.db.prepare('SELECT at, transaction_id, seq, action, actor, reason FROM audit ORDER BY id DESC LIMIT ?').all(limit) as AuditRecord[];
  }

  async stats(): Promise<BufferStats> {
    return this.statsNow();
  }

  /** The stats, read at once (inside a caller's transaction, from its snapshot). */
  private statsNow(): BufferStats {
    const c = this.counters();
    const oldest = (this.stmt.oldest.get() as { t: string } | undefined)?.t ?? null;
    return {
      pending: c.n_pending!, in_flight: c.n_in_flight!, blocked: c.n_blocked!, failed: c.n_failed!,
      synced: c.n_synced!, discarded: c.n_discarded!,
      accepted_total: c.accepted_total!, applied_total: c.applied_total!, discarded_total: c.discarded_total!,
      pending_bytes: c.bytes_pending! + c.bytes_in_flight! + c.bytes_blocked! + c.bytes_failed!,
      held_bytes: TX_STATES.reduce((s, st) => s + c[`bytes_${st}`]!, 0),
      oldest_pending_created_at: oldest,
      last_seq: c.last_seq!,
    };
  }

  /**
   * In chunks of COMPACT_CHUNK transactions, one SQLite transaction each: every page a chunk frees or
   * changes goes through the WAL, and one transaction over a large backlog grew the WAL (and took the
   * disk) by about the size of what it dropped, on a disk that was already short of space.
   */
  async compact(upToSeq: number, keepSeconds = 0): Promise<number> {
    let total = 0;
    const keep = Math.min(keepSeconds, RECEIPT_DAYS * 86_400);
    this.atomic(() => {
      this.stmt.dropReceipts.run(receiptCutoff(new Date()));
      this.stmt.dropKeptSteps.run(new Date(Date.now() - keep * 1000).toISOString());
    });
    for (;;) {
      const n = this.atomic(() => {
        const upTo = (this.stmt.compactChunkEnd.get(upToSeq, COMPACT_CHUNK) as { m: number | null }).m;
        if (upTo === null) return 0;
        const { n, b } = this.stmt.compactable.get(upTo) as { n: number; b: number };
        this.stmt.keepReceipts.run({ now: new Date().toISOString(), upTo, keep: keep > 0 ? 1 : 0 });
        this.stmt.compact.run(upTo);
        this.stmt.dropDeps.run(upTo);
        this.stmt.bump.run(-n, 'n_synced');
        this.stmt.bump.run(-b, 'bytes_synced');
        return n;
      });
      total += n;
      if (n < COMPACT_CHUNK) return total;
    }
  }

  /** The disk is short of room: steps kept for a replay go first (they are at central), then the WAL's slack. */
  async reclaim(): Promise<void> {
    this.atomic(() => this.stmt.dropKeptSteps.run(new Date(Date.now() + 1000).toISOString()));
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  async reusableBytes(): Promise<number> {
    return (this.db.pragma('freelist_count', { simple: true }) as number) * (this.db.pragma('page_size', { simple: true }) as number);
  }

  async verify(): Promise<VerifyReport> {
    const problems: string[] = [];
    const integrity = this.db.pragma('integrity_check', { simple: true });
    if (integrity !== 'ok') problems.push(`integrity_check: ${String(integrity)}`);
    // One read transaction, so every figure is from the same moment: a WAL reader keeps its snapshot while
    // the daemon commits groups beside it. Read one by one, a group landing between the counters and the
    // recount was reported as a broken ledger ("pending: counter says 4904, rows say 4905").
    const readAll = () => {
      const stats = this.statsNow();
      const counted = Object.fromEntries(TX_STATES.map((s) => [s, 0])) as Record<TxState, number>;
      for (const r of this.db.prepare('SELECT state, count(*) AS n FROM tx GROUP BY state').all() as { state: TxState; n: number }[]) {
        counted[r.state] = r.n;
      }
      const maxSeq = (this.db.prepare('SELECT max(seq) AS m FROM tx').get() as { m: number | null }).m ?? 0;
      const unindexed = (this.db.prepare(`SELECT count(*) AS n FROM tx, json_each(tx.depends_on) AS j
          WHERE tx.depends_on <> '[]' AND tx.state IN ('pending','in_flight','blocked','failed')
            AND EXISTS (SELECT 1 FROM tx AS parent WHERE parent.seq = j.value)
            AND NOT EXISTS (SELECT 1 FROM dep WHERE dep.parent = j.value AND dep.child = tx.seq)`).get() as { n: number }).n;
      return { stats, counted, maxSeq, unindexed };
    };
    const { stats, counted, maxSeq, unindexed } = this.db.transaction(readAll).deferred();
    for (const s of TX_STATES) {
      if (counted[s] !== stats[s]) problems.push(`${s}: counter says ${stats[s]}, rows say ${counted[s]}`);
    }
    const ledger = stats.applied_total + stats.pending + stats.in_flight + stats.blocked + stats.failed + stats.discarded;
    if (stats.accepted_total !== ledger) {
      problems.push(`ledger: accepted ${stats.accepted_total} ≠ applied ${stats.applied_total} + pending + in_flight + blocked + failed + discarded = ${ledger}`);
    }
    if (maxSeq > stats.last_seq) problems.push(`seq ${maxSeq} is beyond the last assigned seq ${stats.last_seq}`);
    if (unindexed > 0) problems.push(`dependency index: ${unindexed} dependencies of transactions not yet synced are missing from it (a failure would not hold back what waits on it)`);
    return { ok: problems.length === 0, problems, stats, counted };
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
