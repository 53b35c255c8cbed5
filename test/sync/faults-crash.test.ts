// SPEC §2.1–§2.4 under crashes and broken links, on real processes (see
// faults.test.ts): the edge SIGKILLed mid-batch, central SIGKILLed mid-batch,
// two centrals on one database fed alternately, a black-holed link that
// times out, requests reset halfway through their body, and a middlebox that
// answers 200 with a page of its own.
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { delay } from '../support/fault-proxy.js';
import {
  assertSeqOrder, centralDatabase, centralLogSum, createObservation, killAllProcesses, spawnCentral, startScenario, waitFor, writeLoop,
  type CentralDatabase, type DaemonProcess, type Scenario,
  untilStats as until,
} from '../support/processes.js';

let db: CentralDatabase;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Deterministic pseudo-random numbers, so a failing run can be replayed. */
function rng(seed: number) {
  return () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
}

async function scenario(t: TestContext, label: string, opts: Parameters<typeof startScenario>[2] = {}): Promise<Scenario> {
  const s = await startScenario(db, label, opts);
  t.after(() => s.stop());
  return s;
}


/** Waits until a batch is on its way (the engine has transactions in flight). */
const batchInFlight = (s: Scenario) => until(s, (st) => st.in_flight_transactions > 0, 8_000, 'a batch in flight');

describe('sync under faults: crashes, timeouts, resets (real processes)', { timeout: 300_000 }, () => {
  before(async () => {
    db = await centralDatabase('faults_crash');
  });
  after(async () => {
    await killAllProcesses();
    await db?.drop();
  });

  it('edge SIGKILLed mid-batch, restarted on the same DATA_DIR: no loss, no duplicate', async (t) => {
    const s = await scenario(t, 'edgekill', { mode: delay(300), edgeEnv: { SYNC_BATCH_SIZE: '4' } });
    const random = rng(42);
    const load = writeLoop(() => s.edge.url, s.dir.adminToken, s.acked);
    t.after(() => load.stop().then(() => {}, () => {}));
    let released = 0;
    for (let round = 0; round < 4; round++) {
      await batchInFlight(s);
      await sleep(random() * 300);
      await s.restartEdge();
      const opened = s.edge.lines.find((l) => l.includes('"buffer opened"'));
      released += Number(JSON.parse(opened ?? '{}').released_in_flight ?? 0);
    }
    const written = await load.stop();
    assert.ok(written >= 10, `writes acknowledged across the kills: ${written}`);
    assert.ok(released >= 1, 'at least one kill left a batch in flight, released at restart');
    await s.proxy.setMode('pass');
    const st = await s.verify();
    assert.ok(st.applied_total >= s.acked.transactions.length);
    await assertSeqOrder(db.pool, s.site, s.acked);
    t.diagnostic(`${written} acknowledged, ${st.accepted_total} accepted, ${released} released in flight after 4 kills`);
  });

  it('central SIGKILLed mid-batch and restarted: no duplicate, everything applies', async (t) => {
    const s = await scenario(t, 'centralkill', { mode: delay(200), edgeEnv: { SYNC_BATCH_SIZE: '4' } });
    const random = rng(7);
    const load = writeLoop(() => s.edge.url, s.dir.adminToken, s.acked);
    t.after(() => load.stop().then(() => {}, () => {}));
    let central: DaemonProcess = s.central;
    for (let round = 0; round < 3; round++) {
      await batchInFlight(s);
      await sleep(random() * 250);
      await central.kill('SIGKILL');
      await sleep(100);
      central = await spawnCentral({ DATABASE_URL: db.url });
      const restarted = central;
      t.after(() => restarted.kill('SIGKILL').then(() => {}));
      s.proxy.setTarget(central.port);
    }
    await sleep(500);
    const written = await load.stop();
    assert.ok(written >= 10, `writes acknowledged: ${written}`);
    await s.proxy.setMode('pass');
    const st = await s.verify();
    assert.equal(st.applied_total, s.acked.transactions.length);
    await assertSeqOrder(db.pool, s.site, s.acked);
  });

  it('two centrals on one database fed alternately: no duplicate', async (t) => {
    const s = await scenario(t, 'twocentrals', { mode: delay(50), edgeEnv: { SYNC_BATCH_SIZE: '3' } });
    const other = await spawnCentral({ DATABASE_URL: db.url });
    t.after(() => other.kill('SIGKILL').then(() => {}));
    const centrals = [s.central, other];
    const load = writeLoop(() => s.edge.url, s.dir.adminToken, s.acked);
    t.after(() => load.stop().then(() => {}, () => {}));
    // Six turns; each switch cuts the open connection (answers lost on the way), each turn lasts until that central applied something.
    for (let turn = 0; turn < 6; turn++) {
      const c = centrals[turn % 2]!;
      const before = centralLogSum(c.lines, 'applied');
      s.proxy.setTarget(c.port);
      await waitFor(() => centralLogSum(c.lines, 'applied') > before, 10_000, `central ${turn % 2 ? 'B' : 'A'} to apply a batch on turn ${turn}`, () => s.stats());
    }
    await load.stop();
    await s.proxy.setMode('pass');
    const st = await s.verify();
    assert.equal(st.applied_total, s.acked.transactions.length);
    await assertSeqOrder(db.pool, s.site, s.acked);
    const dup = centralLogSum(s.central.lines, 'duplicate') + centralLogSum(other.lines, 'duplicate');
    t.diagnostic(`central A applied ${centralLogSum(s.central.lines, 'applied')}, B ${centralLogSum(other.lines, 'applied')}; duplicates answered: ${dup}`);
  });

  it('a black-holed link times out (SYNC_TIMEOUT_MS) and is retried without loss once it passes again', async (t) => {
    const s = await scenario(t, 'blackhole', { edgeEnv: { SYNC_TIMEOUT_MS: '800' } });
    const admin = s.admin();
    for (let i = 0; i < 3; i++) await createObservation(admin, s.acked);
    await until(s, (st) => st.applied_total === 3, 10_000, 'the first writes to sync');

    await s.proxy.setMode('blackhole');
    for (let i = 0; i < 10; i++) assert.equal((await createObservation(admin, s.acked)).status, 201);
    const timedOut = await until(s, (st) => st.last_error?.code === 'timeout', 8_000, 'a sync timeout');
    assert.equal(timedOut.applied_total, 3);
    assert.equal(timedOut.failed_transactions, 0);
    assert.equal(await s.centralApplied(), 3, 'nothing got through the black hole');
    assert.ok(s.proxy.count('/api/sync/transactions', 'POST') >= 1, 'a batch went into the black hole');

    await s.proxy.setMode('pass');
    const st = await s.verify(10_000);
    assert.equal(st.applied_total, 13);
    await assertSeqOrder(db.pool, s.site, s.acked);
  });

  it('requests reset halfway through their body are retried without loss', async (t) => {
    const s = await scenario(t, 'resetbody');
    const admin = s.admin();
    for (let i = 0; i < 3; i++) await createObservation(admin, s.acked);
    await until(s, (st) => st.applied_total === 3, 10_000, 'the first writes to sync');

    await s.proxy.setMode('reset-mid-body');
    for (let i = 0; i < 10; i++) assert.equal((await createObservation(admin, s.acked)).status, 201);
    // Every whole request is cut in this mode; the first failures may be a pull or a /health probe, so wait for a cut batch.
    const cutBatch = () => s.proxy.seen.some((r) => r.complete && r.mode === 'reset-mid-body' && r.method === 'POST' && r.path.startsWith('/api/sync/transactions'));
    const broken = await until(s, (st) => st.consecutive_failures >= 2 && st.last_error?.code === 'network' && cutBatch(), 8_000, 'a batch cut mid-body');
    assert.equal(broken.failed_transactions, 0);
    assert.ok(s.proxy.cutRequests >= 1, 'the proxy cut requests');
    await sleep(200);
    assert.equal(await s.centralApplied(), 3, 'a half-received batch applies nothing');

    await s.proxy.setMode('pass');
    const st = await s.verify(10_000);
    assert.equal(st.applied_total, 13);
    await assertSeqOrder(db.pool, s.site, s.acked);
  });

  // A middlebox on the link (captive portal, misconfigured reverse proxy) answers 200 with a page of its own.
  it('a 200 that is not central’s answer (captive portal page) is retried: the batch is not stranded in flight, order holds', async (t) => {
    const s = await scenario(t, 'portal');
    const admin = s.admin();
    for (let i = 0; i < 2; i++) await createObservation(admin, s.acked);
    await until(s, (st) => st.applied_total === 2, 10_000, 'the first writes to sync');

    await s.proxy.setMode({ respond: { status: 200, body: '<html><body>Welcome to SatLink. Please log in.</body></html>' } });
    const obs = await createObservation(admin, s.acked);
    assert.equal(obs.status, 201);
    await waitFor(() => s.proxy.answered >= 1 && s.proxy.count('/api/sync/transactions', 'POST') >= 1, 8_000, 'a batch answered by the portal', () => s.stats());
    const during = await s.stats();
    assert.equal(during.applied_total, 2, 'the portal page applied nothing');
    assert.equal(during.failed_transactions, 0);

    await s.proxy.setMode('pass');
    // Finishing it depends on it: must not reach central before it.
    const fin = await admin.put(`/executed_obs_units/${obs.body.executed_obs_unit_id}/finish`, { body: { status: 'success' } });
    assert.equal(fin.status, 202, fin.text);
    s.acked.transactions.push(fin.body.transaction_id);
    s.acked.finished.set(obs.body.executed_obs_unit_id, 'success');
    const later: string[] = [];
    for (let i = 0; i < 2; i++) later.push((await createObservation(admin, s.acked)).body.transaction_id as string);
    await waitFor(
      async () => (await db.pool.query('SELECT 1 FROM applied_transaction WHERE transaction_id = ANY($1::uuid[])', [later])).rowCount === 2,
      10_000,
      'the writes made after the link came back to reach central',
      () => s.stats(),
    );
    const stranded = await s.admin().get(`/api/transactions/${obs.body.transaction_id}`);
    const finished = await s.admin().get(`/api/transactions/${fin.body.transaction_id}`);
    assert.notEqual(
      stranded.body.state, 'in_flight',
      `the transaction whose batch the portal answered is stranded in flight while later ones applied: ${stranded.text}\nits finish: ${finished.text}\n${JSON.stringify(await s.stats())}`,
    );
    const st = await s.verify(10_000);
    assert.equal(st.applied_total, 6);
    await assertSeqOrder(db.pool, s.site, s.acked);
  });
});
