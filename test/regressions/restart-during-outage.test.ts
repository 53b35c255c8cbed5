// Found in review: an edge restarted during an outage (systemd after a crash, an operator's restart)
// answered /health "healthy", with no last sync, no error and central_reachable null, until its first
// exchange with central had failed: SYNC_TIMEOUT_MS (30 s) and more on a link that drops packets, and
// again after every restart. What sync knew of the link is now kept in local.db and restored at start.
// Real processes: central on PostgreSQL, the edge behind the fault proxy, SIGKILL and restart.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { centralDatabase, createObservation, killAllProcesses, startScenario, waitFor, type CentralDatabase } from '../support/processes.js';

const health = async (url: string) => (await (await fetch(`${url}/health`)).json()) as { status: string };
const stats = async (url: string) => (await (await fetch(`${url}/buffer-stats`)).json()) as Record<string, unknown>;

describe('an edge restarted during an outage', () => {
  let db: CentralDatabase;
  before(async () => {
    db = await centralDatabase('restart_outage');
  });
  after(async () => {
    await killAllProcesses();
    await db?.drop();
  });

  it('says so at once: degraded, with the last sync and the last error from before the restart', async (t) => {
    // The default SYNC_TIMEOUT_MS: on a link that drops packets, the first exchange after the restart takes that long to fail.
    const s = await startScenario(db, 'restart-outage', { edgeEnv: { SYNC_TIMEOUT_MS: '30000', SYNC_INTERVAL_MS: '100', RETRY_BASE_MS: '100', RETRY_MAX_MS: '1000' } });
    t.after(() => s.stop());
    assert.equal((await createObservation(s.admin(), s.acked)).status, 201);
    await waitFor(async () => (await stats(s.edge.url)).applied_total === 1, 15_000, 'the first write synced');
    await s.proxy.setMode('refuse');
    for (let i = 0; i < 5; i++) assert.equal((await createObservation(s.admin(), s.acked)).status, 201);
    await waitFor(async () => (await stats(s.edge.url)).consecutive_failures !== 0, 15_000, 'sync failing');
    const before = await stats(s.edge.url);
    assert.ok(before.last_sync_at);

    // The link now drops packets; the edge is killed and started again.
    await s.proxy.setMode('blackhole');
    await s.restartEdge();
    const after = await stats(s.edge.url);
    assert.equal((await health(s.edge.url)).status, 'degraded', JSON.stringify(after));
    assert.equal(after.last_sync_at, before.last_sync_at, 'the last sync before the restart');
    assert.deepEqual(after.last_error, before.last_error, 'and its last error');
    assert.ok((after.consecutive_failures as number) >= (before.consecutive_failures as number));
    assert.equal(after.central_reachable, false);
    assert.equal(after.pending_transactions as number + (after.in_flight_transactions as number), 5);

    // The link comes back: the first exchange that works clears it, and that too is kept.
    await s.proxy.setMode('pass');
    await waitFor(async () => (await stats(s.edge.url)).applied_total === 6, 60_000, 'the backlog synced');
    await waitFor(async () => (await health(s.edge.url)).status === 'healthy', 15_000, 'healthy again');
    await s.restartEdge();
    const again = await stats(s.edge.url);
    assert.equal(again.consecutive_failures, 0);
    assert.equal(again.last_error, null);
    assert.equal((await health(s.edge.url)).status, 'healthy');
  });
});
