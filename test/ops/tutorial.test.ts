// The seed tutorial ("Making your first API call") as a new user would walk
// it: `opsdb demo` started as a process, every call of the guide against the
// edge on port 8000, and the observation seen arriving at central.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OPSDB_BIN } from '../support/cli.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = async (r: Promise<Response> | Response): Promise<any> => (await r).json();

const EDGE = 'http://localhost:8000';
const CENTRAL = 'http://localhost:8001';

describe('the first-API-call tutorial against `opsdb demo`', { timeout: 180_000 }, () => {
  const cwd = mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), 'opsdb-tutorial-'));
  let demo: ChildProcess | null = null;
  let out = '';
  after(() => {
    demo?.kill('SIGKILL');
    rmSync(cwd, { recursive: true, force: true });
  });

  it('walks every call of the guide and sees the observation reach central', async () => {
    demo = spawn(process.execPath, [OPSDB_BIN, 'demo'], { cwd, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    demo.stdout!.on('data', (d) => (out += d));
    demo.stderr!.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => demo!.on('exit', (code) => r(code)));
    const deadline = Date.now() + 120_000;
    while (!/export TOKEN=/.test(out)) {
      assert.ok(Date.now() < deadline, `demo did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(out, /http:\/\/localhost:8000/);
    assert.match(out, /curl /, 'prints curl lines to try');

    const health = await json(fetch(`${EDGE}/health`));
    assert.equal(health.status, 'healthy');
    assert.equal(health.database, 'connected');
    assert.deepEqual(Object.keys(health.transaction_buffer).sort(), ['failed', 'size']);
    assert.equal(health.background_processor, 'running');

    const demoToken = await json(fetch(`${EDGE}/api/demo/create-demo-token`, { method: 'POST' }));
    assert.equal(demoToken.role, 'admin');
    assert.equal(demoToken.user_id, 1);
    const TOKEN = demoToken.token as string;
    const h = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

    const me = await json(fetch(`${EDGE}/auth/me`, { headers: h }));
    assert.deepEqual(Object.keys(me).sort(), ['created_at', 'email', 'full_name', 'id', 'is_active', 'roles', 'username']);
    assert.equal(me.id, 1);
    assert.equal(me.username, 'admin');
    assert.deepEqual(me.roles, ['admin']);

    const instruments = await json(fetch(`${EDGE}/instruments/`, { headers: h }));
    assert.equal(instruments[0].id, 1);
    assert.deepEqual(Object.keys(instruments[0]).sort(), ['description', 'id', 'is_active', 'name']);

    const overview = await json(fetch(`${EDGE}/api/transfer/overview`, { headers: h }));
    assert.deepEqual(Object.keys(overview).sort(), ['active_transfers', 'completed_transfers', 'failed_transfers', 'pending_transfers', 'total_data_size_gb', 'total_packages']);

    const prefs = await fetch(`${EDGE}/api/demo/update-user-preferences`, {
      method: 'POST', headers: h, body: JSON.stringify({ user_id: 1, preferences: { theme: 'dark', language: 'en', notifications: true } }),
    });
    assert.equal(prefs.status, 200);
    const p = await json(prefs);
    assert.equal(p.status, 'success');
    assert.equal(p.message, 'User preferences updated');
    assert.ok(p.transaction_id);

    const obs = await fetch(`${EDGE}/api/demo/create-observation`, {
      method: 'POST', headers: h,
      body: JSON.stringify({
        obs_data: {
          obs_unit_id: 1, start_time: '2025-01-01T00:00:00Z', end_time: '2025-01-01T01:00:00Z', mean_pwv: 2.5, mean_elevation: 45.0,
          package_name: 'test_package_001', instrument_module_configuration_id: 1,
        },
        raw_files: [{ name: 'test_file_001.fits', path: '/data/test_file_001.fits', size: 1024000, checksum: 'abc123', file_type: 'fits' }],
      }),
    });
    assert.equal(obs.status, 201);
    const o = await json(obs);
    assert.equal(o.status, 'buffered');

    const stats = await json(fetch(`${EDGE}/buffer-stats`));
    for (const k of ['pending_transactions', 'failed_transactions', 'processing_rate']) assert.equal(typeof stats[k], 'number', k);

    for (const page of ['/docs', '/redoc']) {
      const r = await fetch(`${EDGE}${page}`);
      assert.equal(r.status, 200, page);
      assert.match(await r.text(), /<script src="\//);
    }

    // And then it arrives at central. (A demo token minted at the edge is the edge's own;
    // the token `opsdb demo` printed was made at central and works at both.)
    const printed = /export TOKEN=(\S+)/.exec(out)![1]!;
    const hc = { authorization: `Bearer ${printed}` };
    let atCentral: Response | null = null;
    const until = Date.now() + 30_000;
    while (Date.now() < until) {
      atCentral = await fetch(`${CENTRAL}/executed_obs_units/${o.executed_obs_unit_id}`, { headers: hc });
      if (atCentral.status === 200) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(atCentral?.status, 200, 'the observation reached central');
    const row = await json(atCentral!);
    assert.equal(row.raw_data_packages[0].name, 'test_package_001');
    assert.equal(row.raw_data_files.length, 1);
    // Central commits before the edge has its answer: for that moment the edge still says in_flight.
    let edgeView = await json(fetch(`${EDGE}/executed_obs_units/${o.executed_obs_unit_id}`, { headers: h }));
    for (const end = Date.now() + 10_000; edgeView.sync_status !== 'synced' && Date.now() < end;) {
      assert.ok(['in_flight', 'pending'].includes(edgeView.sync_status), `on its way until the edge has central's answer (${edgeView.sync_status})`);
      await new Promise((r) => setTimeout(r, 100));
      edgeView = await json(fetch(`${EDGE}/executed_obs_units/${o.executed_obs_unit_id}`, { headers: h }));
    }
    assert.equal(edgeView.sync_status, 'synced');

    // A second demo beside it: on the same data directory it stops at once; on another one, with the ports
    // taken, it says which option moves them and exits (it used to hang with its database open).
    const second = (args: string[]) => new Promise<{ code: number | null; text: string }>((resolve) => {
      const p = spawn(process.execPath, [OPSDB_BIN, 'demo', ...args], { cwd, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      p.stdout!.on('data', (d) => (text += d));
      p.stderr!.on('data', (d) => (text += d));
      const kill = setTimeout(() => p.kill('SIGKILL'), 60_000);
      p.on('exit', (code) => {
        clearTimeout(kill);
        resolve({ code, text });
      });
    });
    const sameDir = await second([]);
    assert.equal(sameDir.code, 1, sameDir.text);
    assert.match(sameDir.text, new RegExp(`data directory .* is in use by another opsdb process \\(pid ${demo.pid}\\): one opsdb demo per data directory`));
    const samePorts = await second(['--data-dir', join(cwd, 'other')]);
    assert.equal(samePorts.code, 1, samePorts.text);
    assert.match(samePorts.text, /EADDRINUSE.*is another demo \(npm start\) running\? Stop it, or pick another port with --central-port/);

    demo.kill('SIGINT');
    assert.equal(await exited, 0, `Ctrl-C stops cleanly:\n${out.slice(-2000)}`);
    demo = null;
  });
});
