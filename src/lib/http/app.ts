import Koa from 'koa';
import type { RequestListener } from 'node:http';
import Router from '@koa/router';
import { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import type { AppMetrics } from '../metrics.js';
import type { OpsBackend } from '../api/backend.js';
import { requestPipeline } from './middleware.js';
import { FastLane } from './context.js';
import { docsRoutes } from './docs.js';
import { buildOpenApiDocument, authenticate, requireRole, methodsOn, type ApiContext } from '../api/route.js';
import { systemRoutes } from '../api/routes/system.js';
import { referenceRoutes } from '../api/routes/reference.js';
import { observationRoutes } from '../api/routes/observations.js';

export interface HttpAppOptions {
  config: Config;
  log: Logger;
  metrics: AppMetrics;
  backend: OpsBackend;
  /** Turns storage errors a client caused (bad values, constraints) into AppErrors. */
  mapError?: (err: unknown) => unknown;
  /** Site-specific routes (sync endpoints at central, buffer control at the edge). */
  extraRoutes?: (api: ApiContext) => void;
  /** Serves the hot writes without koa; `false` serves them with koa too. By default as HTTP_FAST_LANE says. */
  fastLane?: FastLane | false;
}

/** The common HTTP surface (SPEC §4), served the same way by central and edge: the server's request listener. */
export function createHttpApp(opts: HttpAppOptions): RequestListener {
  const { config, log, metrics, backend } = opts;
  const app = new Koa({ proxy: false });
  app.silent = true; // errors are logged by requestPipeline
  const router = new Router();
  const fastLane = opts.fastLane ?? (config.httpFastLane ? new FastLane() : false);
  const api: ApiContext = { router, openapi: new OpenAPIRegistry(), backend, maxBodyBytes: config.maxBodyBytes, fastLane };

  systemRoutes(api, { demoMode: config.demoMode });
  referenceRoutes(api);
  observationRoutes(api);
  opts.extraRoutes?.(api);

  router.get('/metrics', async (ctx) => {
    if (!config.metricsPublic) {
      const principal = await authenticate(ctx, backend);
      // Before the role check, as route() does: the access line names the caller, also when refused.
      ctx.state.principal = principal;
      requireRole(principal, ['viewer', 'service']);
    }
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.registry.metrics();
  });
  docsRoutes(router, () => buildOpenApiDocument(api.openapi, config.siteType));

  const pipeline = requestPipeline(log, metrics, opts.mapError);
  app.use(pipeline);
  app.use(async (ctx, next) => {
    await next();
    const methods = ctx.status === 405 || ctx.method === 'OPTIONS' ? methodsOn(router, ctx.path) : null;
    if (methods) ctx.set('Allow', methods.join(', '));
  });
  app.use(router.routes());
  app.use(router.allowedMethods());
  return fastLane ? fastLane.listener(pipeline, app.callback()) : app.callback();
}
