// Found in review: the push path read central's conflict header (two edge daemons syncing as one
// site) before it checked that the 200 it got was central's answer at all. A captive portal's page,
// with no such header, then cleared a conflict that was still going on: /buffer-stats' edge_conflict
// went null, /health healthy again, and the log said "central no longer hears another edge". Only an
// answer of central may clear it, as on the pull path. Two real engines on one site, a real central
// on PostgreSQL, and the fault proxy between one of them and central.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { until } from '../support/daemon.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { httpClient } from '../../src/sync/transport.js';
import { SqliteBuffer } from '../../src/edge/buffer/sqlite.js';
import { LocalStore } from '../../src/edge/local-store.js';
import { createLogger } from '../../src/lib/logger.js';
import { uuidv7 } from '../../src/lib/uuid.js';
import { EDGE_ID_HEADER } from '../../src/lib/api/sync-schemas.js';

const SITE = 'portal-twin';
const PORTAL = { status: 200, body: '<html><body>Accept the terms to use this network</body></html>' };

describe("a captive portal's 200 during a conflict of two edge daemons", () => {
  let central: TestCentral;
  let dir: string;
  let token: string;
  const closers: (() => Promise<void>)[] = [];
  before(async () => {
    central = await startTestCentral('portal-conflict');
    dir = mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), 'opsdb-portal-conflict-'));
    token = (await central.admin.post('/api/sites/', { body: { name: SITE } })).body.token as string;
  });
  after(async () => {
    for (const close of closers.reverse()) await close();
    await central?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** One observation start for `buffer` to push. */
  const write = (buffer: SqliteBuffer) => {
    const id = randomUUID();
    return buffer.append([{
      transaction_id: uuidv7(), site: SITE, created_at: new Date().toISOString(), endpoint: 'POST /executed_obs_units/start',
      steps: [{ step_id: 'obs', op: 'create', table: 'executed_obs_unit', id, data: { id, obs_unit_id: 1, site: SITE, status: 'running', start_time: new Date().toISOString() } }],
      depends_on: [],
    }]);
  };

  /** A daemon's engine with its own edge id, syncing to `url`. */
  function engine(name: string, url: string) {
    const stop = new AbortController();
    const local = new LocalStore(join(dir, `${name}-local.db`));
    const buffer = new SqliteBuffer(join(dir, `${name}-buffer.db`));
    const edgeId = uuidv7();
    const e = new SyncEngine({
      site: SITE, edgeId, buffer, client: httpClient(url, 2_000, stop.signal, { [EDGE_ID_HEADER]: edgeId }), replica: local,
      token: () => token, log: createLogger('silent'), batchSize: 100, batchMaxBytes: 1 << 20, intervalMs: 50,
      retryBaseMs: 60_000, retryMaxMs: 60_000, probeMs: 100,
    });
    closers.push(async () => {
      stop.abort();
      await e.stop();
      await buffer.close();
      local.close();
    });
    return { engine: e, buffer };
  }

  it('the conflict stays reported: only central can say it is over', async () => {
    const proxy = await FaultProxy.start(central.running.port);
    closers.push(() => proxy.close());
    const a = engine('a', proxy.url);
    const b = engine('b', central.url);
    await write(a.buffer);
    await write(b.buffer);
    a.engine.start();
    b.engine.start();
    await until('engine a to hear of the other daemon', async () => a.engine.edgeConflict() !== null);

    // The link behind a turns into a captive portal; a has a new write to push.
    await proxy.setMode({ respond: PORTAL });
    await write(a.buffer);
    await until("a's push answered by the portal", async () => proxy.seen.some((r) => r.mode === 'respond(200)' && r.path.startsWith('/api/sync/transactions')));
    await until('the failure recorded', async () => a.engine.lastError()?.code === 'bad_reply');
    assert.notEqual(a.engine.edgeConflict(), null, "the portal's page did not clear the conflict central reported");
    assert.equal(a.engine.centralReachable(), false, 'the portal is not central');
  });
});
