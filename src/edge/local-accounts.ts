/**
 * Accounts at the edge: users, roles and token hashes pulled from central
 * (offline auth), plus accounts made here with the CLI or demo mode. Local
 * ones get negative ids so they can never collide with central's.
 */
import type Database from 'better-sqlite3';
import type { TokenAdmin } from '../lib/api/backend.js';
import type { CreateTokenInput, Role } from '../lib/api/schemas.js';
import { generateToken, type TokenRecord } from '../lib/auth.js';
import { ConflictError, NotFoundError } from '../lib/errors.js';
import { statementCache } from './statements.js';

interface TokenRow {
  id: number;
  user_id: number;
  name: string;
  prefix: string;
  scopes: string;
  expires_at: string | null;
  last_used_at: string | null;
  usage_count: number;
  is_active: number;
  created_at: string;
}

const tokenInfo = (r: TokenRow) => ({ ...r, scopes: JSON.parse(r.scopes) as Role[], is_active: r.is_active === 1 });
const TOKEN_COLUMNS = 'id, user_id, name, prefix, scopes, expires_at, last_used_at, usage_count, is_active, created_at';

const TOKEN_CACHE_MS = 1000;

export class LocalAccounts implements TokenAdmin {
  private readonly sql: (text: string) => Database.Statement;
  /** Token uses not yet written: counted in memory, written once a second (usage stats, not data). */
  private touches = new Map<number, { n: number; at: string }>();
  private touchTimer: NodeJS.Timeout | null = null;

  constructor(private readonly db: Database.Database) {
    this.sql = statementCache(db);
  }

  /** Writes pending token-use counts. */
  flush(): void {
    if (this.touchTimer) clearTimeout(this.touchTimer);
    this.touchTimer = null;
    if (this.touches.size === 0 || !this.db.open) return;
    const touches = this.touches;
    this.touches = new Map();
    const update = this.sql('UPDATE api_token SET last_used_at = ?, usage_count = usage_count + ? WHERE id = ?');
    try {
      this.db.transaction(() => {
        for (const [id, t] of touches) update.run(t.at, t.n, id);
      }).immediate();
    } catch {
      // Usage counts are bookkeeping: if the store is locked or failing, keep them for the next flush.
      for (const [id, t] of touches) {
        const now = this.touches.get(id);
        this.touches.set(id, { n: t.n + (now?.n ?? 0), at: now?.at ?? t.at });
      }
      this.touchTimer ??= setTimeout(() => this.flush(), 1000).unref();
    }
  }

  private nextLocalId(table: 'user' | 'api_token'): number {
    const { m } = this.sql(`SELECT min(id) AS m FROM ${table}`).get() as { m: number | null };
    return Math.min(m ?? 0, 0) - 1;
  }

  /**
   * Token look-ups are cached for TOKEN_CACHE_MS: every request checks one.
   * A revocation made here clears the cache at once; one pulled from central
   * takes effect within that time after the pull.
   */
  async findToken(hash: string): Promise<TokenRecord | null> {
    const hit = this.tokenCache.get(hash);
    if (hit && Date.now() - hit.at < TOKEN_CACHE_MS) return hit.rec;
    if (this.tokenCache.size > 10_000) this.tokenCache.clear();
    const rec = this.lookupToken(hash);
    this.tokenCache.set(hash, { at: Date.now(), rec });
    return rec;
  }

  private tokenCache = new Map<string, { at: number; rec: TokenRecord | null }>();

  private lookupToken(hash: string): TokenRecord | null {
    const r = this.sql(
        `SELECT t.id, t.user_id, u.username, u.is_active AS user_active, t.is_active, t.expires_at, t.scopes, u.site_name,
                (SELECT json_group_array(role) FROM user_role WHERE user_id = u.id) AS roles
           FROM api_token t JOIN user u ON u.id = t.user_id WHERE t.token_hash = ?`,
      )
      .get(hash) as Record<string, unknown> | undefined;
    if (!r) return null;
    return {
      tokenId: r.id as number,
      userId: r.user_id as number,
      username: r.username as string,
      userActive: r.user_active === 1,
      tokenActive: r.is_active === 1,
      expiresAt: r.expires_at ? new Date(r.expires_at as string) : null,
      roles: JSON.parse(r.roles as string),
      scopes: JSON.parse(r.scopes as string),
      siteName: (r.site_name as string | null) ?? null,
    };
  }

  touchToken(tokenId: number): void {
    const t = this.touches.get(tokenId);
    this.touches.set(tokenId, { n: (t?.n ?? 0) + 1, at: new Date().toISOString() });
    this.touchTimer ??= setTimeout(() => this.flush(), 1000).unref();
  }

  async getUser(userId: number) {
    const u = this.sql('SELECT id, username, email, full_name, is_active, created_at FROM user WHERE id = ?').get(userId) as
      | Record<string, unknown>
      | undefined;
    if (!u) return null;
    const roles = (this.sql('SELECT role FROM user_role WHERE user_id = ? ORDER BY role').all(userId) as { role: Role }[]).map((r) => r.role);
    return { ...(u as { id: number; username: string; email: string | null; full_name: string | null; created_at: string }), is_active: u.is_active === 1, roles };
  }

  async createToken(userId: number, input: CreateTokenInput) {
    if (!this.sql('SELECT 1 FROM user WHERE id = ?').get(userId)) throw new NotFoundError(`User ${userId} not found`);
    const t = generateToken();
    // Picking the id and inserting in one write transaction: `opsdb token create` and the daemon may both be at it.
    const id = this.db.transaction(() => {
      const next = this.nextLocalId('api_token');
      this.sql(
          `INSERT INTO api_token (id, user_id, name, token_hash, prefix, scopes, expires_at, created_at, local)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)`,
        )
        .run(next, userId, input.name, t.hash, t.prefix, JSON.stringify(input.scopes), input.expires_at ?? null, new Date().toISOString());
      return next;
    }).immediate();
    return { ...(await this.getToken(id))!, token: t.token };
  }

  async listTokens(userId: number | null) {
    const rows = this.sql(`SELECT ${TOKEN_COLUMNS} FROM api_token WHERE ? IS NULL OR user_id = ? ORDER BY id`)
      .all(userId, userId) as TokenRow[];
    return rows.map(tokenInfo);
  }

  async getToken(tokenId: number) {
    const r = this.sql(`SELECT ${TOKEN_COLUMNS} FROM api_token WHERE id = ?`).get(tokenId) as TokenRow | undefined;
    return r ? tokenInfo(r) : null;
  }

  async revokeToken(tokenId: number): Promise<void> {
    this.sql('UPDATE api_token SET is_active = 0 WHERE id = ?').run(tokenId);
    this.tokenCache.clear();
  }

  /** Demo mode: a token for `admin` (central's, once pulled; else a local one). */
  async createDemoToken() {
    const id = this.userIdByName('admin') ?? this.createUser('admin', ['admin'], { email: 'admin@example.com', full_name: 'Admin User' });
    const t = await this.createToken(id, { name: 'demo', scopes: [] });
    return { token: t.token, user_id: id };
  }

  userIdByName(username: string): number | null {
    return (this.sql('SELECT id FROM user WHERE username = ?').get(username) as { id: number } | undefined)?.id ?? null;
  }

  /** A user that exists only at this edge (negative id). */
  createUser(username: string, roles: Role[], extra: { email?: string; full_name?: string } = {}): number {
    const run = this.db.transaction(() => {
      if (this.userIdByName(username) !== null) throw new ConflictError(`User "${username}" already exists`);
      const id = this.nextLocalId('user');
      this.db
        .prepare('INSERT INTO user (id, username, email, full_name, created_at, local) VALUES (?, ?, ?, ?, ?, 1)')
        .run(id, username, extra.email ?? null, extra.full_name ?? null, new Date().toISOString());
      for (const r of roles) this.sql('INSERT INTO user_role (user_id, role) VALUES (?, ?)').run(id, r);
      return id;
    });
    return run.immediate();
  }
}
