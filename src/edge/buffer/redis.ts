/**
 * The Redis buffer. Durable only on a server that fsyncs every write before
 * answering (appendonly yes, appendfsync always): open() checks and refuses
 * otherwise, unless weak durability is explicitly allowed.
 *
 * Keys, all under the caller's prefix:
 *   seq              last assigned seq (never reused)
 *   tx:<seq>         hash: the transaction (seq, transaction_id, site, endpoint, created_at,
 *                    steps, depends_on, order_only?, bytes, state, attempts, last_error?, central_result?, updated_at)
 *   ids              hash: transaction_id → seq
 *   state:<state>    sorted set of seqs in that state (score = seq)
 *   counters         hash: accepted_total, applied_total, discarded_total, bytes_<state>
 *   audit            list of JSON audit records, newest first, capped at AUDIT_MAX (redis-scripts.ts)
 *   receipt:<id>     string: a compacted transaction's record without its steps, plus compacted_at,
 *                    as JSON; it expires RECEIPT_DAYS after compaction
 *   kept:<seq>       hash: a compacted transaction kept whole (transaction_id, site, endpoint, created_at,
 *                    steps, order_only?) to be sent again to a central restored from a backup; it expires after the
 *                    compaction's keepSeconds (SYNCED_RETENTION_HOURS)
 *   kept             sorted set of the seqs kept so (score = seq); each compaction drops from its start
 *                    the seqs whose hash expired
 *   children:<seq>   sorted set of the seqs whose depends_on names <seq> (the dependency index: a failure,
 *                    a retry or a discard visits the dependents, not the backlog); each leaves it at its
 *                    own compaction, so it outlives a compacted <seq> while they are held
 *   deps_through     the last seq up to which every transaction is in the dependency index; each append
 *                    moves it, and at open what an older build appended after it is indexed
 *   deps_kept_after  the last seq when this build first opened the buffer: builds before it dropped a
 *                    compacted seq's children:<seq>; this one keeps it while those children are held
 *   epoch            bumped by every script that changes a state, a record or a count (verify's "nothing moved")
 * Every mutation is one Lua script, so it is atomic, and its reply comes after
 * the fsync. Counts by state are ZCARDs, so stats() never scans.
 */
import { Redis, ReplyError } from 'ioredis';
import {
  BufferUnavailableError,
  BufferBehindError,
  BufferLeaseLostError,
  BufferNotDurableError,
  DuplicateTransactionError,
  OutcomeUnknownError,
  RECEIPT_DAYS,
  TX_STATES,
  stepsJson,
  transactionBytes,
  type AuditRecord,
  type BufferStats,
  type BufferedTransaction,
  type HeldTransaction,
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
import { PRELUDE, SCRIPTS, type ScriptName } from './redis-scripts.js';

const CONNECT_TIMEOUT_MS = 3_000;
const COMMAND_TIMEOUT_MS = 5_000;
const RECONNECT_MAX_MS = 2_000;

/** Prefixed so no script shadows an ioredis method (`append`, `get` …). */
const command = (name: ScriptName) => `opsdbBuffer_${name}`;

/** Transactions compacted per script call: Redis runs one script at a time, so each call is kept short. */
const COMPACT_CHUNK = 1000;
/** Seqs looked at per call while indexing the dependencies of a buffer written before the index. */
const DEPS_INDEX_CHUNK = 5000;
/** Seqs checked per call by verify (≈ 30 ms of Redis each on this machine). */
const VERIFY_CHUNK = 1000;

const pairs = (flat: unknown[]): Record<string, string> => {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = String(flat[i + 1]);
  return out;
};

const fromHash = (flat: string[]): BufferedTransaction => {
  const h = pairs(flat);
  return {
    seq: Number(h.seq),
    transaction_id: h.transaction_id!,
    site: h.site!,
    endpoint: h.endpoint!,
    created_at: h.created_at!,
    steps: JSON.parse(h.steps!),
    depends_on: JSON.parse(h.depends_on!),
    ...(h.order_only ? { order_only: JSON.parse(h.order_only) as number[] } : {}),
    bytes: Number(h.bytes),
    state: h.state as TxState,
    attempts: Number(h.attempts),
    last_error: h.last_error ? JSON.parse(h.last_error) : null,
    central_result: h.central_result ? JSON.parse(h.central_result) : null,
    updated_at: h.updated_at!,
  };
};

const toStats = (flat: unknown[]): BufferStats => {
  const m = pairs(flat);
  const n = (k: string) => Number(m[k] ?? 0);
  const bytes = (states: readonly TxState[]) => states.reduce((s, st) => s + n(`bytes_${st}`), 0);
  return {
    pending: n('pending'), in_flight: n('in_flight'), blocked: n('blocked'), failed: n('failed'),
    synced: n('synced'), discarded: n('discarded'),
    accepted_total: n('accepted_total'), applied_total: n('applied_total'), discarded_total: n('discarded_total'),
    pending_bytes: bytes(['pending', 'in_flight', 'blocked', 'failed']),
    held_bytes: bytes(TX_STATES),
    oldest_pending_created_at: m.oldest ?? null,
    last_seq: n('last_seq'),
  };
};

/** The URL without its password, for messages. */
function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable Redis URL)';
  }
}

/**
 * The settings that decide whether an acknowledged write survives; throws when they cannot be read.
 * `aof_rewriting` ('1' or '0', from INFO persistence): an AOF rewrite runs or waits to run.
 */
async function persistenceSettings(redis: Redis): Promise<Record<string, string>> {
  // The error keeps its class (a BUSY or LOADING reply is told apart by it) and names the command that failed.
  const named = (command: string) => (err: unknown) => {
    if (err instanceof Error) Object.assign(err, { command });
    throw err;
  };
  const cfg: Record<string, string> = {};
  for (const name of ['appendonly', 'appendfsync', 'maxmemory-policy']) Object.assign(cfg, pairs(await redis.config('GET', name).catch(named('CONFIG GET'))));
  const info = await redis.info('persistence').catch(named('INFO persistence'));
  const field = (name: string) => new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1];
  cfg.aof_rewriting = field('aof_rewrite_in_progress') === '1' || field('aof_rewrite_scheduled') === '1' ? '1' : '0';
  return cfg;
}

/**
 * Turned on while Redis runs (CONFIG SET appendonly yes, the fix our refusal names), the AOF is first
 * written whole by a rewrite; until that is done, Redis logs new writes to a file a restart does not
 * load, although CONFIG GET already says appendonly yes and appendfsync always. A review lost five
 * writes answered 201 that way, Redis killed 1.5 s after the edge took writes again. INFO does not say
 * whether a rewrite is that first one or a routine one (AOF grown), so one that runs when the edge has
 * not yet seen the AOF on with no rewrite running (at start, on a new connection, after seeing it off)
 * counts as a gap until it is done.
 */
const FIRST_AOF_GAP =
  'it is writing its append-only file whole, as it does after appendonly is turned on (INFO persistence: ' +
  'aof_rewrite_in_progress:1); a write taken before that is done is not on disk';

const unreadable = (err: unknown) =>
  `its persistence settings cannot be read (${(err as { command?: string }).command ?? 'CONFIG GET'} failed: ${(err as Error).message}), so appendonly, ` +
  'appendfsync and whether it is still writing its append-only file are unknown (an ACL user needs +config|get and +info)';

/**
 * Why this server may lose an acknowledged write; empty when it fsyncs every write and never evicts.
 * `aofSeen`: the AOF was seen on with no rewrite running since this connection began (see FIRST_AOF_GAP).
 */
async function durabilityGaps(redis: Redis, aofSeen: boolean): Promise<string[]> {
  let cfg: Record<string, string>;
  try {
    cfg = await persistenceSettings(redis);
  } catch (err) {
    return [unreadable(err)];
  }
  return gapsOf(cfg, aofSeen);
}

const noteOf = (where: string, gaps: string[]) => (gaps.length ? `Redis at ${where} may lose acknowledged writes: ${gaps.join('; ')}` : null);

function gapsOf(cfg: Record<string, string>, aofSeen: boolean): string[] {
  const gaps: string[] = [];
  if (cfg.appendonly !== 'yes') gaps.push(`appendonly is ${cfg.appendonly ?? 'unknown'} (writes are not logged to disk)`);
  else if (!aofSeen && cfg.aof_rewriting === '1') gaps.push(FIRST_AOF_GAP);
  if (cfg.appendfsync !== 'always') gaps.push(`appendfsync is ${cfg.appendfsync ?? 'unknown'} (a crash can lose acknowledged writes not yet fsynced)`);
  if (cfg['maxmemory-policy']?.startsWith('allkeys-')) gaps.push(`maxmemory-policy is ${cfg['maxmemory-policy']} (Redis may evict buffered transactions)`);
  // Receipts are the keys with a TTL: evicted, a synced write reads 404, "not kept", and is sent again.
  if (cfg['maxmemory-policy']?.startsWith('volatile-')) gaps.push(`maxmemory-policy is ${cfg['maxmemory-policy']} (Redis may evict the receipts of synced transactions)`);
  return gaps;
}

const FIX_HINT =
  'set "appendonly yes", "appendfsync always" (and "maxmemory-policy noeviction") in redis.conf, or run ' +
  'CONFIG SET appendonly yes, CONFIG SET appendfsync always, CONFIG REWRITE; ' +
  'or set REDIS_ALLOW_WEAK_DURABILITY=true to accept the risk';
const WAIT_HINT = 'nothing to do: writes are taken again as soon as Redis has written the file (seconds for a small buffer)';
/** What to do about a note: wait, when the first AOF being written is all that is wrong. */
export const isFirstAofNote = (note: string): boolean => note.endsWith(`: ${FIRST_AOF_GAP}`);
const hintFor = (note: string) => (isFirstAofNote(note) ? WAIT_HINT : FIX_HINT);

/**
 * How old the last look at the server's persistence settings may be when a
 * group is appended. Settings can change under a running edge (CONFIG SET, or
 * Redis restarted with another redis.conf); each reconnection is looked at
 * before its first append whatever this says.
 */
const DURABILITY_CHECK_MS = 1_000;

export interface RedisBufferOptions {
  url: string;
  /** Every key lives under it, e.g. `opsdb:edge:<site>:`. */
  keyPrefix: string;
  /** Open even when the server does not fsync every write (reported by `durability`). */
  allowWeakDurability?: boolean;
  /**
   * The server's durability changed while the edge ran: `note` says why it
   * may now lose acknowledged writes (null: it no longer may). Without
   * allowWeakDurability, appends are refused for as long as it may.
   */
  onDurabilityChange?(note: string | null): void;
  /** How old the last look at the settings may be at an append (default DURABILITY_CHECK_MS). */
  durabilityCheckMs?: number;
  /**
   * For the daemon: this process takes the buffer's daemon lease (see DAEMON_LEASE_MS), and open() refuses
   * the buffer while another daemon holds it. `who` names this daemon's place (host and DATA_DIR): one
   * restarted there (after a SIGKILL, within the lease) takes its own lease back. The CLI takes none.
   */
  daemon?: { who: string; log?(message: string): void };
}

/**
 * The daemon lease: `<prefix>daemon` holds "<host> <DATA_DIR> pid <pid>" of the daemon using the buffer,
 * for this long, renewed every third of it. Two daemons on one Redis with one SITE_NAME would share a
 * buffer (each acknowledging into the other's ledger, each sending the other's transactions); central
 * tells them apart only once they sync, and not at all while the link is down. The DATA_DIR lock cannot
 * see a daemon on another host or directory.
 */
const DAEMON_LEASE_MS = 15_000;
/** Takes or renews the lease when it is free or this place's own; else returns its holder. */
const LEASE_LUA = `local cur = redis.call('GET', KEYS[1])
if (not cur) or string.sub(cur, 1, #ARGV[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return false
end
return cur`;
/** Gives the lease up if it is this process's. */
const RELEASE_LUA = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1`;

/**
 * Whether a call that failed may still have run in Redis: it was sent and no
 * answer came (it timed out, or the connection closed first). Not when Redis
 * answered with an error (a script that fails does so before it writes), nor
 * when the call was never sent (no connection: there is no offline queue).
 */
function maybeRan(err: unknown): boolean {
  if (err instanceof ReplyError) return false;
  return !/Stream isn't writeable/.test(String((err as Error | undefined)?.message));
}

/** After Redis refused a write for maxmemory, compaction keeps no copies for this long. */
const MEMORY_SHORT_MS = 10 * 60_000;

/** Redis refused the call for maxmemory (`OOM command not allowed …`). */
const isOom = (err: unknown) => /^OOM /.test(((err as Error).cause as Error | undefined)?.message ?? '');

/** The retry scripts' answer: released seqs, and [seq, id, parent seq, parent id, parent state] for each one held. */
type RawRetryOutcome = [released: number[], held: [number, string, number, string, string][]];
const retryOutcome = ([released, held]: RawRetryOutcome): RetryOutcome => ({
  released,
  held: held.map(([seq, id, by, byId, state]) => ({
    seq, transaction_id: id, waits_on: { seq: by, transaction_id: byId, state: state as HeldTransaction['waits_on']['state'] },
  })),
});

export class RedisBuffer implements TransactionBuffer {
  readonly backend = 'redis' as const;
  private closed = false;
  /**
   * The highest seq this buffer has given out (or found at open). Every append
   * checks the counter against it in the same script: a Redis that restarted
   * without its data while the daemon ran answers `behind` instead of giving
   * out seqs again (BufferBehindError).
   */
  private highest = 0;
  /** Why the server may lose acknowledged writes, as last seen (null: it fsyncs every write). */
  private note: string | null;
  /** Connections made so far (ioredis reconnects on its own), and when and on which the settings were last read. */
  private connection = 1;
  private checked = { connection: 1, at: performance.now() };
  private checking: Promise<void> | null = null;
  /** The AOF was seen on with no rewrite running, on connection `aofSeenOn` (see FIRST_AOF_GAP). */
  private aofSeenOn = 0;

  private constructor(
    private readonly redis: Redis,
    readonly keyPrefix: string,
    private readonly where: string,
    note: string | null,
    private readonly opts: RedisBufferOptions,
  ) {
    this.note = note;
    // The settings were read on this first connection by open(), just now.
    redis.on('ready', () => {
      this.connection += 1;
    });
  }

  /** `always`: every acknowledged write is fsynced before it is answered; `weak`: see durabilityNote. */
  get durability(): 'always' | 'weak' {
    return this.note ? 'weak' : 'always';
  }

  /** Why acknowledged writes may be lost, as last seen; null when they may not. */
  get durabilityNote(): string | null {
    return this.note;
  }

  /**
   * True while appends are refused: the server may lose them and weak durability is not allowed, or
   * another daemon took this buffer's lease.
   */
  get refusingWrites(): boolean {
    return this.leaseLost !== null || (this.note !== null && !this.opts.allowWeakDurability);
  }

  /** Why appends are refused (see refusingWrites), or null. */
  get refusal(): string | null {
    if (this.leaseLost !== null) return `another edge daemon took this Redis buffer's lease (${this.leaseLost}) while this one could not renew it`;
    return this.refusingWrites ? this.note : null;
  }

  /**
   * Before an append: reads the persistence settings again when the last look
   * is older than DURABILITY_CHECK_MS or was made on an earlier connection,
   * and refuses the append while the server may lose it (unless allowed).
   */
  private async ensureDurable(): Promise<void> {
    await this.lookIfStale();
    if (this.leaseLost !== null) {
      throw new BufferNotDurableError(`${this.refusal}: this daemon takes no more writes until that one stops. Stop one of them`);
    }
    if (this.refusingWrites) {
      throw new BufferNotDurableError(`${this.note}. Writes are refused until it is fixed; to fix: ${hintFor(this.note!)}`);
    }
  }

  /** Reads the settings again if the last look is stale (see ensureDurable); one read at a time. */
  private async lookIfStale(): Promise<void> {
    if (this.checked.connection !== this.connection || performance.now() - this.checked.at > (this.opts.durabilityCheckMs ?? DURABILITY_CHECK_MS)) {
      this.checking ??= this.lookAgain().finally(() => {
        this.checking = null;
      });
      await this.checking;
    }
  }

  private async lookAgain(): Promise<void> {
    const connection = this.connection;
    let note: string | null;
    try {
      const cfg = await persistenceSettings(this.redis);
      if (cfg.appendonly !== 'yes') this.aofSeenOn = 0;
      else if (cfg.aof_rewriting === '0') this.aofSeenOn = connection;
      note = noteOf(this.where, gapsOf(cfg, this.aofSeenOn === connection));
    } catch (err) {
      // Redis not answering is the append's own failure to come; a server that answers but refuses CONFIG is a gap.
      // One busy running a long script, or still loading its data, says nothing about its settings.
      if (!(err instanceof ReplyError) || /^(BUSY|LOADING)\b/.test((err as Error).message)) {
        throw new BufferUnavailableError(`Redis buffer at ${this.where}: ${(err as Error).message}`, { cause: err });
      }
      note = noteOf(this.where, [unreadable(err)]);
    }
    this.checked = { connection, at: performance.now() };
    if (note !== this.note) {
      this.note = note;
      this.opts.onDurabilityChange?.(note);
    }
  }

  static async open(opts: RedisBufferOptions): Promise<RedisBuffer> {
    const where = safeUrl(opts.url);
    let lastError: Error | null = null;
    const redis = new Redis(opts.url, {
      lazyConnect: true,
      connectTimeout: CONNECT_TIMEOUT_MS,
      commandTimeout: COMMAND_TIMEOUT_MS,
      // A call made while Redis is down fails at once, and one cut off mid-way fails instead of being
      // re-sent on reconnect: a script that did run must not run twice.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      retryStrategy: (times) => Math.min(times * 200, RECONNECT_MAX_MS),
    });
    redis.on('error', (err: Error) => {
      lastError = err;
    });
    try {
      await redis.connect();
      await redis.ping();
    } catch (err) {
      redis.disconnect();
      const reason = (lastError ?? (err as Error)).message;
      throw new BufferUnavailableError(`cannot reach the Redis buffer at ${where}: ${reason}`, { cause: err });
    }
    const gaps = await durabilityGaps(redis, false);
    const note = noteOf(where, gaps);
    // A first AOF being written (CONFIG SET appendonly yes just before this start, or a routine rewrite that
    // runs now) is no reason to refuse the start: the edge opens refusing writes, as it does when that happens
    // while it runs, and takes them as soon as the file is written.
    const firstAofOnly = gaps.length === 1 && gaps[0] === FIRST_AOF_GAP;
    if (note && !opts.allowWeakDurability && !firstAofOnly) {
      redis.disconnect();
      throw new BufferUnavailableError(`refusing the Redis buffer: ${note}. To fix: ${FIX_HINT}`);
    }
    for (const [name, lua] of Object.entries(SCRIPTS)) redis.defineCommand(command(name as ScriptName), { lua: PRELUDE + lua, numberOfKeys: 0 });
    const b = new RedisBuffer(redis, opts.keyPrefix, where, note, opts);
    // No gap: the AOF is on and no rewrite runs, on this first connection.
    if (note === null) b.aofSeenOn = 1;
    if (opts.daemon) {
      // Before anything is written: a second daemon must not touch the buffer at all.
      const holder = await b.takeLease().catch((err: unknown) => {
        redis.disconnect();
        throw new BufferUnavailableError(`Redis buffer at ${where}: ${(err as Error).message}`, { cause: err });
      });
      if (holder !== null) {
        redis.disconnect();
        throw new BufferUnavailableError(
          `another edge daemon uses the Redis buffer at ${where} as site "${opts.keyPrefix.split(':')[1]}" (${holder}): ` +
            'two daemons on one buffer would each acknowledge into and send the other\'s transactions. Stop the other one, ' +
            `or give this one its own SITE_NAME (or Redis). A daemon that was killed lets its lease go within ${DAEMON_LEASE_MS / 1000} s`,
        );
      }
    }
    try {
      await b.indexDependencies();
      b.highest = (await b.stats()).last_seq;
    } catch (err) {
      if (opts.daemon) await b.redis.eval(RELEASE_LUA, 1, `${opts.keyPrefix}daemon`, b.leaseValue).catch(() => {});
      redis.disconnect();
      throw err;
    }
    if (opts.daemon) {
      b.renewal = setInterval(() => {
        b.takeLease().then((other) => {
          if (other !== null && other !== b.leaseLost) {
            opts.daemon!.log?.(`another edge daemon took the Redis buffer's lease (${other}) while this one could not renew it: ` +
              'this one takes no more writes until that one stops; stop one of them');
          }
          b.leaseLost = other;
        }, () => {});
      }, DAEMON_LEASE_MS / 3);
      b.renewal.unref();
    }
    return b;
  }

  /**
   * Transactions appended by a build from before the dependency index (children:<seq>), the ones after
   * deps_through, are indexed, a chunk of seqs per script call. With no deps_through (a buffer made
   * before it, or by a build that only kept the older mark deps_indexed), every transaction is, once.
   */
  private async indexDependencies(): Promise<void> {
    // Builds before this one dropped a compacted parent's children:<seq>: failSynced finds the dependents of a
    // transaction up to this seq by reading the backlog, of a later one in the index.
    const last = await this.call(() => this.redis.get(`${this.keyPrefix}seq`));
    await this.call(() => this.redis.set(`${this.keyPrefix}deps_kept_after`, last ?? '0', 'NX'));
    let from = Number(await this.call(() => this.redis.get(`${this.keyPrefix}deps_through`)) ?? 0);
    for (;;) {
      const last = await this.run<number>('indexDeps', from, DEPS_INDEX_CHUNK);
      if (last <= from) break;
      from = last;
    }
  }

  /** Runs one script with the key prefix as ARGV[1]; a Redis failure becomes BufferUnavailableError. */
  private run<T>(name: ScriptName, ...args: (string | number)[]): Promise<T> {
    const fn = (this.redis as unknown as Record<string, (...a: (string | number)[]) => Promise<T>>)[command(name)]!;
    return this.call(() => fn.call(this.redis, this.keyPrefix, ...args));
  }

  /** One Redis call; a Redis failure becomes BufferUnavailableError. */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new BufferUnavailableError(`Redis buffer at ${this.where}: ${(err as Error).message}`, { cause: err });
    }
  }

  async append(txs: NewTransaction[]): Promise<BufferedTransaction[]> {
    if (txs.length === 0) return [];
    await this.ensureDurable();
    const now = new Date().toISOString();
    const rows = txs.map((t) => {
      const steps = stepsJson(t.steps);
      return { t, steps, bytes: transactionBytes(t, steps) };
    });
    const args = rows.flatMap(({ t, steps, bytes }) => [
      t.transaction_id, t.site, t.endpoint, t.created_at, steps, JSON.stringify(t.depends_on), bytes,
      t.order_only?.length ? JSON.stringify(t.order_only) : '',
    ]);
    let reply: [string, string | number];
    try {
      reply = await this.run<[string, string | number]>('append', now, txs.length, ...args, this.highest);
    } catch (err) {
      if (isOom(err)) await this.giveWayToWrites();
      if (!maybeRan((err as Error).cause)) throw err;
      // Sent, and then no answer: Redis may have run the script (a stall past COMMAND_TIMEOUT_MS, or the
      // connection cut before the reply). The writers must not be told that nothing was stored.
      throw new OutcomeUnknownError(`${(err as Error).message}; the append was sent, so it may or may not have been stored`, { cause: err });
    }
    const [status, value] = reply;
    if (status === 'duplicate') throw new DuplicateTransactionError(String(value));
    if (status === 'behind') throw new BufferBehindError(Number(value), this.highest);
    const first = Number(value);
    this.highest = Math.max(this.highest, first + txs.length - 1);
    return rows.map(({ t, bytes }, i) => ({
      ...t, seq: first + i, state: 'pending' as const, attempts: 0, last_error: null, bytes, updated_at: now, central_result: null,
    }));
  }

  async claim(maxCount: number, maxBytes: number, opts: { notAfterInFlight?: boolean } = {}): Promise<BufferedTransaction[]> {
    const lease = this.opts.daemon ? this.leaseValue : '';
    const rows = await this.run<string[][]>('claim', new Date().toISOString(), maxCount, maxBytes, opts.notAfterInFlight ? '1' : '0', lease)
      .catch((err: Error) => {
        const holder = /^OPSDB_LEASE (.*)$/.exec((err.cause as Error | undefined)?.message ?? '')?.[1];
        if (holder === undefined) throw err;
        throw new BufferLeaseLostError(holder === 'nobody'
          ? "this daemon's lease on the Redis buffer expired (it could not renew it in time); it syncs again once it has renewed it"
          : `another edge daemon holds the Redis buffer's lease (${holder}): this one does not sync from it until that one stops`);
      });
    return rows.map(fromHash);
  }

  async settle(outcomes: Outcome[]): Promise<void> {
    if (outcomes.length === 0) return;
    const sorted = [...outcomes].sort((a, b) => a.seq - b.seq);
    const args = sorted.flatMap((o) => [
      String(o.seq),
      o.outcome,
      'error' in o ? JSON.stringify(o.error) : '',
      'central_result' in o && o.central_result !== undefined ? JSON.stringify(o.central_result) : '',
    ]);
    await this.run('settle', new Date().toISOString(), sorted.length, ...args);
  }

  async releaseInFlight(): Promise<number> {
    return this.run<number>('release', new Date().toISOString());
  }

  async retry(transactionId: string, actor: string): Promise<RetryOutcome> {
    return retryOutcome(await this.run<RawRetryOutcome>('retry', new Date().toISOString(), transactionId, actor));
  }

  async retryAll(actor: string): Promise<RetryOutcome> {
    return retryOutcome(await this.run<RawRetryOutcome>('retryAll', new Date().toISOString(), actor));
  }

  async skipTo(seq: number, actor: string, reason: string): Promise<boolean> {
    const raised = (await this.run<number>('skipTo', seq, new Date().toISOString(), actor, reason)) === 1;
    this.highest = Math.max(this.highest, seq);
    return raised;
  }

  async discard(transactionId: string, actor: string, reason: string): Promise<boolean> {
    return (await this.run<number>('discard', new Date().toISOString(), transactionId, actor, reason)) === 1;
  }

  async get(transactionId: string): Promise<BufferedTransaction | null> {
    const flat = await this.run<string[]>('get', transactionId);
    return flat.length ? fromHash(flat) : null;
  }

  async list(q: ListQuery): Promise<BufferedTransaction[]> {
    if (q.limit <= 0) return [];
    const rows = await this.run<string[][]>('list', q.state ?? '', q.after_seq ?? 0, q.limit);
    return rows.map(fromHash);
  }

  async states(seqs: number[]): Promise<Map<number, TxState>> {
    const unique = [...new Set(seqs)];
    const out = new Map<number, TxState>();
    if (unique.length === 0) return out;
    const states = await this.run<(TxState | null)[]>('states', ...unique.map(String));
    unique.forEach((s, i) => {
      if (states[i]) out.set(s, states[i]);
    });
    return out;
  }

  async audit(limit: number): Promise<AuditRecord[]> {
    if (limit <= 0) return [];
    const raw = await this.call(() => this.redis.lrange(`${this.keyPrefix}audit`, 0, limit - 1));
    return raw.map((s) => {
      const a = JSON.parse(s) as AuditRecord;
      return { at: a.at, transaction_id: a.transaction_id, seq: a.seq, action: a.action, actor: a.actor, reason: a.reason ?? null };
    });
  }

  async stats(): Promise<BufferStats> {
    // /health and /buffer-stats read this: a change of the settings shows there even while nobody writes.
    await this.lookIfStale().catch(() => {});
    return toStats(await this.run<unknown[]>('stats'));
  }

  /**
   * Redis refused a write for maxmemory: the kept copies of synced transactions go (they are at central),
   * and compaction keeps none for a while. The write itself is still refused; the next may fit.
   */
  private async giveWayToWrites(): Promise<void> {
    this.memoryShortAt = Date.now();
    try {
      while ((await this.run<number>('dropKept', 1000)) === 1000);
    } catch {
      // Best effort: the write's own error is what its caller hears.
    }
  }

  /** When Redis last refused a write for maxmemory (Date.now()). */
  private memoryShortAt = Number.NEGATIVE_INFINITY;

  async compact(upToSeq: number, keepSeconds = 0): Promise<number> {
    const now = new Date().toISOString();
    // Kept copies would take back the memory compaction frees, while writes are refused for want of it.
    const short = Date.now() - this.memoryShortAt < MEMORY_SHORT_MS;
    const keep = short ? 0 : Math.floor(Math.min(keepSeconds, RECEIPT_DAYS * 86_400));
    let total = 0;
    for (;;) {
      const n = await this.run<number>('compact', String(upToSeq), now, RECEIPT_DAYS * 86_400, COMPACT_CHUNK, keep);
      total += n;
      if (n < COMPACT_CHUNK) return total;
    }
  }

  async failSynced(refusals: { seq: number; error: TxError }[]): Promise<number[]> {
    if (refusals.length === 0) return [];
    const now = new Date().toISOString();
    const sorted = [...refusals].sort((a, b) => a.seq - b.seq);
    const [moved, revived] = await this.run<[number[], number[]]>('failSynced', now, ...sorted.flatMap((r) => [String(r.seq), JSON.stringify(r.error)]));
    if (revived.length === 0) return moved;
    // Compacted by a build that dropped their entries in the dependency index: their dependents still held
    // are found by their depends_on, a chunk of seqs per call (Redis runs one script at a time).
    const last = (await this.stats()).last_seq;
    for (let from = revived[0]!; from < last;) from = await this.run<number>('childrenOf', JSON.stringify(revived), from, DEPS_INDEX_CHUNK, now);
    return moved;
  }

  async replayable(afterSeq: number, limit: number): Promise<ReplayableTransaction[]> {
    const rows = await this.run<[string, string, string, string, string, string][]>('replayable', afterSeq, limit);
    return rows
      .map(([seq, transaction_id, site, endpoint, created_at, steps]) => ({
        seq: Number(seq), transaction_id, site, endpoint, created_at, steps: JSON.parse(steps) as ReplayableTransaction['steps'],
      }))
      .sort((a, b) => a.seq - b.seq)
      .slice(0, limit);
  }

  async receipt(transactionId: string): Promise<TransactionReceipt | null> {
    const key = `${this.keyPrefix}receipt:${transactionId}`;
    const fields = await this.call(async () => {
      try {
        const json = await this.redis.get(key);
        return json ? (JSON.parse(json) as Record<string, string>) : null;
      } catch (err) {
        // A receipt left by the builds before JSON receipts (2026-11-26): a hash of the same fields, for up to RECEIPT_DAYS.
        if (!/^WRONGTYPE/.test((err as Error).message)) throw err;
        const flat = await this.redis.hgetall(key);
        return flat.transaction_id ? flat : null;
      }
    });
    if (!fields) return null;
    const { steps: _, ...t } = fromHash(Object.entries({ ...fields, steps: '[]' }).flat());
    return { ...t, compacted_at: fields.compacted_at! };
  }

  /**
   * Checks the buffer in chunks of seqs, so Redis, and the daemon writing to it, is never held for long
   * (one script over a 200,000-transaction buffer held it for ≈ 6 s, past the command timeout). Each
   * chunk is atomic; the recount is compared with the counters only if nothing changed while the
   * chunks ran (tried three times: with the daemon busy, it says so in `notes` instead).
   */
  async verify(): Promise<VerifyReport> {
    for (let attempt = 1; ; attempt++) {
      const epoch = () => this.call(() => this.redis.get(`${this.keyPrefix}epoch`));
      const epochBefore = await epoch();
      const before = await this.run<unknown[]>('stats');
      const stats = toStats(before);
      const counted = Object.fromEntries(TX_STATES.map((s) => [s, 0])) as Record<TxState, number>;
      const bytes = TX_STATES.map(() => 0);
      const problems: string[] = [];
      let maxSeq = 0;
      const chunk = async (from: number, to: number | '+inf') => {
        const [c, b, m, p] = await this.run<[number[], number[], number, string[]]>('verify', from, to);
        TX_STATES.forEach((s, i) => {
          counted[s] += c[i] ?? 0;
          bytes[i]! += b[i] ?? 0;
        });
        maxSeq = Math.max(maxSeq, m);
        problems.push(...p);
      };
      for (let from = 0; from < stats.last_seq; from += VERIFY_CHUNK) await chunk(from, Math.min(from + VERIFY_CHUNK, stats.last_seq));
      await chunk(stats.last_seq, '+inf');
      problems.push(...(await this.idIndexProblems()), ...(await this.unindexedRecords()));
      const after = await this.run<unknown[]>('stats');
      const settled = (await epoch()) === epochBefore && JSON.stringify(after) === JSON.stringify(before);
      const notes: string[] = [];
      if (settled) {
        const counters = pairs(before);
        TX_STATES.forEach((s, i) => {
          if (counted[s] !== stats[s]) problems.push(`${s}: the set holds ${stats[s]}, records say ${counted[s]}`);
          const kept = Number(counters[`bytes_${s}`] ?? 0);
          if (kept !== bytes[i]) problems.push(`${s}: byte counter says ${kept}, records say ${bytes[i]}`);
        });
      } else if (attempt < 3) {
        continue;
      } else {
        notes.push('the buffer changed while verify ran (the daemon is at work): the recount was not compared with the counters; ' +
          'run it again when the edge is quiet, or with the daemon stopped');
      }
      const now = settled ? stats : toStats(after);
      const ledger = now.applied_total + now.pending + now.in_flight + now.blocked + now.failed + now.discarded;
      if (now.accepted_total !== ledger) {
        problems.push(`ledger: accepted ${now.accepted_total} ≠ applied ${now.applied_total} + pending + in_flight + blocked + failed + discarded = ${ledger}`);
      }
      if (maxSeq > now.last_seq) problems.push(`seq ${maxSeq} is beyond the last assigned seq ${now.last_seq}`);
      if (this.durability === 'always') {
        const gaps = await durabilityGaps(this.redis, true);
        if (gaps.length) problems.push(`durability changed since open: ${gaps.join('; ')}`);
      }
      return { ok: problems.length === 0, problems, stats: now, counted, ...(notes.length ? { notes } : {}) };
    }
  }

  /** Entries of the id index whose seq holds no record of that id (found by HSCAN; each batch checked atomically). */
  private async idIndexProblems(): Promise<string[]> {
    const problems: string[] = [];
    const stream = this.redis.hscanStream(`${this.keyPrefix}ids`, { count: 1000 });
    for await (const flat of stream as AsyncIterable<string[]>) {
      if (flat.length === 0) continue;
      const bad = await this.run<string[]>('idIndex', ...flat);
      for (let i = 0; i + 1 < bad.length; i += 2) problems.push(`the id index maps ${bad[i]} to seq ${bad[i + 1]}, which is not held`);
    }
    return problems;
  }

  /** Records no state set points at (found by SCAN; each batch checked atomically, so no false alarms). */
  private async unindexedRecords(): Promise<string[]> {
    const problems: string[] = [];
    const match = `${this.keyPrefix.replace(/[*?[\]\\]/g, '\\$&')}tx:*`;
    const stream = this.redis.scanStream({ match, count: 1000 });
    for await (const keys of stream as AsyncIterable<string[]>) {
      const seqs: string[] = [];
      for (const key of keys) {
        const suffix = key.slice(this.keyPrefix.length + 3);
        if (/^[1-9]\d*$/.test(suffix)) seqs.push(suffix);
        else problems.push(`unexpected key ${key}`);
      }
      if (seqs.length === 0) continue;
      for (const seq of await this.run<string[]>('unindexed', ...seqs)) problems.push(`seq ${seq} has a record but is in no state set`);
    }
    return problems;
  }

  private renewal: NodeJS.Timeout | null = null;
  /** The holder of the daemon lease when another took it (null: this daemon holds it, or takes none). */
  private leaseLost: string | null = null;
  private get leaseValue(): string {
    return `${this.opts.daemon?.who ?? ''} pid ${process.pid}`;
  }

  /** Takes or renews the daemon lease (RedisBufferOptions.daemon): null when held, else its holder. */
  private async takeLease(): Promise<string | null> {
    const holder = await this.redis.eval(LEASE_LUA, 1, `${this.keyPrefix}daemon`, `${this.opts.daemon!.who} pid `, this.leaseValue, String(DAEMON_LEASE_MS));
    return typeof holder === 'string' ? holder : null;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.renewal) {
      clearInterval(this.renewal);
      await this.redis.eval(RELEASE_LUA, 1, `${this.keyPrefix}daemon`, this.leaseValue).catch(() => {});
    }
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect(); // Redis is down: stop reconnecting
    }
  }
}
