// Found in review: a pull that failed made the whole engine wait out a backoff, pushes included. With
// central's change feed failing (a 500 on GET /api/sync/changes, a feed page that times out) while
// batches went through, the backlog moved one pipelined round per backoff, and with nothing pending a
// new write waited for the pull's backoff to end: observations held back by a failure that was not
// theirs. A pull now waits out a backoff of its own, and pushes go on. The real engine and central, a
// real SQLite buffer; the client in between answers the feed with a failure.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { until } from '../support/daemon.js';
import { engineBed, engineFor, startObservation as observation } from '../support/engine.js';
import { TransportError, type CentralClient } from '../../src/sync/transport.js';

/** Central's feed fails (`how`); everything else goes through. Counts the pulls tried. */
function feedFails(how: 'http_500' | 'timeout') {
  const seen = { pulls: 0 };
  const wrap = (real: CentralClient): CentralClient => ({
    post: real.post.bind(real),
    async get(path, token, headers) {
      if (!path.startsWith('/api/sync/changes')) return real.get(path, token, headers);
      seen.pulls += 1;
      if (how === 'timeout') throw new TransportError('timeout', 'no answer from central in time');
      return { status: 500, headers: new Headers({ 'content-type': 'application/json' }), body: { error: { code: 'internal', message: 'the feed broke' } } };
    },
  });
  return { seen, wrap };
}

describe('a failing pull does not hold back pushes', () => {
  const bed = engineBed('pull-failure');

  for (const how of ['http_500', 'timeout'] as const) {
    it(`a backlog drains while every pull fails (${how}), and the failure shows`, async () => {
      const site = `pull-fails-${how}`;
      const { seen, wrap } = feedFails(how);
      // A backoff far longer than the wait below: only pushes that do not wait on it can drain in time.
      const { engine, buffer, close } = await engineFor(bed.central, site, bed.siteDir(site),
        { client: wrap, intervalMs: 50, retryBaseMs: 60_000, retryMaxMs: 60_000 });
      try {
        for (let i = 0; i < 10; i++) await buffer.append(Array.from({ length: 100 }, () => observation(site)));
        engine.start();
        await until('the backlog applied at central', async () => (await buffer.stats()).applied_total === 1000, 15_000);
        assert.ok(seen.pulls >= 1, 'pulls were tried');
        const { rows } = await bed.central.db.query<{ seq: string }>('SELECT seq FROM applied_transaction WHERE site = $1 ORDER BY applied_at, seq', [site]);
        assert.deepEqual(rows.map((r) => Number(r.seq)), Array.from({ length: 1000 }, (_, i) => i + 1), 'once each, in order');
        await until('the failed pull in last_error', async () => engine.lastError()?.code === how, 5_000);
        assert.ok(engine.consecutiveFailures() > 0, 'and counted, so /health says degraded');
      } finally {
        await close();
      }
    });
  }

  it('with nothing pending, a new write is sent at once while pulls keep failing', async () => {
    const site = 'pull-fails-idle';
    const { seen, wrap } = feedFails('http_500');
    const { engine, buffer, close } = await engineFor(bed.central, site, bed.siteDir(site),
      { client: wrap, intervalMs: 50, retryBaseMs: 60_000, retryMaxMs: 60_000 });
    try {
      engine.start();
      await until('a pull to fail', async () => seen.pulls >= 1 && engine.lastError()?.code === 'http_500', 5_000);
      await buffer.append([observation(site)]);
      engine.nudge();
      await until('the write applied at central', async () => (await buffer.stats()).applied_total === 1, 10_000);
    } finally {
      await close();
    }
  });

  // Found by the suite: with central down for pushes and pulls alike, a pull's own backoff outlived the
  // outage, so once central was back the backlog drained but the replica waited, and /health stayed
  // degraded (consecutive_failures 1) for up to RETRY_MAX_MS.
  it('once a push gets through after an outage, the next pull goes at once', async () => {
    const site = 'pull-after-outage';
    let down = true;
    const wrap = (real: CentralClient): CentralClient => ({
      async post(path, body, token, headers, cancel) {
        if (down) throw new TransportError('network', 'connect ECONNREFUSED');
        return real.post(path, body, token, headers, cancel);
      },
      async get(path, token, headers) {
        if (down && path.startsWith('/api/sync/changes')) {
          return { status: 503, headers: new Headers({ 'content-type': 'application/json' }), body: { error: { code: 'service_unavailable', message: 'down for maintenance' } } };
        }
        if (down) throw new TransportError('network', 'connect ECONNREFUSED');
        return real.get(path, token, headers);
      },
    });
    const { engine, buffer, close } = await engineFor(bed.central, site, bed.siteDir(site),
      { client: wrap, intervalMs: 50, retryBaseMs: 60_000, retryMaxMs: 60_000 });
    try {
      engine.start();
      await until('a pull to fail', async () => engine.lastError()?.code === 'http_503', 5_000);
      await buffer.append([observation(site)]);
      engine.nudge();
      await until('the push to fail', async () => engine.lastError()?.code === 'network', 5_000);
      down = false; // central's /health answers again, and the engine's probe ends its wait
      await until('the write applied', async () => (await buffer.stats()).applied_total === 1, 10_000);
      await until('the replica to pull again', async () => engine.consecutiveFailures() === 0 && engine.lastError() === null, 3_000);
    } finally {
      await close();
    }
  });
});
