/** API tokens (SPEC §5): `ops_api_token_` + 32 random bytes, stored only as a SHA-256 digest. */
import { createHash, randomBytes } from 'node:crypto';
import type { Role } from './api/schemas.js';
import { ValidationError } from './errors.js';

export const TOKEN_PREFIX = 'ops_api_token_';
const TOKEN_RE = /^ops_api_token_[A-Za-z0-9_-]{43}$/;

export function generateToken(): { token: string; hash: string; prefix: string } {
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  return { token, hash: hashToken(token), prefix: displayPrefix(token) };
}

export const hashToken = (token: string): string => createHash('sha256').update(token).digest('hex');
export const displayPrefix = (token: string): string => token.slice(0, TOKEN_PREFIX.length + 6);
export const looksLikeToken = (token: string): boolean => TOKEN_RE.test(token);

/** Who is calling, once their token has been checked. */
export interface Principal {
  userId: number;
  username: string;
  roles: ReadonlySet<Role>;
  tokenId: number;
  /** For `site` tokens: the one site this token may act for. */
  siteName: string | null;
  /** True when the token is narrowed by scopes: tokens it mints may not exceed `roles`. */
  scoped: boolean;
}

/**
 * The expiry of a token minted with a token that expires at `callerExpiresAt`:
 * no later than that. Asked for none (`null` or left out), it gets the
 * caller's; asked for a later one, 422. A caller that never expires mints
 * what was asked for.
 */
export function mintedExpiry(requested: string | null | undefined, callerExpiresAt: Date | string | null): string | null {
  if (callerExpiresAt === null) return requested ?? null;
  const cap = new Date(callerExpiresAt);
  if (requested == null) return cap.toISOString();
  if (Date.parse(requested) > cap.getTime()) {
    const message = `A token cannot outlive the token that creates it: expires_at must be at or before ${cap.toISOString()} (when this token expires)`;
    throw new ValidationError(`Invalid body: expires_at: ${message}`, [
      { location: 'body', path: 'expires_at', message, max: cap.toISOString() },
    ]);
  }
  return requested;
}

/** What a token store returns for a digest; the HTTP layer decides if it is usable. */
export interface TokenRecord {
  tokenId: number;
  userId: number;
  username: string;
  userActive: boolean;
  tokenActive: boolean;
  expiresAt: Date | null;
  /** The user's roles. */
  roles: Role[];
  /** If non-empty, the token may use only these of the user's roles. */
  scopes: Role[];
  siteName: string | null;
}

export const READ_ROLES: readonly Role[] = ['viewer', 'observer', 'service', 'admin'];
export const WRITE_ROLES: readonly Role[] = ['observer', 'service', 'admin'];
export const ADMIN_ROLES: readonly Role[] = ['admin'];
export const ANY_ROLE: readonly Role[] = ['viewer', 'observer', 'service', 'admin', 'site'];

/** Roles a role includes: admin can do what every human role can; observer and service can read. */
const IMPLIES: Record<Role, readonly Role[]> = {
  admin: ['admin', 'observer', 'service', 'viewer'],
  observer: ['observer', 'viewer'],
  service: ['service', 'viewer'],
  viewer: ['viewer'],
  site: ['site'],
};

export function expandRoles(roles: Iterable<Role>): Set<Role> {
  const out = new Set<Role>();
  for (const r of roles) for (const x of IMPLIES[r] ?? []) out.add(x);
  return out;
}

/** The user's roles (with what they imply), narrowed to the token's scopes when it has any. */
export function effectiveRoles(rec: TokenRecord): Set<Role> {
  const held = expandRoles(rec.roles);
  if (rec.scopes.length === 0) return held;
  const allowed = expandRoles(rec.scopes);
  return new Set([...held].filter((r) => allowed.has(r)));
}
