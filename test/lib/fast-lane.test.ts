// FastLane on its own: what it does when the code it runs goes wrong, next to a koa app running the same
// code, so the two still answer alike. (test/fast-lane.test.ts holds it to koa on the real routes.)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import Router from '@koa/router';
import { FastLane, type HttpContext, type Middleware } from '../../src/lib/http/context.js';

/** The status each request ended with, as the pipeline saw it (what the real one logs and counts). */
const seen: number[] = [];
/** A pipeline like the real one: sets a header first, runs the route, notes the status. */
const pipeline: Middleware = async (ctx, next) => {
  ctx.set('X-Request-Id', 'r1');
  if (ctx.get('x-fail-pipeline')) throw new Error('the pipeline itself failed');
  await next();
  seen.push(ctx.status);
};
const routes: Record<string, (ctx: HttpContext) => Promise<void>> = {
  '/ok': async (ctx) => {
    ctx.status = 201;
    ctx.body = { ok: true, id: ctx.params.id ?? null };
  },
  '/unserialisable': async (ctx) => {
    ctx.status = 201;
    ctx.body = { n: 1n };
  },
  '/nothing': async (ctx) => {
    ctx.status = 201;
    ctx.body = undefined;
  },
};

async function serve(listener: RequestListener): Promise<{ server: Server; url: string }> {
  const server = createServer(listener);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('FastLane', () => {
  const lane = new FastLane();
  let fast: { server: Server; url: string };
  let koa: { server: Server; url: string };
  before(async () => {
    const app = new Koa();
    app.silent = true;
    const router = new Router();
    for (const [path, run] of Object.entries(routes)) {
      router.post(path, (ctx) => run(ctx));
      lane.add('post', path, path, run);
    }
    router.post('/with/:id/param', (ctx) => routes['/ok']!(ctx));
    lane.add('post', '/with/{id}/param', '/with/:id/param', routes['/ok']!);
    app.use(pipeline);
    app.use(router.routes());
    fast = await serve(lane.listener(pipeline, app.callback()));
    koa = await serve(app.callback());
  });
  after(async () => {
    for (const s of [fast, koa]) await new Promise<void>((r) => s.server.close(() => r()));
  });

  const both = async (path: string, headers: Record<string, string> = {}) => {
    const get = async (url: string) => {
      // A request the lane leaves unanswered fails here instead of hanging the suite.
      const res = await fetch(url + path, { method: 'POST', headers, signal: AbortSignal.timeout(5000) });
      const h = [...res.headers].filter(([k]) => k !== 'date' && k !== 'keep-alive' && k !== 'connection').sort();
      return { status: res.status, headers: h, body: await res.text() };
    };
    const before = lane.served;
    const a = await get(fast.url);
    assert.equal(lane.served, before + 1, 'the fast lane served it');
    const b = await get(koa.url);
    assert.deepEqual(a, b);
    return a;
  };

  it('answers a JSON body, with path parameters', async () => {
    assert.equal((await both('/ok')).body, '{"ok":true,"id":null}');
    assert.equal((await both('/with/abc-1/param')).body, '{"ok":true,"id":"abc-1"}');
  });

  it('a body that cannot be serialised: a bare 500 without the headers set before, and the server serves on', async () => {
    const r = await both('/unserialisable');
    assert.equal(r.status, 500);
    assert.equal(r.body, 'Internal Server Error');
    assert.equal((await both('/ok')).status, 201);
  });

  it('a pipeline that throws: a bare 500', async () => {
    assert.equal((await both('/ok', { 'x-fail-pipeline': '1' })).status, 500);
  });

  it('no body: 204 and nothing else, and the pipeline sees the 204 it logs', async () => {
    seen.length = 0;
    const r = await both('/nothing');
    assert.equal(r.status, 204);
    assert.equal(r.body, '');
    assert.deepEqual(seen, [204, 204]);
  });

  it('serves each method and path once: a second registration is refused', () => {
    assert.throws(() => lane.add('post', '/ok', '/ok', routes['/ok']!), /POST \/ok is already served/);
    assert.throws(() => lane.add('POST', '/with/{id}/param', '/with/:id/param', routes['/ok']!), /already served/);
  });
});
