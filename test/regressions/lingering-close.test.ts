// Found in session 12's fuzz and reproduced with Python's urllib: a refusal given before the body was
// read (a 413 from Content-Length or from a chunked body past the limit, a 401) on a connection that then
// closes (urllib asks for `Connection: close`) got "Broken pipe" instead of the answer. Node destroyed
// the socket right after the answer with the client's bytes still unread, so the kernel sent a reset,
// and a client that sends its whole body before it reads never saw the 4xx. Now the rest of the body is
// read and dropped first (a lingering close, `src/lib/http/close.ts`).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { startCentralAndEdge } from '../support/edge.js';
import { Acked, createObservation } from '../support/processes.js';
import { LINGER_IDLE_MS } from '../../src/lib/http/close.js';

let sites: Awaited<ReturnType<typeof startCentralAndEdge>>;
before(async () => {
  sites = await startCentralAndEdge('lingering-close', 'lingersite');
});
after(() => sites?.stop());

const MiB = 1024 ** 2;

interface Outcome {
  /** What came back: the status line and the body, or '' */
  status: number;
  body: string;
  /** An error seen while sending or reading (EPIPE, ECONNRESET), if any. */
  error?: string;
}

/**
 * Behaves like urllib: sends the head and then the whole body without reading, and reads the answer
 * only after that. The socket is paused, so
 * what the server sends stays in the kernel's buffer, where a reset from the server throws it away.
 */
function sendThenRead(url: string, head: string, body: Buffer[]): Promise<Outcome> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const s: Socket = connect(Number(port), hostname);
    s.pause();
    let error: string | undefined;
    let got = '';
    s.on('error', (e: NodeJS.ErrnoException) => (error ??= e.code ?? e.message));
    s.on('close', () => {
      const at = got.indexOf('\r\n\r\n');
      resolve({
        status: at < 0 ? 0 : Number(got.split(' ')[1]),
        body: at < 0 ? '' : got.slice(at + 4),
        ...(error ? { error } : {}),
      });
    });
    s.on('connect', async () => {
      const chunks = [Buffer.from(head), ...body];
      for (const chunk of chunks) {
        if (s.destroyed) break;
        await new Promise<void>((res) => s.write(chunk, () => res()));
      }
      s.on('data', (d) => (got += d.toString('latin1')));
      s.resume();
    });
  });
}

const spaces = (bytes: number) => Array.from({ length: Math.ceil(bytes / (64 * 1024)) }, () => Buffer.alloc(64 * 1024, 0x20));
const chunked = (chunks: Buffer[]) => [...chunks.map((c) => Buffer.concat([Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n')])), Buffer.from('0\r\n\r\n')];

const both = () => [
  ['central', sites.central.url, sites.central.admin.token!],
  ['edge', sites.edge.url, sites.edge.admin.token!],
] as const;

const headFor = (token: string | null, framing: string) =>
  `POST /api/demo/create-observation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${framing}\r\n` +
  `Connection: close\r\n${token ? `Authorization: Bearer ${token}\r\n` : ''}\r\n`;

describe('an answer given before the body is read reaches a client that sends all of it first', () => {
  it('413 from Content-Length: the client gets the JSON error, not a reset', async () => {
    for (const [site, url, token] of both()) {
      const r = await sendThenRead(url, headFor(token, `Content-Length: ${12 * MiB}`), spaces(12 * MiB));
      assert.equal(r.error, undefined, `${site}: ${JSON.stringify(r)}`);
      assert.equal(r.status, 413, site);
      assert.equal(JSON.parse(r.body).error.code, 'payload_too_large', site);
    }
  });

  it('413 for a chunked body that crosses the limit while it is read', async () => {
    for (const [site, url, token] of both()) {
      const r = await sendThenRead(url, headFor(token, 'Transfer-Encoding: chunked'), chunked(spaces(12 * MiB)));
      assert.equal(r.error, undefined, `${site}: ${JSON.stringify(r)}`);
      assert.equal(r.status, 413, site);
      assert.equal(JSON.parse(r.body).error.code, 'payload_too_large', site);
    }
  });

  it('401 for a request with a large body and no token', async () => {
    for (const [site, url] of both()) {
      const r = await sendThenRead(url, headFor(null, `Content-Length: ${6 * MiB}`), spaces(6 * MiB));
      assert.equal(r.error, undefined, `${site}: ${JSON.stringify(r)}`);
      assert.equal(r.status, 401, site);
      assert.equal(JSON.parse(r.body).error.code, 'unauthorized', site);
    }
  });

  it('a client that falls silent after its answer is let go after the idle time: its next bytes are refused', { timeout: 30_000 }, async () => {
    await Promise.all(both().map(async ([site, url, token]) => {
      // It sends 1 MiB of a declared 12 MiB and reads the answer, but does not close its side when the server does.
      const { hostname, port } = new URL(url);
      const s = connect({ port: Number(port), host: hostname, allowHalfOpen: true });
      let got = '';
      let error: string | undefined;
      s.on('data', (d) => (got += d.toString('latin1')));
      s.on('error', (e: NodeJS.ErrnoException) => (error ??= e.code));
      await new Promise((res) => s.once('connect', res));
      s.write(headFor(token, `Content-Length: ${12 * MiB}`));
      for (const chunk of spaces(MiB)) await new Promise<void>((res) => s.write(chunk, () => res()));
      await new Promise((res) => s.once('end', res)); // the answer, then the server's end of the stream
      assert.match(got, /^HTTP\/1.1 413 /, site);
      // Within the idle time the server still reads (and drops) what comes.
      s.write(Buffer.alloc(64 * 1024, 0x20));
      await new Promise((res) => setTimeout(res, LINGER_IDLE_MS + 1500));
      assert.equal(error, undefined, `${site}: still read while it lingers`);
      // After it, the connection is gone at the server: what the client sends now is answered with a reset.
      const gone = new Promise<void>((res) => s.once('close', () => res()));
      for (let i = 0; i < 20 && !s.destroyed; i++) {
        s.write(Buffer.alloc(64 * 1024, 0x20));
        await new Promise((res) => setTimeout(res, 100));
      }
      await gone;
      assert.match(error ?? '', /ECONNRESET|EPIPE/, `${site}: the server let the silent connection go`);
    }));
  });

  it('the site still takes writes afterwards, and nothing was stored by the refused ones', async () => {
    const before = (await sites.edge.admin.get('/buffer-stats')).body.accepted_total as number;
    const ok = await createObservation(sites.edge.admin, new Acked());
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    const after = (await sites.edge.admin.get('/buffer-stats')).body;
    assert.equal(after.accepted_total, before + 1, JSON.stringify(after));
  });
});
