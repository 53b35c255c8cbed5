// readJsonBody over a real HTTP server: the NUL and nesting checks that skip their walk when the text
// cannot need it must still refuse what they refused before, and accept what only looks like it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { isUtf8 } from 'node:buffer';
import { MAX_JSON_DEPTH, firstBadUtf8, readJsonBody } from '../../src/lib/http/body.js';
import { AppError } from '../../src/lib/errors.js';

describe('readJsonBody', () => {
  let server: Server;
  let url: string;
  before(async () => {
    const app = new Koa();
    app.silent = true;
    app.use(async (ctx) => {
      if (ctx.get('x-pause')) ctx.req.pause();
      try {
        ctx.body = { value: await readJsonBody(ctx, 1_000_000) };
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        ctx.status = err.status;
        ctx.body = { message: err.message, details: err.details };
      }
    });
    server = createServer(app.callback());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const send = async (raw: string | Buffer) => {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: raw });
    return { status: res.status, body: (await res.json()) as { value?: unknown; message?: string; details?: unknown } };
  };

  it('refuses a NUL in a value, naming where it is', async () => {
    const r = await send('{"a":{"b":["ok","x\\u0000y"]}}');
    assert.equal(r.status, 422);
    assert.equal(r.body.message, 'Invalid body: a.b.1: NUL characters are not allowed');
    assert.deepEqual(r.body.details, [{ location: 'body', path: 'a.b.1', message: 'NUL character' }]);
  });

  it('refuses a NUL in a key', async () => {
    const r = await send('{"a\\u0000":1}');
    assert.equal(r.status, 422);
    assert.match(r.body.message!, /NUL characters are not allowed/);
  });

  it('accepts an escaped backslash followed by u0000, which is no NUL', async () => {
    const r = await send('{"a":"\\\\u0000"}');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.value, { a: '\\u0000' });
  });

  it('refuses a lone surrogate, high or low, in a value or a key', async () => {
    for (const raw of ['{"a":"x\\ud800"}', '{"a":"\\udc00y"}', '{"a":["\\ude00\\ud83d"]}', '{"\\uD800":1}']) {
      const r = await send(raw);
      assert.equal(r.status, 422, raw);
      assert.match(r.body.message!, /text must be valid Unicode \(a lone UTF-16 surrogate was sent\)/, raw);
    }
  });

  it('refuses bytes that are not UTF-8 with 400, saying where, instead of storing U+FFFD in their place', async () => {
    const cases: [Buffer, number][] = [
      [Buffer.concat([Buffer.from('{"name":"a'), Buffer.from([0xff, 0xfe]), Buffer.from('b"}')]), 10],
      // Latin-1 é, as a client with the wrong encoding sends it.
      [Buffer.from('{"name":"caf\xe9"}', 'latin1'), 12],
      // An overlong "/", a UTF-16 surrogate encoded in UTF-8, a code point past U+10FFFF, a sequence cut short at the end.
      [Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc0, 0xaf, 0x22, 0x7d]), 6],
      [Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d]), 6],
      [Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xf4, 0x90, 0x80, 0x80, 0x22, 0x7d]), 6],
      [Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xe2, 0x82]), 6],
    ];
    for (const [raw, at] of cases) {
      const r = await send(raw);
      assert.equal(r.status, 400, raw.toString('hex'));
      assert.equal(r.body.message, `Request body is not valid UTF-8 (at byte ${at}); JSON must be sent as UTF-8`);
    }
    assert.deepEqual((await send(Buffer.from('{"name":"café €"}'))).body.value, { name: 'café €' }, 'well-formed UTF-8 is read as before');
  });

  it('finds the first bad UTF-8 sequence wherever Node finds the bytes not UTF-8', () => {
    // A fixed-seed walk over short byte strings mixing random bytes with pieces of real sequences.
    let seed = 42;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
    const pieces = [0x41, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80, 0xed, 0xa0, 0xe0, 0xf4, 0x90, 0xc0];
    for (let t = 0; t < 50_000; t++) {
      const b = Buffer.alloc(1 + Math.floor(rand() * 8));
      for (let i = 0; i < b.length; i++) b[i] = rand() < 0.4 ? Math.floor(rand() * 256) : pieces[Math.floor(rand() * pieces.length)]!;
      const at = firstBadUtf8(b);
      assert.equal(at === -1, isUtf8(b), b.toString('hex'));
      if (at >= 0) assert.ok(isUtf8(b.subarray(0, at)), `everything before byte ${at} of ${b.toString('hex')} is UTF-8`);
    }
  });

  it('accepts a surrogate pair (an emoji), escaped or sent as UTF-8', async () => {
    assert.deepEqual((await send('{"a":"\\ud83d\\ude00"}')).body.value, { a: '\u{1F600}' });
    assert.deepEqual((await send('{"a":"\u{1F600}"}')).body.value, { a: '\u{1F600}' });
  });

  it(`accepts ${MAX_JSON_DEPTH} levels and refuses ${MAX_JSON_DEPTH + 1}`, async () => {
    const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);
    assert.equal((await send(nested(MAX_JSON_DEPTH))).status, 200);
    const r = await send(nested(MAX_JSON_DEPTH + 1));
    assert.equal(r.status, 422);
    assert.equal(r.body.message, `Request body nests ${MAX_JSON_DEPTH + 1} levels deep; at most ${MAX_JSON_DEPTH} are accepted`);
  });

  it('counts depth by structure, not by brackets inside strings', async () => {
    const text = '['.repeat(200);
    const r = await send(JSON.stringify({ a: text, b: [{ c: [] }] }));
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.value, { a: text, b: [{ c: [] }] });
  });

  it('refuses a chunked body (no Content-Length) past the limit with 413, answering before the client stops sending', async () => {
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c)).on('end', () => resolve({ status: res.statusCode!, text }));
      });
      req.on('error', reject);
      assert.equal(req.getHeader('content-length'), undefined);
      const piece = '"' + 'x'.repeat(64 * 1024 - 3) + '",';
      req.write('[');
      // Past the 1,000,000-byte limit, and keeps going a while after it.
      for (let i = 0; i < 20; i++) req.write(piece);
      req.end('0]');
    });
    assert.equal(status, 413);
    assert.match(JSON.parse(text).message, /1000000/);
    assert.equal((await send('{"after":1}')).status, 200);
  });

  it('a client that hangs up in the middle of its body leaves the server serving', async () => {
    await new Promise<void>((resolve, reject) => {
      const sock = connect((server.address() as AddressInfo).port, '127.0.0.1', () => {
        sock.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":');
        setTimeout(() => sock.destroy(), 50);
      });
      sock.on('close', () => resolve()).on('error', reject);
    });
    assert.deepEqual((await send('{"after":2}')).body.value, { after: 2 });
  });

  it('reads a body whose stream was paused before the read began', async () => {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-pause': '1' }, body: '{"p":1}', signal: AbortSignal.timeout(5000) });
    assert.deepEqual(await res.json(), { value: { p: 1 } });
  });
});
