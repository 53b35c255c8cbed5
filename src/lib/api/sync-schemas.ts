/** Wire schemas of the edge ↔ central sync protocol (SPEC §4, central only). */
import { z } from './zod.js';
import { TransactionSchema } from './transaction.js';
import { decimal } from './schemas.js';

export const Backlog = z
  .object({
    pending: z.number().int().nonnegative(),
    in_flight: z.number().int().nonnegative(),
    blocked: z.number().int().nonnegative(),
    failed: z.number().int().nonnegative(),
    oldest_pending_age_seconds: z.number().nonnegative(),
    last_seq: z.number().int().nonnegative(),
    pending_bytes: z.number().int().nonnegative(),
  })
  .openapi('SiteBacklog');
export type Backlog = z.infer<typeof Backlog>;

export const SyncBatch = z
  .object({
    site: z.string().min(1).max(63),
    transactions: z.array(TransactionSchema.extend({ seq: z.number().int().positive() })).min(1).max(10_000),
    backlog: Backlog.optional(),
    /** Names this batch, so the next one can say it comes after it. */
    batch_id: z.uuid().optional(),
    /** Apply only after this batch of the site has committed (an edge sends its next batch early). */
    after_batch: z.uuid().nullable().optional(),
  })
  .strict()
  // Each transaction is answered by its id: one named twice would get two answers under one id.
  .superRefine((batch, ctx) => {
    const ids = new Map<string, number>();
    batch.transactions.forEach((t, i) => {
      const id = t.transaction_id.toLowerCase();
      const first = ids.get(id);
      if (first !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['transactions', i, 'transaction_id'], message: `repeats transactions[${first}]: a batch names each transaction once` });
      } else ids.set(id, i);
    });
  })
  .openapi('SyncBatch');
export type SyncBatch = z.infer<typeof SyncBatch>;

export const SyncItemResult = z
  .object({
    transaction_id: z.uuid(),
    seq: z.number().int(),
    result: z.enum(['applied', 'duplicate', 'rejected']),
    code: z.string().optional(),
    reason: z.string().optional(),
    details: z.unknown().optional(),
  })
  .openapi('SyncItemResult');
export type SyncItemResult = z.infer<typeof SyncItemResult>;

export const SyncBatchResult = z
  .object({
    results: z.array(SyncItemResult), position: z.number().int().nonnegative(),
    /** What `position` is in central's history, as a changes page's `position_id` (absent from older centrals, and at 0). */
    position_id: z.string().optional(),
  })
  .openapi('SyncBatchResult');
export type SyncBatchResult = z.infer<typeof SyncBatchResult>;

export const ChangesQuery = z
  .object({
    since: decimal(z.number().int().nonnegative()).default(0),
    max_rows: decimal(z.number().int().min(1).max(50_000)).default(5000),
  })
  .strict();

export const Change = z
  .object({
    table: z.string(),
    key: z.string(),
    /** The row as central has it now; null when it no longer exists. For user_role: `{user_id, roles}`. */
    row: z.record(z.string(), z.unknown()).nullable(),
  })
  .openapi('Change');
export type Change = z.infer<typeof Change>;

export const ChangesPage = z
  .object({
    changes: z.array(Change),
    /** Pass as `since` for the next page. */
    position: z.number().int().nonnegative(),
    /** True when positions beyond `position` exist already. */
    more: z.boolean(),
    /**
     * Central's newest committed position. Below the `since` an edge asked
     * with, it means central's feed went back: its database was restored
     * from a backup, or failed over to a copy that was behind. (Absent from
     * an older central.)
     */
    head: z.number().int().nonnegative().optional(),
    /**
     * What `position` is in central's history (its transaction and when it
     * committed). An edge sends it back with its next pull (SINCE_ID_HEADER).
     * (Absent from an older central.)
     */
    position_id: z.string().optional(),
    /**
     * True when the position the edge asked after is not the one it read
     * there (SINCE_ID_HEADER): central's database went back in time and has
     * given that position out again, to a change this edge has not seen.
     * The page is then empty.
     */
    since_unknown: z.boolean().optional(),
  })
  .openapi('ChangesPage');
export type ChangesPage = z.infer<typeof ChangesPage>;

export const CreateSite = z
  .object({ name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'lower-case letters, digits, "-" and "_"'), description: z.string().max(500).optional() })
  .strict()
  .openapi('CreateSite');

/**
 * Sent by an edge with a pull: the `position_id` central gave with the
 * position it asks after. In a header, so a central older than it (whose
 * query is strict) ignores it.
 */
export const SINCE_ID_HEADER = 'x-opsdb-since-id';
/**
 * Sent by an edge with a batch: the newest position of central's feed it
 * knows (its replica's, or its last batch's answer), as `<position>
 * <position_id>`. Central refuses the batch, applying nothing
 * (409 `central_went_back`), when its feed does not have that position as the
 * edge read it: its database went back in time, and the edge must first send
 * again what central lost. A central older than it ignores it.
 */
export const REPLICA_HEADER = 'x-opsdb-replica';
/** Sent by an edge with every sync request: its process's id, a UUIDv7 made at its start (so it tells when). */
export const EDGE_ID_HEADER = 'x-opsdb-edge-id';
/** Sent by an edge with every sync request: when the request was made (ISO time, the edge's clock). */
export const SENT_AT_HEADER = 'x-opsdb-sent-at';
/** Sent by central when another edge process speaks for the same site: that one's id. */
export const EDGE_CONFLICT_HEADER = 'x-opsdb-edge-conflict';

export const SiteInfo = z
  .object({
    name: z.string(),
    description: z.string().nullable(),
    created_at: z.string(),
    last_contact_at: z.string().nullable(),
    last_applied_seq: z.number().int(),
    seconds_since_contact: z.number().nullable(),
    reported_backlog: Backlog.nullable(),
    /** Transactions the edge holds that central has not applied (from the edge's report). */
    lag_transactions: z.number().int().nullable(),
    /** The edge process central last heard from (random per start of the daemon). */
    edge_id: z.string().nullable(),
    /** When two edge processes were last seen taking turns as this site (two daemons with one SITE_NAME). */
    edge_conflict_at: z.string().nullable(),
    /** True while that was within the last 5 minutes. */
    edge_conflict: z.boolean(),
  })
  .openapi('SiteInfo');
export const CreatedSite = SiteInfo.extend({ token: z.string().openapi({ description: 'the site token, shown once' }) }).openapi('CreatedSite');
