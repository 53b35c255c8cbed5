/**
 * The real sync engine in this process, syncing a fresh SQLite buffer and
 * local store (in `dir`) with a real central as a newly registered site:
 * for tests that need to reach into the engine's surroundings (its clock,
 * central's database) rather than run a whole edge process.
 */
import { before, after } from 'node:test';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { startTestCentral, type TestCentral } from './central.js';
import { uuidv7 } from '../../src/lib/uuid.js';
import type { NewTransaction } from '../../src/edge/buffer/buffer.js';
import { SyncEngine, type SyncMemory } from '../../src/sync/engine.js';
import { httpClient, type CentralClient } from '../../src/sync/transport.js';
import { SqliteBuffer } from '../../src/edge/buffer/sqlite.js';
import { LocalStore } from '../../src/edge/local-store.js';
import { createLogger } from '../../src/lib/logger.js';

export interface InProcessEngine {
  engine: SyncEngine;
  local: LocalStore;
  buffer: SqliteBuffer;
  /** The site token it syncs with. */
  token: string;
  /** Stops the engine and closes the buffer and the local store. */
  close(): Promise<void>;
}

export async function engineFor(
  central: TestCentral, site: string, dir: string,
  opts: {
    intervalMs?: number; retryBaseMs?: number; retryMaxMs?: number; memory?: SyncMemory; keepSyncedSeconds?: number;
    /** Wraps the engine's real client (to slow it down, or to watch what it sends). */
    client?: (real: CentralClient) => CentralClient;
    /** The site's token, when the site is registered already (an engine started again): else it is registered. */
    token?: string;
  } = {},
): Promise<InProcessEngine> {
  const token = opts.token ?? ((await central.admin.post('/api/sites/', { body: { name: site } })).body.token as string);
  const stop = new AbortController();
  const local = new LocalStore(join(dir, 'local.db'));
  const buffer = new SqliteBuffer(join(dir, 'buffer.db'));
  const engine = new SyncEngine({
    site, buffer, client: (opts.client ?? ((c) => c))(httpClient(central.url, 10_000, stop.signal)), replica: local, token: () => token,
    log: createLogger('silent'), batchSize: 100, batchMaxBytes: 1 << 20, intervalMs: opts.intervalMs ?? 200, retryBaseMs: opts.retryBaseMs ?? 50,
    retryMaxMs: opts.retryMaxMs ?? 500, memory: opts.memory, keepSyncedSeconds: opts.keepSyncedSeconds,
  });
  return {
    engine, local, buffer, token,
    async close() {
      stop.abort();
      await engine.stop();
      await buffer.close();
      local.close();
    },
  };
}

/**
 * A real central and a temporary directory for the cases of one `describe`, started before them and
 * removed after: call it in the describe's body. `siteDir` makes a directory of its own for one site.
 */
export function engineBed(label: string): { readonly central: TestCentral; readonly dir: string; siteDir(site: string): string } {
  let central: TestCentral | undefined;
  let dir: string | undefined;
  before(async () => {
    central = await startTestCentral(label);
    dir = mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), `opsdb-${label}-`));
  });
  after(async () => {
    await central?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return {
    get central() {
      return central!;
    },
    get dir() {
      return dir!;
    },
    siteDir(site) {
      const own = join(dir!, site);
      mkdirSync(own);
      return own;
    },
  };
}

/** A buffered start of an observation of `obsUnitId`, as the edge makes one. */
export function startObservation(site: string, obsUnitId = 1): NewTransaction {
  const id = randomUUID();
  return {
    transaction_id: uuidv7(), site, created_at: new Date().toISOString(), endpoint: 'POST /executed_obs_units/start', depends_on: [],
    steps: [{ step_id: 'obs', op: 'create', table: 'executed_obs_unit', id, data: { id, obs_unit_id: obsUnitId, site, status: 'running', start_time: '2026-01-01T00:00:00.000Z' } }],
  };
}
