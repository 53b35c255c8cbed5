/**
 * Edges for tests: in-process (startTestEdge) for HTTP behaviour, and as a
 * real child process (spawnEdge) for crash tests.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type Config, type LoadOptions } from '../../src/lib/config.js';
import { createLogger } from '../../src/lib/logger.js';
import { startEdge, type RunningEdge } from '../../src/edge/server.js';
import { LocalStore } from '../../src/edge/local-store.js';
import { LocalAccounts } from '../../src/edge/local-accounts.js';
import type { Role } from '../../src/lib/api/schemas.js';
import { client, type Client } from './http.js';
import { spawnDaemon, type DaemonProcess } from './daemon.js';

export const edgeDataDir = (label: string): string => mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), `opsdb-edge-${label}-`));

/** Reference data as central's seed has it (ids 1…), for edges that check references. */
export function seedReference(local: LocalStore): void {
  local.upsertReference('instrument', [{ id: 1, name: 'Prime-Cam', description: 'Prime-Cam instrument', is_active: true }]);
  local.upsertReference('instrument_module', [{ id: 1, instrument_id: 1, name: '280 GHz', description: null }]);
  local.upsertReference('instrument_module_configuration', [{ id: 1, instrument_module_id: 1, name: 'default', description: null, parameters: {} }]);
  local.upsertReference('observing_program', [{ id: 1, name: 'Demo program', description: null, is_active: true }]);
  local.upsertReference('obs_unit', [1, 2, 3, 4, 5].map((id) => ({
    id, name: `unit-${id}`, observing_program_id: 1, instrument_module_configuration_id: 1, description: null, is_active: true,
  })));
}

/** Users with these roles and tokens, made with the same code the CLI uses. */
export async function localClient(dataDir: string, base: string, roles: Role[], name: string): Promise<Client & { userId: number }> {
  const local = new LocalStore(join(dataDir, 'local.db'));
  try {
    const accounts = new LocalAccounts(local.db);
    const userId = accounts.userIdByName(name) ?? accounts.createUser(name, roles);
    const t = await accounts.createToken(userId, { name: 'test', scopes: [] });
    return Object.assign(client(base, t.token), { userId });
  } finally {
    local.close();
  }
}

export interface TestEdge {
  url: string;
  dataDir: string;
  config: Config;
  running: RunningEdge;
  admin: Client & { userId: number };
  as(roles: Role[], name?: string): Promise<Client & { userId: number }>;
  anonymous: Client;
  stop(): Promise<void>;
}

let n = 0;

export async function startTestEdge(
  label: string,
  opts: { overrides?: LoadOptions['overrides']; seed?: boolean; dataDir?: string; http?: Parameters<typeof startEdge>[2] } = {},
): Promise<TestEdge> {
  const dataDir = opts.dataDir ?? edgeDataDir(label);
  if (opts.seed !== false) {
    const local = new LocalStore(join(dataDir, 'local.db'));
    seedReference(local);
    local.close();
  }
  const config = loadConfig({
    env: {},
    overrides: { SITE_TYPE: 'secondary', SITE_NAME: 'observatory', DATA_DIR: dataDir, PORT: 0, LOG_LEVEL: 'silent', ...opts.overrides },
  });
  const running = await startEdge(config, createLogger(config.logLevel), opts.http);
  const as = (roles: Role[], name = `edge-user-${++n}`) => localClient(dataDir, running.url, roles, name);
  return {
    url: running.url, dataDir, config, running, admin: await as(['admin'], 'edge-admin'), as,
    anonymous: client(running.url),
    stop: () => running.stop(),
  };
}

export type EdgeProcess = DaemonProcess;

/** Starts `opsdb serve` as an edge (a real process) and waits until it listens. */
export const spawnEdge = (env: Record<string, string>, timeoutMs = 20_000): Promise<EdgeProcess> => spawnDaemon('secondary', env, timeoutMs);

/** Sync settings that make a test edge talk to central every 50 ms and retry within 200 ms. */
export const FAST_SYNC = { SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 200 } as const;

/**
 * A real central with `site` registered, and an in-process edge of that site
 * syncing to it (no local seed: reference data comes from central). `stop`
 * stops both, edge first.
 */
export async function startCentralAndEdge(label: string, site: string) {
  const { startTestCentral } = await import('./central.js');
  const central = await startTestCentral(label, { LOG_LEVEL: 'silent' });
  try {
    const token = (await central.admin.post('/api/sites/', { body: { name: site } })).body.token as string;
    const edge = await startTestEdge(label, { seed: false, overrides: { ...FAST_SYNC, SITE_NAME: site, CENTRAL_URL: central.url, SITE_TOKEN: token } });
    return { central, edge, stop: async () => { await edge.stop(); await central.stop(); } };
  } catch (err) {
    await central.stop();
    throw err;
  }
}
