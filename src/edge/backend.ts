/**
 * The edge's side of the common HTTP surface: writes go to the durable
 * buffer (group-committed), reads come from the local store with each
 * record's sync_status taken from the buffer.
 */
import type { OpsBackend, WriteOutcome } from '../lib/api/backend.js';
import type { Principal } from '../lib/auth.js';
import type { TransactionDraft } from '../lib/api/transaction.js';
import type { ExecutedObsUnitFilter } from '../lib/api/schemas.js';
import type { BufferedTransaction, TransactionBuffer, TxState } from './buffer/buffer.js';
import type { LocalStore } from './local-store.js';
import type { LocalAccounts } from './local-accounts.js';
import type { GroupCommitter } from './committer.js';
import type { SyncView } from './sync-view.js';
import { checkSteps, type CandidateParent } from './references.js';
import { transactionBytes } from './buffer/buffer.js';
import { AppError, NotFoundError } from '../lib/errors.js';
import { isLost, lostSeqs, unacceptedLoss } from './lost-seqs.js';

type Row = Record<string, unknown>;
type SyncStatus = 'pending' | 'in_flight' | 'blocked' | 'failed' | 'synced';

/** A discarded write never reaches central; to a reader it stays a failure. */
const SYNC_STATUS: Record<TxState, SyncStatus> = {
  pending: 'pending', in_flight: 'in_flight', blocked: 'blocked', failed: 'failed', synced: 'synced', discarded: 'failed',
};

export interface EdgeBackendDeps {
  siteName: string;
  buffer: TransactionBuffer;
  local: LocalStore;
  accounts: LocalAccounts;
  committer: GroupCommitter;
  sync: SyncView;
  bufferMaxBytes: number;
  minFreeDiskBytes: number;
  /** Largest transaction accepted: what fits in one sync request to central. */
  maxTransactionBytes: number;
  redis: () => string;
  /** Why the buffer refuses new writes while it is up (see OpenedBuffer.refusing), or null. */
  refusing: () => string | null;
  /** What became of local.db if it was removed or replaced while the edge ran (file-guard.ts), or null. */
  localGone: () => string | null;
}

export class EdgeBackend implements OpsBackend {
  readonly siteType = 'secondary' as const;
  readonly siteName: string;
  readonly auth: LocalAccounts;

  constructor(private readonly d: EdgeBackendDeps) {
    this.siteName = d.siteName;
    this.auth = d.accounts;
  }

  async submit(draft: TransactionDraft, _principal: Principal): Promise<WriteOutcome> {
    // The transaction is bigger than the request (ids are added to every row); it must still fit in
    // one sync request to central, or it could never leave this buffer.
    const bytes = transactionBytes(draft);
    const limit = this.d.maxTransactionBytes;
    if (bytes > limit) {
      throw new AppError(413, 'payload_too_large', `This write would become a ${bytes}-byte transaction; one transaction may hold at most ${limit} bytes (MAX_BODY_BYTES less room for the sync envelope). Send it in smaller parts, e.g. fewer files per bulk call.`, { transaction_bytes: bytes, limit_bytes: limit });
    }
    const candidates = checkSteps(this.d.local, draft.steps);
    const seqs = [...candidates.keys()];
    const states = seqs.length ? await this.d.buffer.states(seqs) : new Map<number, TxState>();
    for (const [seq, ref] of candidates) {
      if (states.get(seq) === 'blocked' && !ref.order) {
        // Its creator waits, however indirectly, on a discarded transaction: it will never be sent either.
        const gone = await this.discardedAncestor(seq);
        if (gone === null) continue;
        const why = `${ref.table} ${ref.id} will never exist at central: the transaction that created it here (seq ${seq}) waits on seq ${gone}, which was discarded. Discard seq ${seq} too, and write the record again`;
        if (ref.update) throw new NotFoundError(why, { step: ref.step, table: ref.table, blocked_seq: seq, discarded_seq: gone });
        throw new AppError(422, 'reference_not_found', why, { step: ref.step, table: ref.table, blocked_seq: seq, discarded_seq: gone });
      }
      if (states.get(seq) !== 'discarded') continue;
      // A discarded parent would hold this write for ever. Nothing to wait for when it only set an order
      // (preferences), or did not create the row after all (a store upgraded from before created_seq
      // recorded the last writer instead): the row is at central.
      if (ref.order || !(await this.created(seq, ref))) {
        states.delete(seq);
        continue;
      }
      // Its creation never reached central and never will.
      const why = `${ref.table} ${ref.id} does not exist at central: the transaction that created it here (seq ${seq}) was discarded`;
      if (ref.update) throw new NotFoundError(why, { step: ref.step, table: ref.table, discarded_seq: seq });
      throw new AppError(422, 'reference_not_found', why, { step: ref.step, table: ref.table, discarded_seq: seq });
    }
    const depends_on = seqs.filter((s) => states.has(s) && states.get(s) !== 'synced').sort((a, b) => a - b);
    const order_only = depends_on.filter((s) => candidates.get(s)!.order);
    await this.d.committer.submit({ ...draft, depends_on, ...(order_only.length ? { order_only } : {}) });
    return { status: 'buffered', transaction_id: draft.transaction_id };
  }

  /**
   * The discarded transaction a blocked one waits on through its parents (not those it only follows, see
   * order_only), or null. Such a chain never leaves the buffer: a retry sends each link back to blocked.
   */
  private async discardedAncestor(seq: number): Promise<number | null> {
    const seen = new Set([seq]);
    let frontier = [seq];
    while (frontier.length > 0) {
      const parents: number[] = [];
      for (const s of frontier) {
        const [t] = await this.d.buffer.list({ after_seq: s - 1, limit: 1 });
        if (!t || t.seq !== s) continue;
        for (const p of t.depends_on) {
          if (seen.has(p) || t.order_only?.includes(p)) continue;
          seen.add(p);
          parents.push(p);
        }
      }
      if (parents.length === 0) return null;
      const states = await this.d.buffer.states(parents);
      const gone = parents.find((p) => states.get(p) === 'discarded');
      if (gone !== undefined) return gone;
      frontier = parents.filter((p) => states.has(p) && states.get(p) !== 'synced');
    }
    return null;
  }

  /** Whether buffered transaction `seq` created the row `ref` names. */
  private async created(seq: number, ref: CandidateParent): Promise<boolean> {
    const [t] = await this.d.buffer.list({ after_seq: seq - 1, limit: 1 });
    if (!t || t.seq !== seq) return false;
    return t.steps.some((s) =>
      s.table === ref.table &&
      (s.op === 'bulk_create' ? s.rows.some((r) => String(r.id) === String(ref.id)) : s.op !== 'update' && String(s.id) === String(ref.id)));
  }

  /**
   * Replaces origin_seq and created_seq with the row's sync_status: the state
   * of the transaction that created it here (SPEC §2.7). Once that is synced,
   * or the row came from central, it is `synced` for good: a later local
   * update does not turn it back (its own progress is at
   * /api/transactions/{id}), and a failed creation is not hidden behind the
   * `blocked` of an update that waits on it. A record whose creating
   * transaction the buffer lost (lost-seqs.ts) reads `failed`, and so does one
   * whose creation a central restored from a backup lost and then refused when
   * it was sent again (failSynced): the one way back from `synced`.
   */
  private async withStatus<T extends Row>(rows: T[]): Promise<(Omit<T, 'origin_seq' | 'created_seq'> & { sync_status: SyncStatus })[]> {
    const seqs = rows.map((r) => r.created_seq).filter((s): s is number => typeof s === 'number');
    const states = seqs.length ? await this.d.buffer.states(seqs) : new Map<number, TxState>();
    const lost = seqs.length ? lostSeqs(this.d.local) : [];
    return rows.map(({ origin_seq: _last, created_seq, ...rest }) => {
      if (typeof created_seq === 'number' && isLost(lost, created_seq)) return { ...rest, sync_status: 'failed' as const };
      const st = typeof created_seq === 'number' ? states.get(created_seq) : undefined;
      return { ...rest, sync_status: st ? SYNC_STATUS[st] : 'synced' };
    });
  }

  async health() {
    const stats = await this.d.buffer.stats().catch(() => null);
    const sync = this.d.sync.state();
    const full = stats ? stats.held_bytes / this.d.bufferMaxBytes : 1;
    // At or under the limit (with MIN_FREE_DISK_BYTES=0: a full disk).
    const diskLow = (await this.d.committer.freeDisk()) <= this.d.minFreeDiskBytes;
    const localBehind = this.d.committer.localBehind() !== null;
    const storageFull = this.d.committer.storageFull();
    const lost = unacceptedLoss(lostSeqs(this.d.local)) > 0;
    const refusing = this.d.refusing();
    const localGone = this.d.localGone();
    const trouble = sync === 'paused' || this.d.sync.consecutiveFailures() > 0 || (stats?.failed ?? 0) > 0 || (stats?.blocked ?? 0) > 0 || diskLow || lost || refusing !== null || localGone !== null || localBehind || storageFull !== null || this.d.sync.edgeConflict() !== null;
    const status = !stats ? 'unhealthy' : full >= 0.9 || trouble ? 'degraded' : 'healthy';
    return {
      status: status as 'healthy' | 'degraded' | 'unhealthy',
      site: { name: this.siteName, type: this.siteType },
      database: this.d.buffer.backend === 'sqlite' && refusing ? `connected (refusing writes: ${refusing})`
        : localGone ? `connected (${localGone}: a restart would lose local accounts and the site token set with PUT)` : 'connected',
      redis: this.d.buffer.backend === 'redis' && !stats ? 'unreachable'
        : this.d.buffer.backend === 'redis' && storageFull ? `connected (out of memory: ${storageFull})` : this.d.redis(),
      // Unknown while the buffer cannot be read: null, never a reassuring 0.
      transaction_buffer: {
        size: stats ? stats.pending + stats.in_flight + stats.blocked : null,
        failed: stats ? stats.failed : null,
      },
      background_processor: sync,
    };
  }

  async listInstruments() {
    return this.d.local.listReference('instrument') as never[];
  }

  async getInstrument(id: number) {
    const [inst] = this.d.local.listReference('instrument', 'WHERE id = ?', [id]);
    if (!inst) return null;
    const modules = this.d.local.listReference('instrument_module', 'WHERE instrument_id = ?', [id]);
    const configs = this.d.local.listReference(
      'instrument_module_configuration',
      'WHERE instrument_module_id IN (SELECT id FROM instrument_module WHERE instrument_id = ?)',
      [id],
    );
    return {
      ...inst,
      modules: modules.map((m) => ({ ...m, configurations: configs.filter((c) => c.instrument_module_id === m.id) })),
    } as never;
  }

  async listObservingPrograms() {
    return this.d.local.listReference('observing_program') as never[];
  }

  async listObsUnits(q: { observing_program_id?: number | undefined; limit: number }) {
    const rows = q.observing_program_id === undefined
      ? this.d.local.listReference('obs_unit', '', [], q.limit)
      : this.d.local.listReference('obs_unit', 'WHERE observing_program_id = ?', [q.observing_program_id], q.limit);
    return rows as never[];
  }

  async listExecutedObsUnits(q: ExecutedObsUnitFilter) {
    const page = this.d.local.listExecutedObsUnits(q);
    return { items: (await this.withStatus(page.items)) as never[], nextCursor: page.nextCursor };
  }

  async startTimeOf(id: string): Promise<string | null> {
    const start = this.d.local.findRow('executed_obs_unit', id)?.start_time;
    return typeof start === 'string' ? start : null;
  }

  async getExecutedObsUnit(id: string) {
    const obs = this.d.local.findRow('executed_obs_unit', id);
    if (!obs) return null;
    const [withStatus] = await this.withStatus([obs]);
    return {
      ...withStatus,
      raw_data_packages: await this.withStatus(this.d.local.rowsWhere('raw_data_package', 'executed_obs_unit_id', id)),
      raw_data_files: await this.withStatus(this.d.local.rowsWhere('raw_data_file', 'executed_obs_unit_id', id)),
    } as never;
  }

  async getRawDataFile(id: string) {
    const f = this.d.local.findRow('raw_data_file', id);
    return f ? ((await this.withStatus([f]))[0] as never) : null;
  }

  async getRawDataPackage(id: string) {
    const p = this.d.local.findRow('raw_data_package', id);
    if (!p) return null;
    const [pkg] = await this.withStatus([p]);
    return { ...pkg, raw_data_files: await this.withStatus(this.d.local.rowsWhere('raw_data_file', 'raw_data_package_id', id)) } as never;
  }

  async transferOverview() {
    return this.d.local.transferOverview() as never;
  }

  /** From the buffer, or, once compacted, from its receipt (kept RECEIPT_DAYS). */
  async getTransaction(id: string) {
    const t = (await this.d.buffer.get(id)) ?? (await this.d.buffer.receipt(id));
    return t ? transactionState(t) : null;
  }
}

export function transactionState(t: Omit<BufferedTransaction, 'steps'> & { compacted_at?: string }) {
  return {
    transaction_id: t.transaction_id,
    site: t.site,
    seq: t.seq,
    endpoint: t.endpoint,
    state: t.state,
    attempts: t.attempts,
    last_error: t.last_error,
    created_at: t.created_at,
    updated_at: t.updated_at,
    applied_at: t.state === 'synced' ? t.updated_at : null,
    central_result: t.central_result,
    depends_on: t.depends_on,
    /** Of depends_on, those it only has to follow (a discarded one no longer holds it). */
    order_only: t.order_only ?? [],
    bytes: t.bytes,
    /** Set once the buffer has dropped the transaction's steps (the replica has its rows). */
    compacted_at: t.compacted_at ?? null,
  };
}
