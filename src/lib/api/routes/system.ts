import * as S from '../schemas.js';
import { route, type ApiContext } from '../route.js';
import { ANY_ROLE, READ_ROLES, mintedExpiry } from '../../auth.js';
import { ForbiddenError, NotFoundError, UnauthorizedError } from '../../errors.js';

export function systemRoutes(api: ApiContext, opts: { demoMode: boolean }): void {
  const { backend } = api;

  route(api, {
    method: 'get', path: '/health', tag: 'system', roles: null, response: S.Health,
    errors: { 503: { description: 'Unhealthy (e.g. the buffer cannot be read); the same fields', schema: S.Health } },
    summary: 'Liveness and readiness: database, buffer and sync engine',
    handler: async ({ ctx }) => {
      const h = await backend.health();
      ctx.status = h.status === 'unhealthy' ? 503 : 200;
      ctx.body = h;
    },
  });

  route(api, {
    method: 'post', path: '/api/demo/create-demo-token', tag: 'demo', roles: null, response: S.DemoToken,
    errors: { 404: 'Demo mode is off (DEMO_MODE=false)' },
    summary: 'Mint an admin token for local trials (only when DEMO_MODE=true)',
    handler: async () => {
      if (!opts.demoMode) throw new NotFoundError('Demo mode is off (set DEMO_MODE=true to enable demo tokens)');
      const t = await backend.auth.createDemoToken();
      return { token: t.token, user_id: t.user_id, role: 'admin' };
    },
  });

  route(api, {
    method: 'get', path: '/auth/me', tag: 'auth', roles: ANY_ROLE, response: S.Me,
    summary: 'The user behind the bearer token',
    handler: async ({ principal }) => {
      const me = await backend.auth.getUser(principal.userId);
      if (!me) throw new NotFoundError('User not found');
      return me;
    },
  });

  route(api, {
    method: 'post', path: '/api/tokens/', tag: 'auth', roles: READ_ROLES, body: S.CreateToken, status: 201,
    response: S.CreatedToken, summary: 'Create an API token (shown once; only its hash is kept)',
    handler: async ({ body, principal }) => {
      const userId = body.user_id ?? principal.userId;
      if (userId !== principal.userId && !principal.roles.has('admin')) {
        throw new ForbiddenError('Only an admin can create tokens for another user');
      }
      // A scoped token can only hand on what it has: unscoped requests inherit its scopes.
      const scopes = body.scopes.length === 0 && principal.scoped ? [...principal.roles] : body.scopes;
      const beyond = scopes.filter((s) => !principal.roles.has(s));
      if (userId === principal.userId && beyond.length > 0) {
        throw new ForbiddenError(`A token cannot have roles its creator lacks: ${beyond.join(', ')}`, { beyond });
      }
      // A token never mints one that outlives it (asked for none, it gets the caller's expiry; a later one is 422).
      const caller = await backend.auth.getToken(principal.tokenId);
      if (!caller) throw new UnauthorizedError('Invalid token', 'invalid_token');
      const expires_at = mintedExpiry(body.expires_at, caller.expires_at);
      return backend.auth.createToken(userId, { ...body, scopes, expires_at });
    },
  });

  route(api, {
    method: 'get', path: '/api/tokens/', tag: 'auth', roles: READ_ROLES, query: S.TokenListQuery,
    response: S.TokenInfo.array(), summary: 'List your tokens (admin: all=true or user_id=N); prefixes only',
    handler: async ({ query, principal }) => {
      const admin = principal.roles.has('admin');
      if ((query.all === 'true' || (query.user_id && query.user_id !== principal.userId)) && !admin) {
        throw new ForbiddenError("Only an admin can list other users' tokens");
      }
      if (query.all === 'true') return backend.auth.listTokens(null);
      return backend.auth.listTokens(query.user_id ?? principal.userId);
    },
  });

  route(api, {
    method: 'delete', path: '/api/tokens/{id}', tag: 'auth', roles: READ_ROLES, params: S.TokenIdParams,
    response: S.TokenInfo, summary: 'Revoke a token (your own; admin: any). Takes effect at once.',
    handler: async ({ params, principal }) => {
      const t = await backend.auth.getToken(params.id);
      if (!t || (t.user_id !== principal.userId && !principal.roles.has('admin'))) {
        throw new NotFoundError(`Token ${params.id} not found`);
      }
      await backend.auth.revokeToken(params.id);
      return { ...t, is_active: false };
    },
  });

  route(api, {
    method: 'get', path: '/api/transactions/{id}', tag: 'transactions', roles: ['viewer', 'observer', 'service'],
    params: S.UuidParams, response: S.TransactionState, summary: 'State of one write transaction',
    handler: async ({ params }) => {
      const t = await backend.getTransaction(params.id);
      if (!t) throw new NotFoundError(`Transaction ${params.id} not found`);
      return t;
    },
  });

}
