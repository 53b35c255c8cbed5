// Found in review: while backing off from a failure marked "unreachable" (any 502/503/504, or a 200
// that is not central's answer, e.g. a captive portal's page), the engine probed /health every second
// and ended the wait on any 200. A captive portal answering 200 to everything got one batch a second,
// forever, whatever RETRY_BASE_MS and RETRY_MAX_MS said. Now a probe counts only when central's own
// /health document answers, and runs only while central itself is not heard (no answer, a gateway's or
// a portal's page): after central's own answer (a 503, a Retry-After) the whole backoff is waited.
// The real engine in this process (so its jitter can be fixed: every wait is the whole backoff), a real
// central on PostgreSQL, and the fault proxy between them.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { until } from '../support/daemon.js';
import { FaultProxy, type CannedResponse, type FaultMode } from '../support/fault-proxy.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { httpClient } from '../../src/sync/transport.js';
import { SqliteBuffer } from '../../src/edge/buffer/sqlite.js';
import { LocalStore } from '../../src/edge/local-store.js';
import { createLogger } from '../../src/lib/logger.js';
import { uuidv7 } from '../../src/lib/uuid.js';

const BACKOFF_MS = 60_000;
const PROBE_MS = 100;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const PORTAL: CannedResponse = { status: 200, body: '<html><body>Accept the terms to use this network</body></html>' };
const CENTRAL_503: CannedResponse = {
  status: 503, body: '{"error":{"code":"service_unavailable","message":"the database is not answering"}}', headers: { 'content-type': 'application/json' },
};

describe('/health probes during a backoff', () => {
  let central: TestCentral;
  let dir: string;
  let sites = 0;
  before(async () => {
    central = await startTestCentral('probe');
    dir = mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), 'opsdb-probe-'));
  });
  after(async () => {
    await central?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** An engine with one transaction to push, syncing through a fault proxy in `mode`; every backoff is the whole BACKOFF_MS. */
  async function engineBehind(mode: FaultMode) {
    const site = `probe-${++sites}`;
    const token = (await central.admin.post('/api/sites/', { body: { name: site } })).body.token as string;
    const proxy = await FaultProxy.start(central.running.port, mode);
    const stop = new AbortController();
    const local = new LocalStore(join(dir, `${site}-local.db`));
    const buffer = new SqliteBuffer(join(dir, `${site}-buffer.db`));
    const id = randomUUID();
    await buffer.append([{
      transaction_id: uuidv7(), site, created_at: new Date().toISOString(), endpoint: 'POST /executed_obs_units/start',
      steps: [{ step_id: 'obs', op: 'create', table: 'executed_obs_unit', id, data: { id, obs_unit_id: 1, site, status: 'running', start_time: new Date().toISOString() } }],
      depends_on: [],
    }]);
    const engine = new SyncEngine({
      site, buffer, client: httpClient(proxy.url, 2_000, stop.signal), replica: local, token: () => token, log: createLogger('silent'),
      batchSize: 100, batchMaxBytes: 1 << 20, intervalMs: 200, retryBaseMs: BACKOFF_MS, retryMaxMs: BACKOFF_MS, probeMs: PROBE_MS,
      random: () => 1,
    });
    return {
      engine, proxy, buffer,
      /** Requests the proxy saw while in the mode named `mode`. */
      seen: (mode: string, path: string) => proxy.seen.filter((r) => r.mode === mode && r.path.startsWith(path)).length,
      async close() {
        stop.abort();
        await engine.stop();
        await proxy.close();
        await buffer.close();
        local.close();
      },
    };
  }

  it("after a captive portal's 200 page, its answers to the probes do not end the wait: one batch per backoff", async () => {
    const e = await engineBehind({ respond: PORTAL });
    try {
      e.engine.start();
      await until('a bad_reply failure', async () => e.engine.lastError()?.code === 'bad_reply');
      assert.equal(e.engine.centralReachable(), false, 'the portal is not central');
      // Central is not heard, so the engine probes; the portal's page answers each probe with a 200.
      await until('three probes answered by the portal', async () => e.proxy.count('/health') >= 3 || e.proxy.count('/api/sync/transactions', 'POST') > 1);
      assert.equal(e.proxy.count('/api/sync/transactions', 'POST'), 1, "the batch was sent once: the portal's 200 did not end the wait");
      const next = e.engine.nextAttemptAt();
      assert.ok(next && Date.parse(next) > Date.now() + BACKOFF_MS / 2, `the next attempt is a backoff away: ${next}`);
    } finally {
      await e.close();
    }
  });

  it("after central's own 503, waits the whole backoff and probes nothing", async () => {
    const e = await engineBehind({ respond: CENTRAL_503 });
    try {
      e.engine.start();
      await until('a 503', async () => e.engine.lastError()?.code === 'http_503');
      assert.equal(e.engine.centralReachable(), true, "central answered, in its own error shape");
      // Twenty probe intervals: before the fix, each one probed, and central's /health answering would have ended the wait.
      await sleep(20 * PROBE_MS);
      assert.equal(e.proxy.count('/health'), 0, 'no /health probe after an answer of central');
      assert.equal(e.proxy.count('/api/sync/transactions', 'POST'), 1, 'the batch was sent once, then the engine waits');
      const next = e.engine.nextAttemptAt();
      assert.ok(next && Date.parse(next) > Date.now() + BACKOFF_MS / 2, `the next attempt is a backoff away: ${next}`);
    } finally {
      await e.close();
    }
  });

  it("after a refused connection, a 200 that is not central's /health does not end the wait; central's does", async () => {
    const e = await engineBehind('refuse');
    try {
      e.engine.start();
      await until('a network failure', async () => e.engine.lastError()?.code === 'network');
      assert.equal(e.engine.centralReachable(), false);

      // The link comes back, but to a captive portal: its page answers every probe with a 200.
      await e.proxy.setMode({ respond: PORTAL });
      const sentToPortal = () => e.seen('respond(200)', '/api/sync/transactions');
      await until('three probes answered by the portal', async () => e.seen('respond(200)', '/health') >= 3 || sentToPortal() > 0);
      assert.equal(sentToPortal(), 0, "the portal's 200 did not end the wait: no batch sent to it");
      assert.notEqual(e.engine.nextAttemptAt(), null, 'still waiting');

      // Central itself is back: its /health ends the wait at once, long before the backoff's minute is up.
      await e.proxy.setMode('pass');
      await until('the transaction applied at central', async () => (await e.buffer.stats()).applied_total === 1);
      assert.equal(e.engine.centralReachable(), true);
    } finally {
      await e.close();
    }
  });
});
