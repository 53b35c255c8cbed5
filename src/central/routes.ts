/** Central-only routes: the sync protocol for edges and the sites register. */
import type { Pool } from './db.js';
import type { Logger } from '../lib/logger.js';
import type { AppMetrics } from '../lib/metrics.js';
import { Counter } from 'prom-client';
import { route, type ApiContext } from '../lib/api/route.js';
import { AppError, ForbiddenError } from '../lib/errors.js';
import { ADMIN_ROLES, type Principal } from '../lib/auth.js';
import { Backlog, ChangesPage, ChangesQuery, CreateSite, CreatedSite, EDGE_CONFLICT_HEADER, EDGE_ID_HEADER, REPLICA_HEADER, SINCE_ID_HEADER, SiteInfo, SyncBatch, SyncBatchResult, SENT_AT_HEADER } from '../lib/api/sync-schemas.js';
import { applyBatch, centralBufferStats, createSite, listSites, noteEdge, readChanges, touchSite } from './sync.js';
import { UUID_RE } from '../lib/uuid.js';


/** A site token acts only for its own site. */
function siteOf(principal: Principal, claimed?: string): string {
  const site = principal.siteName;
  if (!site) throw new ForbiddenError('This token is not a site token');
  if (claimed !== undefined && claimed !== site) {
    throw new ForbiddenError(`This site token belongs to site "${site}", not "${claimed}"`, { token_site: site, claimed });
  }
  return site;
}

function parseBacklogHeader(value: string): Backlog | null {
  if (!value) return null;
  try {
    const r = Backlog.safeParse(JSON.parse(value));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

export function centralRoutes(api: ApiContext, pool: Pool, log: Logger, metrics: AppMetrics): void {
  const results = new Counter({
    name: 'opsdb_central_sync_transactions_total',
    help: "Transactions received from edges, by site and central's answer",
    labelNames: ['site', 'result'] as const,
    registers: [metrics.registry],
  });
  /** Notes the edge process behind a sync request; if another one speaks for the same site, says so in a header. */
  const tellOtherEdge = async (ctx: { get(name: string): string; set(name: string, value: string): void }, site: string) => {
    const edgeId = ctx.get(EDGE_ID_HEADER).toLowerCase();
    if (!UUID_RE.test(edgeId)) return; // an edge from before edge ids, or another client
    const sentAt = Date.parse(ctx.get(SENT_AT_HEADER));
    const other = await noteEdge(pool, site, edgeId, log, Number.isNaN(sentAt) ? null : sentAt);
    if (other) ctx.set(EDGE_CONFLICT_HEADER, other);
  };

  route(api, {
    method: 'post', path: '/api/sync/transactions', tag: 'sync', roles: ['site'], body: SyncBatch, response: SyncBatchResult,
    errors: { 409: "out_of_order (the batch it follows is not applied), or central_went_back (central's feed does not have the edge's replica position: nothing applied)" },
    summary: "Apply a batch of an edge's transactions, each exactly once and in seq order",
    handler: async ({ ctx, body, principal }) => {
      const site = siteOf(principal, body.site);
      const foreign = body.transactions.find((t) => t.site !== site);
      if (foreign) throw new ForbiddenError(`Transaction ${foreign.transaction_id} is for site "${foreign.site}", not "${site}"`);
      await tellOtherEdge(ctx, site);
      const replica = /^(\d+) (\S+)$/.exec(ctx.get(REPLICA_HEADER));
      // A client that gave up (an edge past its timeout sends the batch again) stops this one's waiting.
      const gone = new AbortController();
      const hangUp = () => gone.abort();
      ctx.req.socket.once('close', hangUp);
      const out = await applyBatch(pool, body, principal.userId, log, undefined, gone.signal,
        replica ? { pos: Number(replica[1]), id: replica[2]! } : undefined)
        .finally(() => ctx.req.socket.off('close', hangUp));
      const counts = { applied: 0, duplicate: 0, rejected: 0 };
      for (const r of out.results) counts[r.result] += 1;
      for (const [result, n] of Object.entries(counts)) if (n) results.inc({ site, result }, n);
      log.info({ site, batch: body.transactions.length, ...counts, position: out.position }, 'sync batch applied');
      return out;
    },
  });

  route(api, {
    method: 'get', path: '/api/sync/changes', tag: 'sync', roles: ['site'], query: ChangesQuery, response: ChangesPage,
    summary: "The change feed for an edge's replica: reference data, accounts for offline auth, this site's rows",
    handler: async ({ ctx, query, principal }) => {
      const site = siteOf(principal);
      await tellOtherEdge(ctx, site);
      await touchSite(pool, site, parseBacklogHeader(ctx.get('x-opsdb-backlog')));
      return readChanges(pool, site, query.since, query.max_rows, ctx.get(SINCE_ID_HEADER) || null);
    },
  });

  route(api, {
    method: 'get', path: '/buffer-stats', tag: 'sites', roles: ADMIN_ROLES,
    summary: "Central has no buffer: the edges' last reported backlogs added up, and central's apply rate",
    handler: () => centralBufferStats(pool),
  });

  route(api, {
    method: 'post', path: '/api/sites/', tag: 'sites', roles: ADMIN_ROLES, body: CreateSite, status: 201, response: CreatedSite,
    summary: 'Register an edge site; its site token is shown once',
    handler: ({ body }) => createSite(pool, body.name, body.description ?? null),
  });

  route(api, {
    method: 'get', path: '/api/sites/', tag: 'sites', roles: ADMIN_ROLES, response: SiteInfo.array(),
    summary: 'Sites with their sync health: last contact, last applied seq, the backlog each edge reports',
    handler: () => listSites(pool),
  });
}
