// Type=notify and the watchdog, with a test-owned NOTIFY_SOCKET; the unit files
// checked with systemd-analyze verify.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { edgeDataDir, spawnEdge } from '../support/edge.js';
import { OPSDB_BIN } from '../support/cli.js';

const LISTENER = fileURLToPath(new URL('../support/notify-listener.py', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function listen(path: string): Promise<{ messages: string[]; child: ChildProcess }> {
  const child = spawn('python3', [LISTENER, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const messages: string[] = [];
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line === 'listening') resolve({ messages, child });
      else messages.push(line);
    });
  });
}

async function until(what: string, fn: () => boolean, ms = 10_000) {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) assert.fail(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('systemd integration', () => {
  const dir = mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), 'opsdb-notify-'));
  const children: ChildProcess[] = [];
  after(() => {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('the edge says READY=1 with its backlog once it accepts writes, pings the watchdog, and says STOPPING=1 on SIGTERM', async () => {
    const sock = join(dir, 'notify.sock');
    const l = await listen(sock);
    children.push(l.child);
    const edge = await spawnEdge({ DATA_DIR: edgeDataDir('notify'), NOTIFY_SOCKET: sock, WATCHDOG_USEC: '300000' });
    children.push(edge.child);
    await until('READY=1', () => l.messages.some((m) => m.includes('READY=1')));
    const ready = l.messages.find((m) => m.includes('READY=1'))!;
    assert.match(ready, new RegExp(`MAINPID=${edge.child.pid}`));
    assert.match(ready, /STATUS=0 pending, 0 in flight, 0 blocked, 0 failed; sync disabled/);
    // Ready means it takes writes: an HTTP request answers at once.
    assert.equal((await fetch(`${edge.url}/health`)).status, 200);
    await until('two watchdog pings', () => l.messages.filter((m) => m.includes('WATCHDOG=1')).length >= 2, 5000);
    const code = await edge.kill('SIGTERM');
    assert.equal(code, 0, 'a clean exit on SIGTERM');
    await until('STOPPING=1', () => l.messages.some((m) => m.includes('STOPPING=1')));
    const order = ['READY=1', 'WATCHDOG=1', 'STOPPING=1'].map((k) => l.messages.findIndex((m) => m.includes(k)));
    assert.deepEqual([...order].sort((a, b) => a - b), order, `in order: ${l.messages.join(' / ')}`);
  });

  it('sends nothing when NOTIFY_SOCKET is not set (not under systemd)', async () => {
    const edge = await spawnEdge({ DATA_DIR: edgeDataDir('no-notify') });
    children.push(edge.child);
    assert.equal((await fetch(`${edge.url}/health`)).status, 200);
    assert.equal(await edge.kill('SIGTERM'), 0);
  });

  for (const unit of ['opsdb-edge.service', 'opsdb-central.service']) {
    it(`${unit} is a Type=notify unit with watchdog, restart, state directory and hardening, and systemd-analyze verify accepts it`, () => {
      const text = readFileSync(join(ROOT, 'systemd', unit), 'utf8');
      for (const line of ['Type=notify', 'NotifyAccess=all', 'Restart=on-failure', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes']) {
        assert.ok(text.split('\n').includes(line), `${unit} has ${line}`);
      }
      assert.match(text, /^WatchdogSec=\d+/m);
      assert.match(text, /^StateDirectory=\S+/m);
      assert.match(text, /^User=opsdb$/m);
      const which = spawnSync('which', ['systemd-analyze']);
      assert.equal(which.status, 0, 'systemd-analyze is installed (Debian: systemd); the harness runs on such machines');
      // Point ExecStart at this checkout, as an install into /opt/opsdb would.
      const copy = join(dir, unit);
      writeFileSync(copy, text.replace('/opt/opsdb/dist/cli/main.js', OPSDB_BIN));
      const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' });
      const complaints = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.trim() && !/User=opsdb|opsdb.*does not exist|Unknown user/i.test(l));
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(complaints, []);
    });
  }
});
