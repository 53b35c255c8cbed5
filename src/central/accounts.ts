/** Users, roles and API tokens in PostgreSQL. */
import type { Pool, Client } from './db.js';
import type { TokenAdmin } from '../lib/api/backend.js';
import type { Role, CreateTokenInput } from '../lib/api/schemas.js';
import { generateToken, type TokenRecord } from '../lib/auth.js';
import { ConflictError, NotFoundError, ValidationError } from '../lib/errors.js';

/**
 * `site-NAME` is the account of site NAME (`opsdb site add`): a human user
 * may not take such a name, or the site could never be registered (or,
 * before this was checked, its "site token" was that user's).
 */
export const SITE_ACCOUNT_PREFIX = 'site-';
export const isSiteAccountName = (username: string): boolean => username.toLowerCase().startsWith(SITE_ACCOUNT_PREFIX);

/**
 * The site account of a site being registered, made in the caller's
 * transaction (the one that inserts the site row): user `site-NAME` with the
 * `site` role and one token. A user of that name already there is a 409 and
 * the caller's transaction (site row included) rolls back: an existing
 * account never becomes a site's.
 */
export async function createSiteAccount(c: Client, site: string): Promise<{ userId: number; token: string }> {
  const username = `${SITE_ACCOUNT_PREFIX}${site}`;
  const { rows } = await c.query<{ id: number }>(
    `INSERT INTO "user" (username, full_name, site_name) VALUES ($1, $2, $3) ON CONFLICT (username) DO NOTHING RETURNING id`,
    [username, `Edge daemon of site ${site}`, site],
  );
  const userId = rows[0]?.id;
  if (userId === undefined) {
    throw new ConflictError(
      `Site "${site}" cannot be registered: its site account would be the user "${username}", and a user of that name already exists. ` +
        `Nothing was created; register the site under another name, or rename or remove that user first`,
      { site, username },
    );
  }
  await c.query(`INSERT INTO user_role (user_id, role_id) SELECT $1, id FROM role WHERE name = 'site'`, [userId]);
  const t = generateToken();
  await c.query(`INSERT INTO api_token (user_id, name, token_hash, prefix, scopes) VALUES ($1, $2, $3, $4, '{}')`, [
    userId, `site ${site}`, t.hash, t.prefix,
  ]);
  return { userId, token: t.token };
}

const TOKEN_COLUMNS = `id, user_id, name, prefix, scopes, expires_at, last_used_at, usage_count, is_active, created_at`;

interface TokenRow {
  id: number;
  user_id: number;
  name: string;
  prefix: string;
  scopes: Role[];
  expires_at: Date | null;
  last_used_at: Date | null;
  usage_count: number;
  is_active: boolean;
  created_at: Date;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);
const tokenInfo = (r: TokenRow) => ({
  ...r,
  expires_at: iso(r.expires_at),
  last_used_at: iso(r.last_used_at),
  created_at: r.created_at.toISOString(),
});

export class PgAccounts implements TokenAdmin {
  constructor(private readonly pool: Pool) {}

  async findToken(hash: string): Promise<TokenRecord | null> {
    const { rows } = await this.pool.query(
      `SELECT t.id, t.user_id, u.username, u.is_active AS user_active, t.is_active, t.expires_at, t.scopes, u.site_name,
              coalesce(array_agg(r.name) FILTER (WHERE r.name IS NOT NULL), '{}') AS roles
         FROM api_token t JOIN "user" u ON u.id = t.user_id
         LEFT JOIN user_role ur ON ur.user_id = u.id LEFT JOIN role r ON r.id = ur.role_id
        WHERE t.token_hash = $1
        GROUP BY t.id, u.id`,
      [hash],
    );
    const r = rows[0];
    if (!r) return null;
    return {
      tokenId: r.id,
      userId: r.user_id,
      username: r.username,
      userActive: r.user_active,
      tokenActive: r.is_active,
      expiresAt: r.expires_at,
      roles: r.roles,
      scopes: r.scopes,
      siteName: r.site_name,
    };
  }

  touchToken(tokenId: number): void {
    this.pool
      .query('UPDATE api_token SET last_used_at = now(), usage_count = usage_count + 1 WHERE id = $1', [tokenId])
      .catch(() => {});
  }

  async getUser(userId: number) {
    const { rows } = await this.pool.query(
      `SELECT u.id, u.username, u.email, u.full_name, u.is_active, u.created_at,
              coalesce(array_agg(r.name ORDER BY r.id) FILTER (WHERE r.name IS NOT NULL), '{}') AS roles
         FROM "user" u LEFT JOIN user_role ur ON ur.user_id = u.id LEFT JOIN role r ON r.id = ur.role_id
        WHERE u.id = $1 GROUP BY u.id`,
      [userId],
    );
    const r = rows[0];
    return r ? { ...r, created_at: r.created_at.toISOString() } : null;
  }

  async createToken(userId: number, input: CreateTokenInput) {
    const t = generateToken();
    const { rows } = await this.pool
      .query<TokenRow>(
        `INSERT INTO api_token (user_id, name, token_hash, prefix, scopes, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${TOKEN_COLUMNS}`,
        [userId, input.name, t.hash, t.prefix, input.scopes, input.expires_at ?? null],
      )
      .catch((err: { code?: string }) => {
        if (err.code === '23503') throw new NotFoundError(`User ${userId} not found`);
        throw err;
      });
    return { ...tokenInfo(rows[0]!), token: t.token };
  }

  async listTokens(userId: number | null) {
    const { rows } = await this.pool.query<TokenRow>(
      `SELECT ${TOKEN_COLUMNS} FROM api_token WHERE $1::int IS NULL OR user_id = $1 ORDER BY id`,
      [userId],
    );
    return rows.map(tokenInfo);
  }

  async getToken(tokenId: number) {
    const { rows } = await this.pool.query<TokenRow>(`SELECT ${TOKEN_COLUMNS} FROM api_token WHERE id = $1`, [tokenId]);
    return rows[0] ? tokenInfo(rows[0]) : null;
  }

  async revokeToken(tokenId: number): Promise<void> {
    await this.pool.query('UPDATE api_token SET is_active = false, revoked_at = coalesce(revoked_at, now()) WHERE id = $1', [
      tokenId,
    ]);
  }

  async createDemoToken() {
    const user = await this.ensureUser('admin', ['admin'], { email: 'admin@example.com', full_name: 'Admin User' });
    const t = await this.createToken(user, { name: 'demo', scopes: [] });
    return { token: t.token, user_id: user };
  }

  /** Create the user if missing (with these roles), or add the roles to an existing one. Returns its id. */
  async ensureUser(
    username: string,
    roles: Role[],
    extra: { email?: string | null; full_name?: string | null; site_name?: string | null } = {},
  ): Promise<number> {
    const { rows } = await this.pool.query<{ id: number }>(
      `WITH ins AS (
         INSERT INTO "user" (username, email, full_name, site_name) VALUES ($1, $2, $3, $4)
         ON CONFLICT (username) DO NOTHING RETURNING id)
       SELECT id FROM ins UNION ALL SELECT id FROM "user" WHERE username = $1 LIMIT 1`,
      [username, extra.email ?? null, extra.full_name ?? null, extra.site_name ?? null],
    );
    const id = rows[0]!.id;
    await this.pool.query(
      `INSERT INTO user_role (user_id, role_id) SELECT $1, id FROM role WHERE name = ANY($2) ON CONFLICT DO NOTHING`,
      [id, roles],
    );
    return id;
  }

  /** A human user (`opsdb user add`); `site-…` names are kept for site accounts (422). */
  async createUser(username: string, roles: Role[], extra: { email?: string; full_name?: string } = {}): Promise<number> {
    if (isSiteAccountName(username)) {
      throw new ValidationError(
        `User names starting with "${SITE_ACCOUNT_PREFIX}" are kept for site accounts (opsdb site add NAME makes ${SITE_ACCOUNT_PREFIX}NAME); choose another name`,
        [{ location: 'body', path: 'username', message: `must not start with "${SITE_ACCOUNT_PREFIX}"` }],
      );
    }
    const exists = await this.pool.query('SELECT 1 FROM "user" WHERE username = $1', [username]);
    if (exists.rowCount) throw new ConflictError(`User "${username}" already exists`);
    return this.ensureUser(username, roles, extra);
  }

  async userIdByName(username: string): Promise<number | null> {
    const { rows } = await this.pool.query<{ id: number }>('SELECT id FROM "user" WHERE username = $1', [username]);
    return rows[0]?.id ?? null;
  }
}
