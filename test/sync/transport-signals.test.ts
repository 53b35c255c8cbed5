// Found by a leak review (session 12), running an edge through hundreds of link faults: every sync
// request made its signal with AbortSignal.any([timeout, stop]), and Node 20 keeps a reference in the
// engine's stop signal, which lives as long as the process, for every signal made from it. Heap
// snapshots showed one WeakRef more per request (push, pull and /health probe alike): ≈ 3–4 MB a day
// at the default SYNC_INTERVAL_MS, for good. Real HTTP requests to a real local server here.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { getEventListeners } from 'node:events';
import type { AddressInfo } from 'node:net';
import { httpClient, TransportError } from '../../src/sync/transport.js';

let server: Server;
let base: string;
before(async () => {
  server = createServer((req, res) => {
    if (req.url === '/never') return; // holds the request: only an abort ends it
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

/** What Node keeps in a signal for the signals made from it with AbortSignal.any (an internal Set of WeakRefs). */
function dependants(signal: AbortSignal): number {
  const key = Object.getOwnPropertySymbols(signal).find((s) => s.description === 'kDependantSignals');
  return key ? ((signal as unknown as Record<symbol, Set<unknown>>)[key]?.size ?? 0) : 0;
}

describe('the sync transport and the engine\'s stop signal', () => {
  it('leaves nothing in the long-lived stop signal, however many requests it makes', async () => {
    const stop = new AbortController();
    const cancel = new AbortController();
    const client = httpClient(base, 5000, stop.signal);
    for (let i = 0; i < 200; i++) {
      assert.equal((await client.get('/ok', null)).status, 200);
      assert.equal((await client.post('/ok', { i }, 'token', undefined, cancel.signal)).status, 200);
    }
    assert.equal(dependants(stop.signal), 0, 'no reference per request kept by the stop signal');
    assert.equal(dependants(cancel.signal), 0);
    assert.equal(getEventListeners(stop.signal, 'abort').length, 0, 'no listener left behind');
    assert.equal(getEventListeners(cancel.signal, 'abort').length, 0);
  });

  it('still ends a request in flight when the engine stops, or when its batch is cancelled', async () => {
    for (const which of ['stop', 'cancel'] as const) {
      const stop = new AbortController();
      const cancel = new AbortController();
      const client = httpClient(base, 30_000, stop.signal);
      const started = performance.now();
      const call = client.post('/never', {}, 'token', undefined, cancel.signal);
      setTimeout(() => (which === 'stop' ? stop : cancel).abort(), 100);
      await assert.rejects(call, (err: unknown) => err instanceof TransportError && err.kind === 'network', which);
      assert.ok(performance.now() - started < 5000, `${which}: ended at once, not at the 30 s timeout`);
    }
  });

  it('does not even start a request once the engine has stopped', async () => {
    const stop = new AbortController();
    stop.abort();
    await assert.rejects(httpClient(base, 5000, stop.signal).get('/ok', null), TransportError);
  });
});
