// SPEC §2.2–§2.5 under injected faults, on real processes: an edge (`opsdb
// serve`, SQLite buffer) syncs through a TCP fault proxy to a real central
// (`opsdb serve`, SITE_TYPE=main) on PostgreSQL. Every scenario ends with the
// edge ledger (accepted = applied + pending + in_flight + blocked + failed +
// discarded) and exactly one copy at central of every acknowledged write.
// Crashes, timeouts and resets are in faults-crash.test.ts.
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import {
  Acked, assertSeqOrder, centralDatabase, centralLogSum, createCentralToken, createObservation, killAllProcesses,
  startAndFinish, startScenario, waitDrained, waitFor, type CentralDatabase, type Scenario,
  untilStats as until,
} from '../support/processes.js';

let db: CentralDatabase;

async function scenario(t: TestContext, label: string, opts: Parameters<typeof startScenario>[2] = {}): Promise<Scenario> {
  const s = await startScenario(db, label, opts);
  t.after(() => s.stop());
  return s;
}


const txState = async (s: Scenario, id: string) => {
  const r = await s.admin().get(`/api/transactions/${id}`);
  assert.equal(r.status, 200, `GET /api/transactions/${id}: ${r.text}`);
  return r.body as { state: string; attempts: number; seq: number; last_error: { code: string; message: string } | null };
};

describe('sync under faults: outages, lost answers, poison, credentials (real processes)', { timeout: 120_000 }, () => {
  before(async () => {
    db = await centralDatabase('faults');
  });
  after(async () => {
    await killAllProcesses();
    await db?.drop();
  });

  it('central down for the whole write phase: all applies once, in seq order; nothing dead-lettered', async (t) => {
    // A short RETRY_MAX_MS: many failed attempts in little time (the Python original dead-lettered after 3).
    const s = await scenario(t, 'down', { mode: 'refuse', edgeEnv: { SYNC_BATCH_SIZE: '8', RETRY_MAX_MS: '250' } });
    const admin = s.admin();
    for (let i = 0; i < 50; i += 5) {
      const res = await Promise.all(Array.from({ length: 5 }, () => createObservation(admin, s.acked)));
      for (const r of res) assert.equal(r.status, 201, JSON.stringify(r.body));
    }
    for (let i = 0; i < 5; i++) await startAndFinish(admin, s.acked);
    assert.equal(s.acked.transactions.length, 60);

    const down = await until(s, (st) => st.consecutive_failures >= 10, 15_000, 'many failed attempts while central is down');
    assert.equal(down.applied_total, 0);
    assert.equal(down.failed_transactions, 0, 'a down link dead-letters nothing');
    assert.equal(down.central_reachable, false);
    assert.equal(down.pending_transactions + down.in_flight_transactions, 60);
    const first = await txState(s, s.acked.transactions[0]!);
    assert.ok(first.attempts >= 5, `the first transaction was tried again and again (attempts ${first.attempts})`);
    assert.ok(['pending', 'in_flight'].includes(first.state), `still waiting, not ${first.state}`);
    assert.equal(await s.centralApplied(), 0, 'central saw nothing');

    await s.proxy.setMode('pass');
    const st = await s.verify();
    assert.equal(st.applied_total, 60);
    const batches = await assertSeqOrder(db.pool, s.site, s.acked);
    assert.ok(batches >= 5, `60 transactions in batches of at most 8 took ${batches} commits`);
    t.diagnostic(`${s.proxy.connections} connections, ${batches} batches`);
  });

  it('lost acknowledgements: central commits, the edge never hears; the resend is a duplicate, no row twice', async (t) => {
    const s = await scenario(t, 'lostack', { edgeEnv: { SYNC_BATCH_SIZE: '5' } });
    const admin = s.admin();
    for (let i = 0; i < 5; i++) await createObservation(admin, s.acked);
    await waitDrained(() => s.edge.url, 10_000, 'the first writes to sync');

    await s.proxy.setMode('drop-response');
    for (let i = 0; i < 20; i++) assert.equal((await createObservation(admin, s.acked)).status, 201);
    // Central is ahead of what the edge knows: it applied batches whose answers were lost.
    let edgeApplied = 0;
    await waitFor(
      async () => {
        edgeApplied = (await s.stats()).applied_total;
        return s.proxy.droppedResponses >= 3 && (await s.centralApplied()) > edgeApplied;
      },
      10_000,
      'central to apply batches whose answers are dropped',
      async () => ({ dropped: s.proxy.droppedResponses, central: await s.centralApplied(), edge: await s.stats() }),
    );
    const stuck = await s.stats();
    assert.equal(stuck.failed_transactions, 0, 'a lost answer is not the data’s fault');

    await s.proxy.setMode('pass');
    const st = await s.verify();
    assert.equal(st.applied_total, s.acked.transactions.length, 'applied_total = acknowledged writes');
    assert.ok(centralLogSum(s.central.lines, 'duplicate') >= 1, 'central answered `duplicate` to the resend');
    await assertSeqOrder(db.pool, s.site, s.acked);
  });

  it('a poison transaction fails with central’s reason, its dependents are held, unrelated ones pass; retry releases them in order', async (t) => {
    const s = await scenario(t, 'poison', { mode: 'refuse' });
    s.proxy.captureBodies = true;
    const admin = s.admin();
    const unrelated = new Acked();
    // Never synced: the edge cannot check obs_unit 999, accepts, and lets central decide.
    for (let i = 0; i < 2; i++) await createObservation(admin, unrelated);
    const poison = await createObservation(admin, s.acked, 999);
    assert.equal(poison.status, 201, `the edge accepts what it cannot check: ${JSON.stringify(poison.body)}`);
    const obsId = poison.body.executed_obs_unit_id as string;
    // In the same batch as its parent: sent after it, rejected too, and then held (blocked), not failed.
    const file = await admin.post('/raw_data_files/', {
      body: { name: 'late.fits', path: '/data/late.fits', size: 5, checksum: 'x', file_type: 'fits', executed_obs_unit_id: obsId },
    });
    assert.equal(file.status, 201, file.text);
    s.acked.transactions.push(file.body.transaction_id);
    s.acked.files.push(file.body.id);
    for (let i = 0; i < 3; i++) await createObservation(admin, unrelated);

    await s.proxy.setMode('pass');
    await until(s, (st) => st.failed_transactions === 1 && st.blocked_transactions === 1 && st.applied_total === 5, 15_000, 'poison failed, its file blocked, the rest applied');
    const failed = await txState(s, poison.body.transaction_id);
    assert.equal(failed.state, 'failed');
    assert.equal(failed.last_error?.code, 'reference_not_found', `central's reason: ${JSON.stringify(failed.last_error)}`);
    assert.equal((await txState(s, file.body.transaction_id)).state, 'blocked');

    // A finish written now depends on a failed parent: held at the edge, never sent.
    const fin = await admin.put(`/executed_obs_units/${obsId}/finish`, { body: { status: 'success', end_time: '2025-01-02T00:00:00Z' } });
    assert.equal(fin.status, 202, fin.text);
    s.acked.transactions.push(fin.body.transaction_id);
    s.acked.finished.set(obsId, 'success');
    for (let i = 0; i < 2; i++) await createObservation(admin, unrelated);
    await until(s, (st) => st.applied_total === 7 && st.blocked_transactions === 2, 10_000, 'unrelated writes after the finish applied, the finish blocked');
    const finState = await txState(s, fin.body.transaction_id);
    assert.equal(finState.state, 'blocked');
    assert.equal(finState.attempts, 0);
    const sent = s.proxy.seen.filter((r) => r.body?.includes(fin.body.transaction_id));
    assert.deepEqual(sent.map((r) => `${r.method} ${r.path}`), [], 'the blocked finish never went over the wire');
    const atCentral = await db.pool.query('SELECT 1 FROM applied_transaction WHERE transaction_id = ANY($1::uuid[])', [
      [poison.body.transaction_id, file.body.transaction_id, fin.body.transaction_id],
    ]);
    assert.equal(atCentral.rowCount, 0, 'central holds none of the held chain');
    // Once synced the edge checks references itself.
    assert.equal((await createObservation(admin, new Acked(), 999)).status, 422);

    // The operator fixes the cause at central and retries: parent, then dependents, in order.
    await db.pool.query(`INSERT INTO obs_unit (id, name, observing_program_id) VALUES (999, $1, 1)`, [`fault-999-${s.site}`]);
    const retry = await admin.post(`/api/buffer/failed/${poison.body.transaction_id}/retry`);
    assert.equal(retry.status, 200, retry.text);
    assert.equal(retry.body.count, 3, `released the parent and both dependents: ${retry.text}`);
    s.acked.transactions.push(...unrelated.transactions);
    s.acked.observations.push(...unrelated.observations);
    s.acked.packages.push(...unrelated.packages);
    s.acked.files.push(...unrelated.files);
    const st = await s.verify();
    assert.equal(st.applied_total, 10);
    const { rows } = await db.pool.query<{ id: string; seq: string; applied_at: Date }>(
      'SELECT transaction_id::text AS id, seq, applied_at FROM applied_transaction WHERE transaction_id = ANY($1::uuid[]) ORDER BY applied_at, seq',
      [[poison.body.transaction_id, file.body.transaction_id, fin.body.transaction_id]],
    );
    assert.deepEqual(rows.map((r) => r.id), [poison.body.transaction_id, file.body.transaction_id, fin.body.transaction_id], 'applied parent first');
    const obs = await db.pool.query('SELECT status FROM executed_obs_unit WHERE id = $1', [obsId]);
    assert.equal(obs.rows[0]?.status, 'success', 'the observation at central ends finished');
  });

  it('a 401 pauses the engine and says so; writes are still buffered; a new site token resumes and drains', async (t) => {
    const s = await scenario(t, 'revoke');
    const admin = s.admin();
    for (let i = 0; i < 3; i++) await createObservation(admin, s.acked);
    await waitDrained(() => s.edge.url, 10_000, 'the first writes to sync');

    // Revoked while the link is down, with writes waiting: the next push meets the 401.
    await s.proxy.setMode('refuse');
    for (let i = 0; i < 3; i++) await createObservation(admin, s.acked);
    const revoked = await db.pool.query(
      `UPDATE api_token SET is_active = false, revoked_at = now() WHERE user_id = (SELECT id FROM "user" WHERE username = $1)`,
      [`site-${s.site}`],
    );
    assert.ok((revoked.rowCount ?? 0) >= 1);
    const before = await s.centralApplied();
    await s.proxy.setMode('pass');
    const paused = await until(s, (st) => st.background_processor === 'paused', 10_000, 'the engine to pause on 401');
    assert.equal(paused.last_error?.code, 'http_401');
    assert.match(paused.last_error?.message ?? '', /site token/i, 'last_error names the token');
    assert.equal(paused.central_reachable, true, 'central answered: the link is fine, the token is not');
    assert.ok(s.proxy.count('/api/sync/transactions', 'POST') >= 1, 'a batch met the 401');
    const health = await fetch(`${s.edge.url}/health`).then((r) => r.json() as Promise<{ status: string; background_processor: string }>);
    assert.equal(health.status, 'degraded');
    assert.equal(health.background_processor, 'paused');

    for (let i = 0; i < 3; i++) assert.equal((await createObservation(admin, s.acked)).status, 201, 'writes are still accepted');
    await new Promise((r) => setTimeout(r, 800));
    const held = await s.stats();
    assert.equal(held.pending_transactions, 6, 'buffered while paused');
    assert.equal(held.failed_transactions, 0, 'a credentials problem dead-letters nothing');
    assert.equal(held.background_processor, 'paused');
    assert.equal(await s.centralApplied(), before, 'nothing reached central');

    const token = await createCentralToken(db.url, `site-${s.site}`);
    const put = await admin.put('/api/sync/site-token', { body: { token } });
    assert.equal(put.status, 204, put.text);
    const st = await s.verify(8_000);
    assert.equal(st.background_processor, 'running');
    assert.equal(st.applied_total, 9);
    const healthy = await fetch(`${s.edge.url}/health`).then((r) => r.json() as Promise<{ status: string }>);
    assert.equal(healthy.status, 'healthy');
  });

  it('a link that recovers during a long backoff: the /health probe ends the wait, the drain starts within 5 s', async (t) => {
    // Full jitter draws the first wait from [0, RETRY_BASE_MS]: a base of 60 s makes a wait that ends by itself
    // within the 6.5 s below unlikely (~1 in 10), so a broken probe fails this test.
    const s = await scenario(t, 'backoff', { mode: 'refuse', edgeEnv: { RETRY_BASE_MS: '60000', RETRY_MAX_MS: '60000' } });
    const admin = s.admin();
    for (let i = 0; i < 5; i++) await createObservation(admin, s.acked);
    await until(s, (st) => st.consecutive_failures >= 1 && st.central_reachable === false, 10_000, 'a failed attempt');
    await new Promise((r) => setTimeout(r, 1500)); // well into a backoff of up to 60 s
    const down = await s.stats();
    assert.equal(down.applied_total, 0);

    await s.proxy.setMode('pass');
    const t0 = Date.now();
    await until(s, (st) => st.applied_total > 0, 5_000, 'the drain to start within 5 s of the link coming back');
    t.diagnostic(`drain started ${Date.now() - t0} ms after the link came back (failures before: ${down.consecutive_failures})`);
    assert.ok(s.proxy.count('/health', 'GET') >= 1, 'the engine probed /health');
    await s.verify(5_000);
  });

  it('behind a gateway that answers 502 while central is down, the /health probe also ends a long backoff', async (t) => {
    const s = await scenario(t, 'gateway', {
      mode: { respond: { status: 502, body: '<html>Bad Gateway</html>' } },
      edgeEnv: { RETRY_BASE_MS: '60000', RETRY_MAX_MS: '60000' },
    });
    const admin = s.admin();
    for (let i = 0; i < 3; i++) await createObservation(admin, s.acked);
    await until(s, (st) => st.consecutive_failures >= 1 && (st.last_error as { code?: string } | null)?.code === 'http_502', 10_000, 'a 502');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await s.stats()).applied_total, 0);
    await s.proxy.setMode('pass');
    const t0 = Date.now();
    await until(s, (st) => st.applied_total > 0, 5_000, 'the drain to start within 5 s of central coming back');
    t.diagnostic(`drain started ${Date.now() - t0} ms after central came back behind the gateway`);
    await s.verify(5_000);
  });
});
