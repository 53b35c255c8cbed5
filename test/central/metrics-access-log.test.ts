// GET /metrics is logged like every other request: its access line names the caller (`user`), also when
// the caller's role is refused. It used to have no `user`: the principal was not kept on the request.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { client } from '../support/http.js';
import { startCentral, type RunningCentral } from '../../src/central/server.js';
import { createLogger } from '../../src/lib/logger.js';
import { loadConfig } from '../../src/lib/config.js';

describe('/metrics access lines', () => {
  let c: TestCentral;
  let logged: RunningCentral;
  const lines: Record<string, unknown>[] = [];
  before(async () => {
    c = await startTestCentral('metrics-log');
    // A second central on the same database, logging at info into `lines`.
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const l of String(chunk).split('\n')) if (l.trim()) lines.push(JSON.parse(l));
        done();
      },
    });
    const config = loadConfig({ env: {}, overrides: { SITE_TYPE: 'main', SITE_NAME: 'main', DATABASE_URL: c.databaseUrl, PORT: 0, LOG_LEVEL: 'info' } });
    logged = await startCentral(config, createLogger('info', sink));
  });
  after(async () => {
    await logged?.stop();
    await c?.stop();
  });

  const accessLine = async (path: string, status: number) => {
    for (let i = 0; i < 50; i++) {
      const line = lines.find((l) => l.msg === 'request' && l.path === path && l.status === status);
      if (line) return line;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.fail(`no access line for ${path} ${status}: ${JSON.stringify(lines)}`);
  };

  it('names the user, allowed or refused, as /auth/me does', async () => {
    const viewer = await c.as(['viewer'], 'metrics-reader');
    const site = (await c.admin.post('/api/sites/', { body: { name: 'metrics-log' } })).body.token as string;
    assert.equal((await client(logged.url, viewer.token).get('/metrics')).status, 200);
    assert.equal((await client(logged.url, site).get('/metrics')).status, 403);
    assert.equal((await client(logged.url, viewer.token).get('/auth/me')).status, 200);
    assert.equal((await client(logged.url).get('/metrics')).status, 401);

    const me = await accessLine('/auth/me', 200);
    assert.equal(me.user, `metrics-reader-${process.pid}`);
    assert.equal((await accessLine('/metrics', 200)).user, `metrics-reader-${process.pid}`);
    assert.equal((await accessLine('/metrics', 403)).user, 'site-metrics-log', 'refused: still who asked');
    assert.equal((await accessLine('/metrics', 401)).user, undefined, 'no token: no user');
  });
});
