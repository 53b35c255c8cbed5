import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../lib/config.js';
import type { Logger } from '../lib/logger.js';
import { createMetrics } from '../lib/metrics.js';
import { createHttpApp, type HttpAppOptions } from '../lib/http/app.js';
import { createPool, type Pool } from './db.js';
import { pendingMigrations } from './migrate.js';
import { CentralBackend } from './backend.js';
import { mapPgError } from './apply.js';
import { centralRoutes } from './routes.js';
import { closeServer, createStoppableServer } from '../lib/http/close.js';

export interface RunningCentral {
  url: string;
  port: number;
  pool: Pool;
  backend: CentralBackend;
  status(): Promise<string>;
  healthy(): Promise<boolean>;
  stop(): Promise<void>;
}

/**
 * Starts central: checks the database is reachable and migrated before
 * opening the port, so a misconfigured process fails at start, not at the
 * first request.
 */
export async function startCentral(config: Config, log: Logger, given?: Pool, http: Pick<HttpAppOptions, 'fastLane'> = {}): Promise<RunningCentral> {
  // A given pool (the demo's single PGlite connection) stays open when central stops; its owner ends it.
  const pool = given ?? createPool(config.databaseUrl!, config.databasePoolMax);
  const endPool = () => (given ? Promise.resolve() : pool.end());
  try {
    const pending = await pendingMigrations(pool);
    if (pending.length > 0) {
      throw new Error(`Database schema is behind (${pending.join(', ')} not applied); run "opsdb migrate" first`);
    }
  } catch (err) {
    await endPool();
    throw err;
  }
  const backend = new CentralBackend(pool, config.siteName);
  const metrics = createMetrics();
  const app = createHttpApp({
    ...http, config, log, metrics, backend,
    mapError: (err) => mapPgError(err),
    extraRoutes: (api) => centralRoutes(api, pool, log, metrics),
  });
  const server: Server = createStoppableServer(app);
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  log.info({ url, site: config.siteName, site_type: 'main' }, 'central listening');
  return {
    url,
    port,
    pool,
    backend,
    async status() {
      const h = await backend.health();
      return `database ${h.database}`;
    },
    // Central is stateless: a lost database shows in STATUS and /health, but restarting would not bring it back.
    async healthy() {
      return true;
    },
    async stop() {
      const { refused } = await closeServer(server);
      if (refused) log.info({ refused }, 'requests that came in while stopping were answered 503');
      await endPool();
    },
  };
}
