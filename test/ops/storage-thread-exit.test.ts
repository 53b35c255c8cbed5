// When the edge's storage thread dies, the daemon cannot keep a write, so `opsdb serve` (and the demo)
// must stop with a non-zero exit for systemd to restart it, instead of living on answering 503s. A real
// process, with its storage thread stopped from outside by a preload (test/support/stop-storage-thread.mjs).
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnEdge, edgeDataDir } from '../support/edge.js';
import { until } from '../support/daemon.js';
import { OPSDB_BIN } from '../support/cli.js';
import { freePort } from '../support/ports.js';

const PRELOAD = `--import ${fileURLToPath(new URL('../support/stop-storage-thread.mjs', import.meta.url))}`;

describe('the storage thread dies', { timeout: 120_000 }, () => {
  it('`opsdb serve` logs why and exits 1', async () => {
    const edge = await spawnEdge({ DATA_DIR: edgeDataDir('thread-exit'), NODE_OPTIONS: PRELOAD });
    try {
      assert.equal((await fetch(`${edge.url}/health`)).status, 200);
      edge.child.kill('SIGUSR2');
      const code = await Promise.race([edge.exited, new Promise((r) => setTimeout(() => r('still running after 20 s'), 20_000))]);
      assert.equal(code, 1);
      const fatal = edge.lines.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.level === 60);
      assert.deepEqual(fatal.map((l) => l.msg), ['the storage thread stopped; the edge cannot store writes and must be restarted']);
    } finally {
      await edge.kill('SIGKILL');
    }
  });

  describe('`opsdb demo`', () => {
    const cwd = mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), 'opsdb-demo-exit-'));
    let demo: ChildProcess | null = null;
    after(() => {
      demo?.kill('SIGKILL');
      rmSync(cwd, { recursive: true, force: true });
    });

    it('stops everything and exits 1', async () => {
      const [port, centralPort] = [await freePort(), await freePort()];
      demo = spawn(process.execPath, [OPSDB_BIN, 'demo', '--port', String(port), '--central-port', String(centralPort)], {
        cwd, env: { PATH: process.env.PATH ?? '', NODE_OPTIONS: PRELOAD }, stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      demo.stdout!.on('data', (d) => (out += d));
      demo.stderr!.on('data', (d) => (err += d));
      const exited = new Promise<number | null>((r) => demo!.on('exit', (code) => r(code)));
      await until('the demo to be ready', async () => /export TOKEN=/.test(out), 90_000);
      demo.kill('SIGUSR2');
      const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('still running after 20 s'), 20_000))]);
      assert.equal(code, 1, `${out}\n${err}`);
      assert.match(err, /opsdb demo: stopped: .*exited with code/);
    });
  });
});
