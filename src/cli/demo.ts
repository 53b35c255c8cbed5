/**
 * `opsdb demo` (what `npm start` runs): a whole stack on embedded defaults.
 * Central on PGlite (PostgreSQL in WebAssembly, in this process) unless
 * DATABASE_URL names a real PostgreSQL, seeded; an edge with a SQLite buffer;
 * the sync engine between them over loopback. Data under ./data, so running
 * it again resumes where it stopped.
 */
import { join, resolve } from 'node:path';
import { mkdirSync } from 'node:fs';
import { loadConfig } from '../lib/config.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { startEdge } from '../edge/server.js';
import { startCentral } from '../central/server.js';
import { LocalStore } from '../edge/local-store.js';
import { createPool, type Pool } from '../central/db.js';
import { migrate } from '../central/migrate.js';
import { seed } from '../central/seed.js';
import { createSite } from '../central/sync.js';
import { PgAccounts } from '../central/accounts.js';
import { UsageError, type Command } from './command.js';
import { portHint, stopSignals } from './serve.js';
import { lockDataDir } from '../edge/data-dir-lock.js';

const SITE = 'observatory';

/** PostgreSQL for the demo: the given URL, or PGlite served on a loopback port. */
async function demoDatabase(dir: string, url: string | undefined): Promise<{ url: string; poolMax: number; stop(): Promise<void> }> {
  if (url) return { url, poolMax: 10, stop: async () => {} };
  const { PGlite } = await import('@electric-sql/pglite');
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
  mkdirSync(dir, { recursive: true });
  const db = await PGlite.create(dir);
  const server = new PGLiteSocketServer({ db, port: 0, host: '127.0.0.1' });
  await server.start();
  // PGlite runs one transaction at a time: one connection.
  return {
    url: `postgres://postgres@${server.getServerConn()}/postgres`,
    poolMax: 1,
    stop: async () => {
      await server.stop();
      await db.close();
    },
  };
}

/** The edge's site token: the one it already has, or a new one for the site (registered if new). */
async function siteToken(pool: Pool, edgeDataDir: string): Promise<string> {
  mkdirSync(edgeDataDir, { recursive: true });
  const local = new LocalStore(join(edgeDataDir, 'local.db'));
  try {
    const known = local.getMeta('site_token');
    if (known) return known;
    const exists = (await pool.query('SELECT 1 FROM site WHERE name = $1', [SITE])).rowCount;
    let token: string;
    if (exists) {
      const accounts = new PgAccounts(pool);
      const userId = (await accounts.userIdByName(`site-${SITE}`))!;
      token = (await accounts.createToken(userId, { name: 'demo edge', scopes: [] })).token;
    } else {
      token = (await createSite(pool, SITE, 'the demo edge')).token;
    }
    local.setMeta('site_token', token);
    return token;
  } finally {
    local.close();
  }
}

async function waitForToken(url: string, token: string, log: Logger): Promise<void> {
  const end = Date.now() + 30_000;
  while (Date.now() < end) {
    const r = await fetch(`${url}/auth/me`, { headers: { authorization: `Bearer ${token}` } }).catch(() => null);
    if (r?.status === 200) return;
    await new Promise((res) => setTimeout(res, 100));
  }
  log.warn('the edge has not received the demo token from central yet; it will work after the next pull');
}

/** What moves a demo's port that is taken. */
const demoPortAdvice = (option: string) => `is another demo (npm start) running? Stop it, or pick another port with ${option}`;

export const demoCommand: Command = {
  summary: 'try it: central (embedded PostgreSQL) on :8001 and an edge on :8000 syncing to it (what `npm start` runs)',
  usage: 'opsdb demo [--data-dir DIR] [--port N] [--central-port N]   (DATABASE_URL: use a real PostgreSQL for central)',
  options: { 'data-dir': { type: 'string' }, port: { type: 'string' }, 'central-port': { type: 'string' } },
  async run({ config: base, options }) {
    // Said in the option's own name: passed on as PORT, "abc" was "PORT: must be a whole number (got null)".
    const portOption = (name: 'port' | 'central-port', fallback: number): number => {
      const v = options[name] as string | undefined;
      if (v === undefined) return fallback;
      if (!/^\d{1,5}$/.test(v) || Number(v) > 65535) throw new UsageError(`--${name} must be a port number, 0 to 65535 (got "${v}")`);
      return Number(v);
    };
    const port = portOption('port', 8000);
    const centralPort = portOption('central-port', 8001);
    const dataDir = resolve((options['data-dir'] as string | undefined) ?? './data');
    const edgeDir = join(dataDir, 'edge');
    const logLevel = process.env.LOG_LEVEL || 'warn'; // empty counts as unset, as for every setting
    const log = createLogger(logLevel);
    const started = performance.now();

    // Whatever was started is stopped again if a later step fails (a port in use, say): a half-started
    // demo used to print its error and hang with PGlite and the central pool still open.
    const undo: (() => Promise<unknown>)[] = [];
    const stopAll = async () => {
      for (const f of undo.reverse()) await f().catch(() => {});
    };
    let edge: Awaited<ReturnType<typeof startEdge>>;
    let central: Awaited<ReturnType<typeof startCentral>>;
    let demoToken: string;
    try {
      // One demo per data directory: two would open the same embedded PostgreSQL files.
      mkdirSync(dataDir, { recursive: true });
      const lock = lockDataDir(dataDir, 'opsdb demo');
      undo.push(async () => lock.release());
      const database = await demoDatabase(join(dataDir, 'central-pglite'), base.databaseUrl);
      undo.push(() => database.stop());
      const pool = createPool(database.url, database.poolMax);
      undo.push(() => pool.end());
      await migrate(pool);
      await seed(pool);
      const token = await siteToken(pool, edgeDir);
      demoToken = (await new PgAccounts(pool).createDemoToken()).token;

      const centralConfig = loadConfig({
        env: {},
        overrides: {
          SITE_TYPE: 'main', SITE_NAME: 'main', DATABASE_URL: database.url, DATABASE_POOL_MAX: database.poolMax, DEMO_MODE: true,
          METRICS_PUBLIC: true, HOST: '127.0.0.1', PORT: centralPort, LOG_LEVEL: logLevel,
        },
      });
      central = await startCentral(centralConfig, log.child({ site: 'central' }), pool).catch((err: unknown) => {
        throw portHint(err, demoPortAdvice('--central-port'));
      });
      undo.push(() => central.stop());
      const edgeConfig = loadConfig({
        env: {},
        overrides: {
          SITE_TYPE: 'secondary', SITE_NAME: SITE, DATA_DIR: edgeDir, CENTRAL_URL: central.url, SITE_TOKEN: token, DEMO_MODE: true,
          METRICS_PUBLIC: true, HOST: '127.0.0.1', PORT: port, LOG_LEVEL: logLevel, SYNC_INTERVAL_MS: 500,
        },
      });
      edge = await startEdge(edgeConfig, log.child({ site: SITE })).catch((err: unknown) => {
        throw portHint(err, demoPortAdvice('--port'));
      });
      undo.push(() => edge.stop());
      await waitForToken(edge.url, demoToken, log);
    } catch (err) {
      await stopAll();
      throw err;
    }
    const url = `http://localhost:${edge.port}`;
    console.log(`ops-db-api demo is running (ready in ${((performance.now() - started) / 1000).toFixed(1)} s; data in ${dataDir})

  Edge (the telescope site)  ${url}              docs: ${url}/docs  ${url}/redoc
  Central (the main site)    http://localhost:${central.port}   on ${base.databaseUrl ? 'DATABASE_URL' : 'embedded PostgreSQL (PGlite)'}
  Buffer and sync            ${url}/buffer-stats

Admin token (demo only; works at both):
  export TOKEN=${demoToken}

Try:
  curl ${url}/health
  curl -H "Authorization: Bearer $TOKEN" ${url}/instruments/
  curl -X POST ${url}/api/demo/create-observation -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
       -d '{"obs_data":{"obs_unit_id":1,"start_time":"2025-01-01T00:00:00Z","package_name":"test_package_001","instrument_module_configuration_id":1},"raw_files":[]}'
  curl -H "Authorization: Bearer $TOKEN" http://localhost:${central.port}/executed_obs_units/     # synced a moment later

Ctrl-C stops everything; run it again to resume with the same data.`);
    const signals = stopSignals();
    // A second Ctrl-C while the demo stops: stop at once (everything written is on disk already).
    signals.onAgain(() => {
      console.error('opsdb demo: stopping at once');
      process.exit(130);
    });
    const outcome = await Promise.race([signals.first, edge.failed]);
    if (outcome instanceof Error) {
      // As \`opsdb serve\` does: the edge can no longer store writes, so the demo stops rather than answer 503s.
      setTimeout(() => process.exit(1), 15_000).unref();
      await stopAll();
      throw new Error(`stopped: ${outcome.message}`);
    }
    await stopAll();
  },
};
