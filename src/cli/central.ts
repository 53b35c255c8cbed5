/** Commands that act on central's PostgreSQL directly, or (accounts) on an edge's local store. */
import { createPool, type Pool } from '../central/db.js';
import { migrate } from '../central/migrate.js';
import { seed } from '../central/seed.js';
import { PgAccounts, isSiteAccountName, SITE_ACCOUNT_PREFIX } from '../central/accounts.js';
import { createSite } from '../central/sync.js';
import { ROLES, type Role } from '../lib/api/schemas.js';
import type { Config } from '../lib/config.js';
import { oneArg, requireDatabaseUrl, UsageError, type Command } from './command.js';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LocalStore } from '../edge/local-store.js';
import { LocalAccounts } from '../edge/local-accounts.js';

/** Accounts at the edge: users and tokens that work there even with no central at all. */
async function withLocalAccounts<T>(config: Config, fn: (a: LocalAccounts) => Promise<T> | T): Promise<T> {
  mkdirSync(config.dataDir, { recursive: true });
  const local = new LocalStore(join(config.dataDir, 'local.db'));
  try {
    return await fn(new LocalAccounts(local.db));
  } finally {
    local.close();
  }
}

const atEdge = (config: Config) => config.siteType === 'secondary' && !config.databaseUrl;

async function withPool<T>(config: Config, fn: (pool: Pool) => Promise<T>): Promise<T> {
  const pool = createPool(requireDatabaseUrl(config), 2);
  try {
    return await fn(pool);
  } finally {
    await pool.end();
  }
}

export const migrateCommand: Command = {
  summary: "apply central's schema migrations (safe to run from several processes at once)",
  usage: 'opsdb migrate [--config FILE]',
  async run({ config }) {
    const r = await withPool(config, migrate);
    if (r.updated.length) console.log(`brought up to date (migrated by an earlier build): ${r.updated.join(', ')}`);
    if (r.applied.length) console.log(`applied: ${r.applied.join(', ')}`);
    if (!r.applied.length && !r.updated.length) console.log('schema is up to date');
  },
};

export const seedCommand: Command = {
  summary: 'load demo reference data into central (instruments, programs, obs units)',
  usage: 'opsdb seed [--config FILE]',
  async run({ config }) {
    const r = await withPool(config, async (pool) => {
      await migrate(pool);
      return seed(pool);
    });
    console.log(r.added ? `seeded: ${r.instruments} instruments, ${r.obs_units} obs units` : `already seeded (${r.instruments} instruments, ${r.obs_units} obs units): nothing added`);
  },
};

export const userAddCommand: Command = {
  positionals: true,
  summary: 'create a user with a role (central; at an edge: a local user)',
  usage: `opsdb user add NAME --role ROLE [--role ROLE …] [--email E] [--full-name N]   (roles: ${ROLES.join(', ')})`,
  options: { role: { type: 'string', multiple: true }, email: { type: 'string' }, 'full-name': { type: 'string' } },
  async run({ config, args, options }) {
    const name = oneArg(args, 'user name');
    // What a log line, a token listing or a shell quotes without surprises.
    if (!/^[A-Za-z0-9._@+-]{1,100}$/.test(name)) throw new UsageError(`"${name}" is not a user name: 1 to 100 letters, digits and . _ @ + -`);
    const roles = (options.role as string[] | undefined) ?? [];
    if (roles.length === 0) throw new UsageError('--role is required');
    const bad = roles.filter((r) => !(ROLES as readonly string[]).includes(r));
    if (bad.length) throw new UsageError(`unknown role(s) ${bad.join(', ')}; roles are ${ROLES.join(', ')}`);
    // At an edge too: central's site accounts reach the edge with the feed, and a local one of that name
    // would be renamed out of the way (name@local) when it came.
    if (isSiteAccountName(name)) {
      throw new UsageError(
        `"${name}": user names starting with "${SITE_ACCOUNT_PREFIX}" are kept for site accounts at central (opsdb site add NAME makes ${SITE_ACCOUNT_PREFIX}NAME); choose another name`,
      );
    }
    if (atEdge(config) && roles.includes('site')) {
      throw new UsageError('the site role is the account an edge uses at central (opsdb site add there); a local user at an edge cannot have it');
    }
    const extra = {
      ...(options.email ? { email: options.email as string } : {}),
      ...(options['full-name'] ? { full_name: options['full-name'] as string } : {}),
    };
    const id = atEdge(config)
      ? await withLocalAccounts(config, (a) => a.createUser(name, roles as Role[], extra))
      : await withPool(config, (pool) => new PgAccounts(pool).createUser(name, roles as Role[], extra));
    // At an edge, where: a forgotten --config makes the user in ./data, and its token then fails at the daemon.
    const where = atEdge(config) ? ` in ${resolve(config.dataDir, 'local.db')}` : '';
    console.log(`created ${atEdge(config) ? 'local ' : ''}user ${name} (id ${id}) with roles ${roles.join(', ')}${where}`);
  },
};

export const tokenCreateCommand: Command = {
  summary: 'create an API token for a user; printed once (central; at an edge: valid at that edge)',
  usage: 'opsdb token create --user NAME [--name LABEL] [--expires-days N]',
  options: { user: { type: 'string' }, name: { type: 'string' }, 'expires-days': { type: 'string' } },
  async run({ config, options }) {
    const user = options.user as string | undefined;
    if (!user) throw new UsageError('--user is required');
    const days = options['expires-days'] === undefined ? null : Number(options['expires-days']);
    if (days !== null && !(Number.isInteger(days) && days > 0)) throw new UsageError('--expires-days must be a positive whole number');
    const mint = async (accounts: PgAccounts | LocalAccounts) => {
      const id = await accounts.userIdByName(user);
      if (id === null) throw new UsageError(`no user "${user}"; create it with: opsdb user add ${user} --role viewer`);
      const expires_at = days === null ? null : new Date(Date.now() + days * 86_400_000).toISOString();
      return accounts.createToken(id, { name: (options.name as string | undefined) ?? 'cli', scopes: [], expires_at });
    };
    const token = atEdge(config)
      ? await withLocalAccounts(config, mint)
      : await withPool(config, (pool) => mint(new PgAccounts(pool)));
    // The token goes to stdout alone so scripts can capture it; the note to stderr.
    const where = atEdge(config) ? `, valid at the edge whose DATA_DIR is ${resolve(config.dataDir)}` : '';
    console.error(`token for ${user} (prefix ${token.prefix}${where}); it is shown only this once:`);
    console.log(token.token);
  },
};

export const siteAddCommand: Command = {
  positionals: true,
  summary: "register an edge site at central and print its site token once (put it in the edge's SITE_TOKEN)",
  usage: 'opsdb site add NAME [--description TEXT]',
  options: { description: { type: 'string' } },
  async run({ config, args, options }) {
    const name = oneArg(args, 'site name');
    if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(name)) throw new UsageError('a site name is lower-case letters, digits, "-" and "_"');
    const site = await withPool(config, async (pool) => {
      await migrate(pool);
      return createSite(pool, name, (options.description as string | undefined) ?? null);
    });
    console.error(`site ${site.name} registered; its token is shown only this once (SITE_TOKEN at the edge):`);
    console.log(site.token);
  },
};
