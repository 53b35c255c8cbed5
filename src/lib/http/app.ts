import Koa from 'koa';
import Router from '@koa/router';
import { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import type { AppMetrics } from '../metrics.js';
import type { OpsBackend } from '../api/backend.js';
import { requestPipeline } from './middleware.js';
import { docsRoutes } from './docs.js';
import { buildOpenApiDocument, authenticate, requireRole, type ApiContext } from '../api/route.js';
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
}

/** The common HTTP surface (SPEC §4), served the same way by central and edge. */
export function createHttpApp(opts: HttpAppOptions): Koa {
  const { config, log, metrics, backend } = opts;
  const app = new Koa({ proxy: false });
  app.silent = true; // errors are logged by requestPipeline
  const router = new Router();
  const api: ApiContext = { router, openapi: new OpenAPIRegistry(), backend, maxBodyBytes: config.maxBodyBytes };

  systemRoutes(api, { demoMode: config.demoMode });
  referenceRoutes(api);
  observationRoutes(api);
  opts.extraRoutes?.(api);

  router.get('/metrics', async (ctx) => {
    if (!config.metricsPublic) requireRole(await authenticate(ctx, backend), ['viewer', 'service']);
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.registry.metrics();
  });
  docsRoutes(router, () => buildOpenApiDocument(api.openapi, config.siteType));

  app.use(requestPipeline(log, metrics, opts.mapError));
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
