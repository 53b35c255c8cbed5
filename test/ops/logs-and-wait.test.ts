// Logs are one JSON line per request and per sync batch, with no secret in
// them; `opsdb buffer wait-empty` waits for a drain and says when it cannot.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { edgeDataDir, localClient, spawnEdge, type EdgeProcess } from '../support/edge.js';
import { runCli } from '../support/cli.js';
import { freePort } from '../support/ports.js';

describe('logs and opsdb buffer wait-empty, on a real edge process syncing to central', () => {
  let central: TestCentral;
  let edge: EdgeProcess;
  let siteToken: string;
  let dataDir: string;
  let userToken: string;

  before(async () => {
    central = await startTestCentral('logs');
    siteToken = (await central.admin.post('/api/sites/', { body: { name: 'logs' } })).body.token;
    dataDir = edgeDataDir('logs');
    userToken = (await localClient(dataDir, 'http://unused', ['observer'], 'logger')).token!;
    edge = await spawnEdge({ DATA_DIR: dataDir, SITE_NAME: 'logs', CENTRAL_URL: central.url, SITE_TOKEN: siteToken, SYNC_INTERVAL_MS: '100' });
  });
  after(async () => {
    await edge?.kill('SIGTERM');
    await central?.stop();
  });

  it('writes one JSON line per request with its id and duration, and one per sync batch; never a token', async () => {
    const h = { authorization: `Bearer ${userToken}`, 'content-type': 'application/json', 'x-request-id': 'req-abc-1' };
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${edge.url}/executed_obs_units/start`, { method: 'POST', headers: h, body: JSON.stringify({ obs_unit_id: 1 }) });
      assert.equal(r.status, 201);
    }
    await fetch(`${edge.url}/auth/me`, { headers: { authorization: 'Bearer ops_api_token_' + 'A'.repeat(43) } });
    const wait = await runCli(['buffer', 'wait-empty', '--timeout', '20', '--interval', '50'], { SITE_TYPE: 'secondary', DATA_DIR: dataDir });
    assert.equal(wait.code, 0, wait.stdout + wait.stderr);
    assert.match(wait.stdout, /empty: everything accepted has been applied at central/);
    await new Promise((r) => setTimeout(r, 200));

    const lines = edge.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const requests = lines.filter((l) => l.msg === 'request');
    const starts = requests.filter((l) => l.path === '/executed_obs_units/start');
    assert.equal(starts.length, 3);
    for (const l of starts) {
      assert.equal(l.req_id, 'req-abc-1');
      assert.equal(typeof l.duration_ms, 'number');
      assert.equal(l.status, 201);
      assert.equal(l.user, 'logger');
      assert.equal(l.method, 'POST');
    }
    assert.ok(requests.some((l) => l.path === '/auth/me' && l.status === 401));
    const batches = lines.filter((l) => l.msg === 'sync batch');
    assert.ok(batches.length >= 1);
    assert.equal(batches.reduce((n, b) => n + Number(b.count), 0), 3);
    for (const b of batches) for (const k of ['count', 'bytes', 'duration_ms', 'applied']) assert.equal(typeof b[k], 'number', k);
    const all = edge.lines.join('\n');
    assert.ok(!all.includes(siteToken), 'the site token is never logged');
    assert.ok(!all.includes(userToken), 'a user token is never logged');
    assert.ok(!all.includes('A'.repeat(43)), 'not even a wrong one');
    assert.ok(!/ops_api_token_[A-Za-z0-9_-]{20,}/.test(all), 'no token-looking string at all');
  });

  it('wait-empty gives up with exit 1 and says why when central is unreachable', async () => {
    const dead = await freePort();
    const dir = edgeDataDir('wait');
    const token = (await localClient(dir, 'http://unused', ['observer'], 'w')).token!;
    const lone = await spawnEdge({ DATA_DIR: dir, CENTRAL_URL: `http://127.0.0.1:${dead}`, SITE_TOKEN: siteToken, RETRY_BASE_MS: '50', RETRY_MAX_MS: '200' });
    try {
      await fetch(`${lone.url}/executed_obs_units/start`, {
        method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ obs_unit_id: 1 }),
      });
      const r = await runCli(['buffer', 'wait-empty', '--timeout', '1', '--interval', '50'], { SITE_TYPE: 'secondary', DATA_DIR: dir });
      assert.equal(r.code, 1);
      assert.match(r.stdout, /timed out after 1 s: 1 to send/);
      assert.ok(!lone.lines.join('\n').includes(siteToken));
    } finally {
      await lone.kill('SIGTERM');
    }
  });
});
