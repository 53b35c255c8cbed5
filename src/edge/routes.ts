/** Edge-only routes: the buffer's state and the operator's dead-letter controls. */
import { z } from '../lib/api/zod.js';
import { route, type ApiContext } from '../lib/api/route.js';
import { decimal, limitParam, TransactionState, UuidParams } from '../lib/api/schemas.js';
import { ADMIN_ROLES } from '../lib/auth.js';
import { ConflictError, NotFoundError } from '../lib/errors.js';
import { heldReason, type TransactionBuffer, type TxState } from './buffer/buffer.js';
import type { SyncView } from './sync-view.js';
import { transactionState } from './backend.js';
import { unacceptedLoss, type LostSeqs } from './lost-seqs.js';

export const BufferStats = z
  .object({
    pending_transactions: z.number().int(),
    failed_transactions: z.number().int(),
    processing_rate: z.number(),
    in_flight_transactions: z.number().int(),
    blocked_transactions: z.number().int(),
    synced_awaiting_replica: z.number().int(),
    oldest_pending_age_seconds: z.number(),
    pending_bytes: z.number().int(),
    held_bytes: z.number().int(),
    buffer_max_bytes: z.number().int(),
    last_sync_at: z.string().nullable(),
    last_error: z.unknown().nullable(),
    consecutive_failures: z.number().int(),
    central_reachable: z.boolean().nullable(),
    /** While sync waits after a failure: when it tries again (at most RETRY_MAX_MS away). */
    next_attempt_at: z.string().nullable(),
    backend: z.enum(['sqlite', 'redis']),
    accepted_total: z.number().int(),
    applied_total: z.number().int(),
    discarded_total: z.number().int(),
    /** Acknowledged transactions the buffer no longer has (found behind the local store), not yet accepted by an operator. */
    lost_transactions: z.number().int(),
    /** Central hears another edge daemon as this site (two with one SITE_NAME): its id, and since when. */
    edge_conflict: z.object({ other_edge_id: z.string(), since: z.string() }).nullable(),
    /** Central's database went back in time: the synced transactions being sent to it again, and its answers so far. */
    central_replay: z
      .object({
        after_seq: z.number().int(), through_seq: z.number().int(), started_at: z.string(),
        applied: z.number().int(), duplicate: z.number().int(), rejected: z.number().int(),
      })
      .nullable(),
    background_processor: z.enum(['running', 'paused', 'stopped', 'disabled']),
  })
  .openapi('BufferStats');

export async function bufferStats(
  buffer: TransactionBuffer, sync: SyncView, bufferMaxBytes: number, lost: readonly LostSeqs[],
): Promise<z.infer<typeof BufferStats>> {
  const s = await buffer.stats();
  const oldest = s.oldest_pending_created_at ? Date.parse(s.oldest_pending_created_at) : null;
  return {
    pending_transactions: s.pending,
    failed_transactions: s.failed,
    processing_rate: Math.round(sync.processingRate() * 1000) / 1000,
    in_flight_transactions: s.in_flight,
    blocked_transactions: s.blocked,
    synced_awaiting_replica: s.synced,
    oldest_pending_age_seconds: oldest === null ? 0 : Math.max(0, (Date.now() - oldest) / 1000),
    pending_bytes: s.pending_bytes,
    held_bytes: s.held_bytes,
    buffer_max_bytes: bufferMaxBytes,
    last_sync_at: sync.lastSyncAt(),
    last_error: sync.lastError(),
    consecutive_failures: sync.consecutiveFailures(),
    central_reachable: sync.centralReachable(),
    next_attempt_at: sync.nextAttemptAt(),
    backend: buffer.backend,
    accepted_total: s.accepted_total,
    applied_total: s.applied_total,
    discarded_total: s.discarded_total,
    lost_transactions: unacceptedLoss(lost),
    edge_conflict: sync.edgeConflict(),
    central_replay: sync.centralReplay(),
    background_processor: sync.state(),
  };
}

const FailedQuery = z
  .object({
    state: z.enum(['failed', 'blocked']).default('failed'),
    after_seq: decimal(z.number().int().nonnegative()).optional(),
    limit: limitParam,
  })
  .strict();
const AuditQuery = z.object({ limit: decimal(z.number().int().min(1).max(10_000)).default(100) }).strict();
const AuditRecord = z
  .object({ at: z.string(), transaction_id: z.string(), seq: z.number().int(), action: z.enum(['discard', 'retry', 'seq_gap']), actor: z.string(), reason: z.string().nullable() })
  .openapi('AuditRecord');
/** What the audit record says when the operator gives no reason. */
export const NO_REASON = 'no reason given';
const Discard = z.object({ reason: z.string().trim().min(1).max(1000).optional() }).strict().openapi('DiscardRequest');
const HeldTransaction = z
  .object({
    transaction_id: z.string(), seq: z.number().int(),
    waits_on: z.object({ transaction_id: z.string(), seq: z.number().int(), state: z.enum(['discarded', 'failed', 'blocked']) }),
    reason: z.string(),
  })
  .openapi('HeldTransaction');
const Released = z
  .object({
    released: z.array(z.string()), count: z.number().int(),
    /** Left blocked: each needs a discarded transaction, so central can never take it. */
    held: z.array(HeldTransaction),
  })
  .openapi('ReleasedTransactions');

const SiteTokenBody = z.object({ token: z.string().regex(/^ops_api_token_[A-Za-z0-9_-]{43}$/, 'an ops_api_token_… token') }).strict().openapi('SiteToken');

export interface EdgeRouteDeps {
  buffer: TransactionBuffer;
  sync: SyncView;
  bufferMaxBytes: number;
  /** Ranges of seqs the buffer lost (see detectLostSeqs). */
  lost: () => LostSeqs[];
  /** Stores a new site token for talking to central and wakes a paused engine. */
  /** Sets the site token kept in the local store (null: forgets it, SITE_TOKEN is used). */
  setSiteToken: (token: string | null) => void;
}

export function edgeRoutes(api: ApiContext, deps: EdgeRouteDeps): void {
  const { buffer, sync } = deps;
  const idsOf = async (seqs: number[]) => {
    const list = await Promise.all(seqs.map((s) => buffer.list({ after_seq: s - 1, limit: 1 })));
    return list.flat().map((t) => t.transaction_id);
  };

  route(api, {
    method: 'get', path: '/buffer-stats', tag: 'buffer', roles: null, response: BufferStats,
    summary: "The edge buffer's ledger and the sync engine's state (open, like /health)",
    handler: () => bufferStats(buffer, sync, deps.bufferMaxBytes, deps.lost()),
  });

  route(api, {
    method: 'put', path: '/api/sync/site-token', tag: 'buffer', roles: ADMIN_ROLES, body: SiteTokenBody, status: 204,
    summary: "Replace the site token the edge uses with central (after `opsdb site add` or a rotation); resumes a paused engine",
    handler: async ({ ctx, body }) => {
      deps.setSiteToken(body.token);
      ctx.status = 204;
    },
  });

  route(api, {
    method: 'delete', path: '/api/sync/site-token', tag: 'buffer', roles: ADMIN_ROLES, status: 204,
    summary: 'Forget the site token set with PUT; SITE_TOKEN is used again, at once',
    handler: async ({ ctx }) => {
      deps.setSiteToken(null);
      ctx.status = 204;
    },
  });

  route(api, {
    method: 'get', path: '/api/buffer/failed', tag: 'buffer', roles: ADMIN_ROLES, query: FailedQuery,
    response: TransactionState.array(), summary: 'Failed (or, with state=blocked, blocked) transactions, oldest first',
    handler: async ({ ctx, query }) => {
      const rows = await buffer.list({ state: query.state, after_seq: query.after_seq, limit: query.limit });
      if (rows.length === query.limit) ctx.set('X-Next-Cursor', String(rows.at(-1)!.seq));
      return rows.map((t) => ({ ...transactionState(t), steps: t.steps }));
    },
  });

  route(api, {
    method: 'get', path: '/api/buffer/audit', tag: 'buffer', roles: ADMIN_ROLES, query: AuditQuery, response: AuditRecord.array(),
    summary: 'Operator actions on the buffer (retries, discards with their reasons), newest first',
    handler: ({ query }) => buffer.audit(query.limit),
  });

  /** A transaction the buffer holds, or one compacted after it synced (its receipt): 404 only for an id never seen here. */
  const heldOrReceipt = async (id: string): Promise<{ state: TxState }> => {
    const t = (await buffer.get(id)) ?? (await buffer.receipt(id));
    if (!t) throw new NotFoundError(`Transaction ${id} is not in the buffer`);
    return t;
  };

  route(api, {
    method: 'post', path: '/api/buffer/failed/{id}/retry', tag: 'buffer', roles: ADMIN_ROLES, params: UuidParams,
    errors: { 409: 'Not failed or blocked, or a parent it waits on holds it (failed, blocked, or discarded)' },
    response: Released, summary: 'Send a failed transaction again, then release its blocked dependents in order',
    handler: async ({ params, principal }) => {
      const t = await heldOrReceipt(params.id);
      if (t.state !== 'failed' && t.state !== 'blocked') {
        throw new ConflictError(`Transaction ${params.id} is ${t.state}; only failed or blocked ones can be retried`, { state: t.state });
      }
      const { released, held } = await buffer.retry(params.id, principal.username);
      if (held[0]) {
        throw new ConflictError(heldReason(held[0]), { state: t.state, waits_on: held[0].waits_on });
      }
      return { released: await idsOf(released), count: released.length, held: [] };
    },
  });

  route(api, {
    method: 'post', path: '/api/buffer/retry-failed', tag: 'buffer', roles: ADMIN_ROLES, response: Released,
    summary: 'Send every failed and blocked transaction again, in order',
    handler: async ({ principal }) => {
      const { released, held } = await buffer.retryAll(principal.username);
      return {
        released: await idsOf(released), count: released.length,
        held: held.map((h) => ({ transaction_id: h.transaction_id, seq: h.seq, waits_on: h.waits_on, reason: heldReason(h) })),
      };
    },
  });

  route(api, {
    method: 'post', path: '/api/buffer/failed/{id}/discard', tag: 'buffer', roles: ADMIN_ROLES, params: UuidParams,
    errors: { 409: 'Not failed or blocked' },
    body: Discard, bodyOptional: true, response: TransactionState,
    summary: 'Give up on a failed or blocked transaction (kept, with an audit record); the body and its reason are optional',
    handler: async ({ params, body, principal }) => {
      const t = await heldOrReceipt(params.id);
      if (!(await buffer.discard(params.id, principal.username, body.reason ?? NO_REASON))) {
        throw new ConflictError(`Transaction ${params.id} is ${t.state}; only failed or blocked ones can be discarded`, { state: t.state });
      }
      return transactionState((await buffer.get(params.id))!);
    },
  });
}
