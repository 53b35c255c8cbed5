import { randomUUID } from 'node:crypto';
import type { Middleware } from './context.js';
import { AppError, MethodNotAllowedError } from '../errors.js';
import { accessLogger, type Logger } from '../logger.js';
import type { AppMetrics } from '../metrics.js';

export function errorBody(code: string, message: string, details: unknown = null) {
  return { error: { code, message, details } };
}

/**
 * First middleware of every app: gives the request an id, maps every error to
 * the one JSON error shape, and writes one access-log line with the duration.
 * Unexpected errors become a 500 whose body reveals nothing internal.
 */
export function requestPipeline(log: Logger, metrics: AppMetrics, mapError: (err: unknown) => unknown = (e) => e): Middleware {
  const access = accessLogger(log);
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    const incoming = ctx.get('x-request-id');
    const id = /^[\w.-]{1,100}$/.test(incoming) ? incoming : randomUUID();
    ctx.state.requestId = id;
    ctx.set('X-Request-Id', id);
    let failure: unknown;
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        ctx.status = 404;
        ctx.body = errorBody('not_found', `No route for ${ctx.method} ${ctx.path}`);
      } else if (ctx.status === 405 || ctx.status === 501) {
        // 501 is the router's word for a method it knows no route for at all (TRACE, PROPFIND…): still
        // the client's request, so a 4xx as any other method not allowed.
        const e = new MethodNotAllowedError(ctx.method, ctx.path);
        ctx.status = e.status;
        ctx.body = errorBody(e.code, e.message);
      }
    } catch (thrown) {
      const err = mapError(thrown);
      failure = err;
      if (err instanceof AppError) {
        ctx.status = err.status;
        ctx.body = errorBody(err.code, err.message, err.details);
      } else {
        ctx.status = 500;
        ctx.body = errorBody('internal_error', 'Internal server error; see the server log for request ' + id);
      }
      if (ctx.status === 401) ctx.set('WWW-Authenticate', 'Bearer');
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const route = ctx.routerPath ?? (ctx.status === 404 ? 'unmatched' : ctx.path);
    metrics.httpDuration.labels(ctx.method, route, String(ctx.status)).observe(seconds);
    const line = {
      req_id: id,
      method: ctx.method,
      path: ctx.path,
      status: ctx.status,
      duration_ms: Math.round(seconds * 1e6) / 1e3,
      user: (ctx.state.principal as { username?: string } | undefined)?.username,
    };
    if (failure && !(failure instanceof AppError)) log.error({ ...line, err: failure }, 'request failed');
    else if (failure instanceof AppError && failure.status >= 500 && failure.cause) log.warn({ ...line, err: failure.cause }, `request failed: ${failure.message}`);
    else access.info(line, 'request');
  };
}
