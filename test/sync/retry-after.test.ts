// Found in review: any Retry-After became the wait, past RETRY_MAX_MS, and /buffer-stats did not say when
// the next attempt was. One 503 with Retry-After: 86400 (a maintenance page, a misconfigured proxy) stopped
// all sync for a day, though central was back a second later. Now Retry-After is honoured up to RETRY_MAX_MS,
// /buffer-stats shows `next_attempt_at`, and a 503 in central's own error shape leaves central_reachable
// true (central answered). Real processes: an edge, the fault proxy answering in central's place, a central
// on PostgreSQL.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { centralDatabase, createObservation, killAllProcesses, startScenario, untilStats, type CentralDatabase } from '../support/processes.js';

const RETRY_MAX_MS = 2000;
/** The fields this file reads that the shared helper's type does not name. */
type Stats = Awaited<ReturnType<typeof untilStats>> & { next_attempt_at?: string | null };

let db: CentralDatabase;

describe('Retry-After and next_attempt_at', { timeout: 60_000 }, () => {
  before(async () => {
    db = await centralDatabase('retry-after');
  });
  after(async () => {
    await killAllProcesses();
    await db?.drop();
  });

  it('a Retry-After of a day is waited at most RETRY_MAX_MS, and /buffer-stats says when the next attempt is', async (t) => {
    const s = await startScenario(db, 'retry-after', {
      mode: {
        respond: {
          status: 503, body: '{"error":{"code":"service_unavailable","message":"down for maintenance"}}',
          headers: { 'content-type': 'application/json', 'retry-after': '86400' },
        },
      },
      edgeEnv: { RETRY_BASE_MS: '100', RETRY_MAX_MS: String(RETRY_MAX_MS) },
    });
    t.after(() => s.stop());
    for (let i = 0; i < 2; i++) assert.equal((await createObservation(s.admin(), s.acked)).status, 201);

    const st = (await untilStats(s, (x) => x.last_error?.code === 'http_503' && (x as Stats).next_attempt_at !== null, 10_000, 'a 503 and a wait')) as Stats;
    const next = Date.parse(st.next_attempt_at ?? '');
    assert.ok(next <= Date.now() + RETRY_MAX_MS + 500, `next_attempt_at ${st.next_attempt_at} is within RETRY_MAX_MS (${RETRY_MAX_MS} ms), not a day away`);
    assert.equal(st.central_reachable, true, "a 503 in central's own error shape: central answered");

    // Central is back: the edge drains after at most one more RETRY_MAX_MS, not in a day.
    await s.proxy.setMode('pass');
    const done = (await s.verify(15_000)) as Stats;
    assert.equal(done.next_attempt_at, null, 'no wait once sync succeeds');
    assert.equal(done.consecutive_failures, 0);
  });

  it("a gateway's 502 page (not central's error shape) shows central unreachable, with the next attempt", async (t) => {
    const s = await startScenario(db, 'gateway-502', {
      mode: { respond: { status: 502, body: '<html><body><h1>502 Bad Gateway</h1></body></html>' } },
      edgeEnv: { RETRY_BASE_MS: '1000', RETRY_MAX_MS: String(RETRY_MAX_MS) },
    });
    t.after(() => s.stop());
    assert.equal((await createObservation(s.admin(), s.acked)).status, 201);
    const st = (await untilStats(s, (x) => x.last_error?.code === 'http_502' && (x as Stats).next_attempt_at != null, 10_000, 'a 502 and a wait')) as Stats;
    assert.equal(st.central_reachable, false, 'a gateway answered, not central');
    await s.proxy.setMode('pass');
    await s.verify(15_000);
  });
});
