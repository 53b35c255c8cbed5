/**
 * A real central on a real PostgreSQL: a fresh database per call, migrated
 * and seeded, served over HTTP on a free loopback port.
 */
import { loadConfig, type Config, type LoadOptions } from '../../src/lib/config.js';
import { createLogger } from '../../src/lib/logger.js';
import { createPool, type Pool } from '../../src/central/db.js';
import { migrate } from '../../src/central/migrate.js';
import { seed } from '../../src/central/seed.js';
import { startCentral, type RunningCentral } from '../../src/central/server.js';
import { PgAccounts } from '../../src/central/accounts.js';
import type { Role } from '../../src/lib/api/schemas.js';
import { createTestDatabase } from './services.js';
import { client, type Client } from './http.js';

export interface TestCentral {
  url: string;
  databaseUrl: string;
  config: Config;
  running: RunningCentral;
  /** A separate pool for assertions straight against the database. */
  db: Pool;
  accounts: PgAccounts;
  admin: Client & { userId: number };
  /** A new user with exactly these roles and a token, as a client. */
  as(roles: Role[], label?: string): Promise<Client & { userId: number }>;
  anonymous: Client;
  stop(): Promise<void>;
}

let users = 0;

export async function startTestCentral(
  label: string,
  overrides: LoadOptions['overrides'] = {},
  http: Parameters<typeof startCentral>[3] = {},
): Promise<TestCentral> {
  const database = await createTestDatabase(label);
  const db = createPool(database.url, 4);
  await migrate(db);
  await seed(db);
  const config = loadConfig({
    env: {},
    overrides: { SITE_TYPE: 'main', SITE_NAME: 'main', DATABASE_URL: database.url, PORT: 0, LOG_LEVEL: 'silent', ...overrides },
  });
  const running = await startCentral(config, createLogger(config.logLevel), undefined, http);
  const accounts = new PgAccounts(db);
  const as = async (roles: Role[], name = `u${++users}-${roles.join('-') || 'none'}`) => {
    const userId = await accounts.ensureUser(`${name}-${process.pid}`, roles);
    const t = await accounts.createToken(userId, { name: 'test', scopes: [] });
    return Object.assign(client(running.url, t.token), { userId });
  };
  const admin = await as(['admin'], 'admin-test');
  return {
    url: running.url,
    databaseUrl: database.url,
    config,
    running,
    db,
    accounts,
    admin,
    as,
    anonymous: client(running.url),
    async stop() {
      await running.stop();
      await db.end();
      await database.drop();
    },
  };
}

/** Row counts of every table a write may touch: equal before and after = nothing written. */
export async function writeCounts(db: Pool): Promise<Record<string, number>> {
  const tables = ['executed_obs_unit', 'raw_data_package', 'raw_data_file', 'user_preference', 'applied_transaction', 'data_transfer'];
  const { rows } = await db.query(`SELECT ${tables.map((t) => `(SELECT count(*) FROM ${t})::int AS ${t}`).join(', ')}`);
  return rows[0];
}
