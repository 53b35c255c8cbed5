// Found in review: a GET to central (the pull of the change feed) had a flat SYNC_TIMEOUT_MS for its
// headers and its whole body. A page holds at least one whole feed position, so on a slow downlink the
// page of one large transaction (a bulk of many files) could never be read: every pull timed out and
// downloaded it again, the replica never advanced, nothing was compacted, and the buffer filled up to
// 507, while /buffer-stats said central was unreachable. Now SYNC_TIMEOUT_MS bounds the wait for
// central's answer and then the wait for each next byte of its body; a pull that times out or stalls
// asks for half the rows next time, and twice as many after one gets through; a stalled body is
// reported as `stalled`, with central reachable. Real processes: an edge, the fault proxy (downlink
// throttled, or an answer that stops after its first byte), a central on PostgreSQL.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { centralDatabase, killAllProcesses, startScenario, startWithBigBulk, untilStats, type CentralDatabase } from '../support/processes.js';

let db: CentralDatabase;

/** max_rows of the pulls the proxy saw in `mode`, in order. */
const pageRows = (s: Awaited<ReturnType<typeof startScenario>>, mode: string) =>
  s.proxy.seen.filter((r) => r.mode === mode && r.path.startsWith('/api/sync/changes')).map((r) => Number(/max_rows=(\d+)/.exec(r.path)?.[1]));

describe('sync over a slow or stalling downlink', { timeout: 90_000 }, () => {
  before(async () => {
    db = await centralDatabase('slow-downlink');
  });
  after(async () => {
    await killAllProcesses();
    await db?.drop();
  });

  it('a feed position that takes several SYNC_TIMEOUT_MS to download reaches the replica, and the buffer is compacted', async (t) => {
    const s = await startScenario(db, 'slow-downlink', { edgeEnv: { SYNC_TIMEOUT_MS: '1500' } });
    t.after(() => s.stop());
    await untilStats(s, (st) => st.consecutive_failures === 0 && (st as { last_sync_at?: string | null }).last_sync_at != null, 10_000, 'a first sync');
    // 64 KiB/s down, full speed up: the push of the bulk gets through at once, its ~340 KB coming back take ~5 s.
    await s.proxy.setMode({ downRate: 64 * 1024 });
    const admin = s.admin();
    const { bulkTx, bytes } = await startWithBigBulk(admin, s.acked, 600);
    assert.ok(bytes > 300_000, `a large transaction (${bytes} bytes): several SYNC_TIMEOUT_MS at 64 KiB/s`);

    // Applied at central, then pulled back and compacted: nothing left awaiting the replica.
    const st = await untilStats(s, (x) => x.applied_total === x.accepted_total && x.synced_awaiting_replica === 0, 30_000, 'the bulk back in the replica, compacted');
    assert.equal(st.consecutive_failures, 0, JSON.stringify(st.last_error));
    const after = await admin.get(`/api/transactions/${bulkTx}`);
    assert.equal(after.body.state, 'synced', after.text);
    assert.ok(after.body.compacted_at, `compacted: ${after.text}`);
  });

  it('an answer that stops arriving is reported as stalled, not unreachable, and pulls ask for smaller pages until one gets through', async (t) => {
    const s = await startScenario(db, 'stalled-body', { edgeEnv: { SYNC_TIMEOUT_MS: '1000', RETRY_BASE_MS: '100', RETRY_MAX_MS: '500' } });
    t.after(() => s.stop());
    await untilStats(s, (st) => st.consecutive_failures === 0 && (st as { last_sync_at?: string | null }).last_sync_at != null, 10_000, 'a first sync');

    await s.proxy.setMode('stall-body');
    const st = await untilStats(s, (x) => x.last_error?.code === 'stalled' && pageRows(s, 'stall-body').length >= 3, 20_000, 'three stalled pulls');
    assert.equal(st.central_reachable, true, 'central answered: it is reachable, the link stalls');
    assert.match(st.last_error!.message, /stopped arriving/);
    const stalled = pageRows(s, 'stall-body');
    for (let i = 1; i < stalled.length; i++) assert.ok(stalled[i]! < stalled[i - 1]!, `each stalled pull asked for fewer rows: ${stalled.join(', ')}`);

    // The link is well again: pulls get through, and their pages grow back to the full size.
    await s.proxy.setMode('pass');
    await untilStats(s, (x) => x.consecutive_failures === 0 && pageRows(s, 'pass').at(-1) === stalled[0], 15_000, 'pages back at full size');
  });
});
