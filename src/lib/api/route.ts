/**
 * One definition per endpoint: the same zod schemas validate the request,
 * shape the OpenAPI document, and type the handler's input.
 */
import type Router from '@koa/router';
import { OpenAPIRegistry, OpenApiGeneratorV31, type RouteConfig } from '@asteasolutions/zod-to-openapi';
import type { ZodType } from 'zod';
import { z } from './zod.js';
import { ErrorBody, type Role } from './schemas.js';
import { fastPathOf } from './fast-parse.js';
import { ForbiddenError, MethodNotAllowedError, UnauthorizedError, ValidationError } from '../errors.js';
import { badTextError, findBadText, readJsonBody } from '../http/body.js';
import { effectiveRoles, hashToken, looksLikeToken, type Principal } from '../auth.js';
import type { OpsBackend } from './backend.js';
import type { FastLane, HttpContext } from '../http/context.js';

type Method = 'get' | 'post' | 'put' | 'delete';

export interface HandlerInput<B, Q, P> {
  ctx: HttpContext;
  body: B;
  query: Q;
  params: P;
  /** Null only on routes without auth. */
  principal: Principal;
}

export interface RouteDef<B extends ZodType, Q extends ZodType, P extends ZodType> {
  method: Method;
  /** OpenAPI path syntax: `/executed_obs_units/{id}`. */
  path: string;
  summary: string;
  tag: string;
  /** Roles allowed (admin always is); `null` = no token needed. */
  roles: readonly Role[] | null;
  body?: B;
  /** The body may be left out entirely (no bytes at all); it is then validated as `{}`. */
  bodyOptional?: true;
  query?: Q;
  params?: P;
  status?: number;
  response?: ZodType;
  /** Answers beyond those every route of its kind gets (below): an error code's description, or a body of its own. */
  errors?: Record<number, string | { description: string; schema: ZodType }>;
  /** A hot write: served without koa (FastLane) when its path is named exactly. */
  hot?: true;
  handler: (input: HandlerInput<z.infer<B>, z.infer<Q>, z.infer<P>>) => Promise<unknown>;
}

export interface ApiContext {
  router: Router;
  openapi: OpenAPIRegistry;
  backend: OpsBackend;
  maxBodyBytes: number;
  /** Where hot routes register; false when they are served by koa too. */
  fastLane: FastLane | false;
}

function issues(err: z.ZodError, where: string) {
  return err.issues.map((i) => ({ location: where, path: i.path.join('.'), message: i.message }));
}

/**
 * Validates one part of a request; a body comes from readJsonBody, which has
 * already refused text PostgreSQL cannot hold. A well-formed value of a
 * schema with a fast path (fast-parse.ts) is taken without zod.
 */
function parse<T extends ZodType>(schema: T | undefined, value: unknown, where: string): z.infer<T> {
  if (!schema) return undefined as z.infer<T>;
  if (where !== 'body') {
    const bad = findBadText(value);
    if (bad) throw badTextError(where, bad);
  }
  if (where === 'query' && value && typeof value === 'object') {
    // `?limit=1&limit=2` arrives as an array, which no query field takes: say that, not "received NaN".
    const repeated = Object.entries(value).filter(([, v]) => Array.isArray(v)).map(([k]) => k);
    if (repeated.length) {
      throw new ValidationError(`Invalid query: ${repeated.join(', ')}: given more than once; give each parameter at most once`,
        repeated.map((k) => ({ location: 'query', path: k, message: 'given more than once' })));
    }
  }
  const fast = fastPathOf(schema)?.(value);
  if (fast !== undefined) return fast as z.infer<T>;
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const list = issues(r.error, where);
  const first = list[0]!;
  throw new ValidationError(
    `Invalid ${where}: ${first.path ? `${first.path}: ` : ''}${first.message}${list.length > 1 ? ` (and ${list.length - 1} more)` : ''}`,
    list,
  );
}

/**
 * A client sends the same token with every request: its SHA-256 is kept
 * rather than made again each time (bounded; cleared when full). The keys
 * are the tokens themselves, in this process's memory only, as each request's
 * headers already are; nothing here is logged or stored.
 */
const tokenHashes = new Map<string, string>();
function tokenHash(token: string): string {
  let hash = tokenHashes.get(token);
  if (hash === undefined) {
    if (tokenHashes.size >= 1000) tokenHashes.clear();
    hash = hashToken(token);
    tokenHashes.set(token, hash);
  }
  return hash;
}

/** Checks the bearer token; throws 401 for a missing, unknown, revoked or expired one. */
export async function authenticate(ctx: HttpContext, backend: OpsBackend): Promise<Principal> {
  const header = ctx.get('authorization');
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw new UnauthorizedError(header ? 'Authorization header must be "Bearer <token>"' : 'Missing bearer token');
  const token = m[1]!;
  if (!looksLikeToken(token)) throw new UnauthorizedError('Invalid token', 'invalid_token');
  const rec = await backend.auth.findToken(tokenHash(token));
  if (!rec) throw new UnauthorizedError('Invalid token', 'invalid_token');
  if (!rec.tokenActive) throw new UnauthorizedError('Token has been revoked', 'token_revoked');
  if (rec.expiresAt && rec.expiresAt.getTime() <= Date.now()) throw new UnauthorizedError('Token has expired', 'token_expired');
  if (!rec.userActive) throw new UnauthorizedError('User is deactivated', 'user_inactive');
  backend.auth.touchToken(rec.tokenId);
  return {
    userId: rec.userId,
    username: rec.username,
    roles: effectiveRoles(rec),
    tokenId: rec.tokenId,
    siteName: rec.siteName,
    scoped: rec.scopes.length > 0,
  };
}

/** A request that carries no body at all: no Content-Length (or 0) and no chunked one. */
function noBody(ctx: HttpContext): boolean {
  return !ctx.get('transfer-encoding') && Number(ctx.get('content-length') || 0) === 0;
}

export function requireRole(principal: Principal, roles: readonly Role[]): void {
  if (roles.some((r) => principal.roles.has(r))) return;
  throw new ForbiddenError(`This needs one of the roles: ${roles.join(', ')}`, {
    required: roles,
    have: [...principal.roles],
  });
}

/** What a write buffered at an edge may answer besides its own errors (for the OpenAPI document). */
export const BUFFERED_WRITE_ERRORS = {
  503: 'The buffer is unavailable; nothing was stored',
  507: 'Buffer full (BUFFER_MAX_BYTES) or disk low (MIN_FREE_DISK_BYTES); nothing was stored',
};

/** Per router: each path without parameters (lower case, no trailing slash) → the methods routed there. */
const staticPaths = new WeakMap<Router, Map<string, string[]>>();
const pathKey = (path: string) => path.toLowerCase().replace(/\/+$/, '');

/**
 * `GET /executed_obs_units/start` matches `GET /executed_obs_units/{id}` too, and was a 422 ("not a UUID")
 * for a path that exists with another method: a 405 naming the methods, as for any other path.
 */
function methodNotAllowed(router: Router, ctx: HttpContext): MethodNotAllowedError | null {
  const methods = methodsOn(router, ctx.path);
  if (!methods || methods.includes(ctx.method)) return null;
  ctx.set('Allow', methods.join(', '));
  return new MethodNotAllowedError(ctx.method, ctx.path);
}

/**
 * The methods routed to a path without parameters, or null. (The router's own `Allow` for such a path
 * also lists the methods of a route with an `{id}` that matches it, which answer 405 there.)
 */
export function methodsOn(router: Router, path: string): string[] | null {
  return staticPaths.get(router)?.get(pathKey(path)) ?? null;
}

export function route<B extends ZodType = ZodType, Q extends ZodType = ZodType, P extends ZodType = ZodType>(
  api: ApiContext,
  def: RouteDef<B, Q, P>,
): void {
  const status = def.status ?? 200;
  const responses: RouteConfig['responses'] = {
    [status]: {
      description: 'OK',
      ...(def.response ? { content: { 'application/json': { schema: def.response } } } : {}),
    },
  };
  const errors: NonNullable<RouteDef<B, Q, P>['errors']> = { 422: 'Invalid input' };
  if (def.roles) Object.assign(errors, { 401: 'Missing or invalid token', 403: 'Role not allowed' });
  if (def.body) Object.assign(errors, { 400: 'Malformed JSON', 413: 'Body too large', 415: 'Content-Type is not application/json' });
  if (def.params) Object.assign(errors, { 404: 'Not found' });
  // A write the edge buffers (answered 201/202 there) can meet a buffer that is full or unavailable.
  if (api.backend.siteType === 'secondary' && (status === 201 || status === 202)) {
    Object.assign(errors, BUFFERED_WRITE_ERRORS);
  }
  Object.assign(errors, def.errors);
  for (const [code, e] of Object.entries(errors)) {
    const { description, schema } = typeof e === 'string' ? { description: e, schema: ErrorBody } : e;
    responses[code] = { description, content: { 'application/json': { schema } } };
  }
  api.openapi.registerPath({
    method: def.method,
    path: def.path,
    summary: def.summary,
    tags: [def.tag],
    ...(def.roles
      ? { security: [{ bearerAuth: [] }], description: `Roles: ${def.roles.join(', ')}${def.roles.some((r) => r !== 'site' && r !== 'admin') ? ' (and admin)' : ''}.` }
      : {}),
    request: {
      ...(def.params ? { params: def.params as never } : {}),
      ...(def.query ? { query: def.query as never } : {}),
      ...(def.body ? { body: { content: { 'application/json': { schema: def.body } } } } : {}),
    },
    responses,
  });

  const koaPath = def.path.replace(/\{(\w+)\}/g, ':$1');
  if (!def.params) {
    const paths = staticPaths.get(api.router) ?? new Map<string, string[]>();
    staticPaths.set(api.router, paths);
    const methods = paths.get(pathKey(def.path)) ?? [];
    paths.set(pathKey(def.path), [...methods, def.method.toUpperCase(), ...(def.method === 'get' ? ['HEAD'] : [])]);
  }
  const run = async (ctx: HttpContext): Promise<void> => {
    if (def.params) {
      const notAllowed = methodNotAllowed(api.router, ctx);
      if (notAllowed) throw notAllowed;
    }
    const principal = def.roles ? await authenticate(ctx, api.backend) : (null as unknown as Principal);
    if (def.roles) {
      ctx.state.principal = principal;
      requireRole(principal, def.roles);
    }
    const params = parse(def.params, ctx.params, 'path parameter');
    const query = parse(def.query, ctx.query, 'query');
    const body = def.body ? parse(def.body, def.bodyOptional && noBody(ctx) ? {} : await readJsonBody(ctx, api.maxBodyBytes), 'body') : undefined;
    const result = await def.handler({ ctx, body: body as never, query: query as never, params: params as never, principal });
    if (ctx.body === undefined) {
      ctx.status = status;
      ctx.body = result;
    }
  };
  api.router[def.method](koaPath, (ctx) => run(ctx));
  if (def.hot && api.fastLane) api.fastLane.add(def.method, def.path, koaPath, run);
}

export function buildOpenApiDocument(registry: OpenAPIRegistry, siteType: string) {
  registry.registerComponent('securitySchemes', 'bearerAuth', { type: 'http', scheme: 'bearer' });
  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'ops-db-api',
      version: '0.1.0',
      description: `Observatory operations database API (${siteType === 'main' ? 'central, SITE_TYPE=main' : 'edge, SITE_TYPE=secondary'}).`,
    },
  });
}
