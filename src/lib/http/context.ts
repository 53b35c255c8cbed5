/**
 * What the request pipeline, the body reader and route handlers use of a
 * request's context: a small part of koa's. Every request has a koa context
 * except the hot writes, which run the same pipeline and the same route code
 * on a LiteContext (see FastLane): koa's context, router and response
 * machinery cost about as much event-loop time as a durable write's own work.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { ParsedUrlQuery } from 'node:querystring';

export interface HttpContext {
  readonly req: IncomingMessage;
  readonly method: string;
  /** The URL's path, without its query. */
  readonly path: string;
  readonly query: ParsedUrlQuery;
  /** Path parameters of the route matched (`{id}`). */
  params: Record<string, string>;
  state: Record<string, unknown>;
  status: number;
  body: unknown;
  /** A request header, '' when absent. */
  get(field: string): string;
  /** Sets a response header. */
  set(field: string, value: string): void;
  /** The matched route, in koa-router's syntax (`/x/:id`); the metrics label. */
  routerPath?: string | undefined;
}

export type Middleware = (ctx: HttpContext, next: () => Promise<unknown>) => Promise<void>;
type RouteRunner = (ctx: HttpContext) => Promise<void>;

/** Statuses that carry no body (koa's `statuses.empty`). */
const EMPTY = new Set([204, 205, 304]);

/**
 * A request's context without koa: exactly what a JSON route and the
 * pipeline need. Setting the status and the body does what koa's response
 * does for a JSON body or none, in the same order (headers included), so the
 * pipeline logs and counts what goes out.
 */
class LiteContext implements HttpContext {
  readonly query: ParsedUrlQuery = {};
  state: Record<string, unknown> = {};
  private code = 404;
  private explicitStatus = false;
  private content: unknown = undefined;

  get status(): number {
    return this.code;
  }

  set status(code: number) {
    this.code = code;
    this.explicitStatus = true;
  }

  get body(): unknown {
    return this.content;
  }

  set body(value: unknown) {
    this.content = value;
    if (value === undefined || value === null) {
      if (!EMPTY.has(this.code)) this.code = 204;
      this.res.removeHeader('Content-Type');
      this.res.removeHeader('Content-Length');
      return;
    }
    if (!this.explicitStatus) this.code = 200;
    if (!this.res.hasHeader('Content-Type')) this.res.setHeader('Content-Type', 'application/json; charset=utf-8');
  }

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly method: string,
    readonly path: string,
    public params: Record<string, string>,
    readonly routerPath: string,
  ) {}

  get(field: string): string {
    const v = this.req.headers[field.toLowerCase()];
    return v === undefined ? '' : String(v);
  }

  set(field: string, value: string): void {
    this.res.setHeader(field, value);
  }
}

interface HotRoute {
  method: string;
  /** The path itself, or a pattern when it has parameters. */
  path: string;
  pattern: RegExp | null;
  routerPath: string;
  run: RouteRunner;
}

/**
 * Serves a few routes (the hot writes) without koa, through the same
 * pipeline middleware and the same route code, answering what koa would:
 * the same status, headers and JSON body. Only a request naming a route's
 * path exactly (same case, no trailing slash, no query, parameters of plain
 * characters) takes the fast lane; any other goes to koa, which decides as
 * it always has.
 */
export class FastLane {
  /** Requests served in the fast lane so far (tests check the lane was taken). */
  served = 0;
  private readonly exact = new Map<string, HotRoute>();
  private readonly patterns: HotRoute[] = [];

  /** `path` in OpenAPI syntax (`/x/{id}/finish`); each method and path once. */
  add(method: string, path: string, routerPath: string, run: RouteRunner): void {
    const key = `${method.toUpperCase()} ${path}`;
    if (this.exact.has(key) || this.patterns.some((r) => `${r.method} ${r.path}` === key)) {
      throw new Error(`FastLane: ${key} is already served (one FastLane per app)`);
    }
    // Characters a parameter may hold here are those percent-decoding leaves as they are, so koa-router would see the same value.
    const parts = path.split(/\{(\w+)\}/);
    const pattern = parts.length === 1 ? null : new RegExp(`^${parts
      .map((part, i) => (i % 2 === 1 ? `(?<${part}>[0-9A-Za-z_.~-]+)` : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('')}$`);
    const route: HotRoute = { method: method.toUpperCase(), path, pattern, routerPath, run };
    if (pattern) this.patterns.push(route);
    else this.exact.set(key, route);
  }

  /** The request listener: the fast lane for hot routes, koa for the rest. */
  listener(pipeline: Middleware, koa: RequestListener): RequestListener {
    return (req, res) => {
      const hit = this.match(req.method ?? '', req.url ?? '');
      if (!hit) return koa(req, res);
      this.served += 1;
      const ctx = new LiteContext(req, res, hit.route.method, hit.path, hit.params, hit.route.routerPath);
      pipeline(ctx, () => hit.route.run(ctx))
        .then(() => respond(ctx))
        .catch(() => fail(res));
    };
  }

  private match(method: string, url: string): { route: HotRoute; path: string; params: Record<string, string> } | null {
    const exact = this.exact.get(`${method} ${url}`);
    if (exact) return { route: exact, path: url, params: {} };
    for (const route of this.patterns) {
      if (route.method !== method) continue;
      const m = route.pattern!.exec(url);
      if (m) return { route, path: url, params: { ...m.groups } };
    }
    return null;
  }
}

/** What koa's respond() does for a JSON body or none (all the fast lane's routes answer with); the headers are set already. */
function respond(ctx: LiteContext): void {
  const res = ctx.res;
  if (res.writableEnded || res.destroyed) return;
  res.statusCode = ctx.status;
  if (EMPTY.has(ctx.status) || ctx.body === undefined || ctx.body === null) {
    res.end();
    return;
  }
  const body = JSON.stringify(ctx.body);
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

/**
 * The pipeline answers every error itself, so reaching here is a bug (a body
 * that cannot be serialised, say). As koa does: a bare 500, or, once the
 * answer has begun, the connection closed.
 */
function fail(res: ServerResponse): void {
  if (res.writableEnded || res.destroyed) return;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': 21 });
  res.end('Internal Server Error');
}
