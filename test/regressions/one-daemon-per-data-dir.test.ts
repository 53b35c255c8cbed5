// Found by the docs audit: nothing stopped a second `opsdb serve` on a DATA_DIR another daemon was using.
// On another port both took writes into one buffer, each with its own group committer and sync engine;
// on the same port the second one, before failing on the port, returned the running daemon's batch in
// flight to pending. The daemon now holds an exclusive lock on DATA_DIR/daemon.lock; a second one exits
// 1 naming the first one's pid, and a daemon killed with SIGKILL leaves no stale lock. Real processes.
import { describe, it } from 'node:test';
import net from 'node:net';
import assert from 'node:assert/strict';
import { edgeDataDir, localClient, spawnEdge } from '../support/edge.js';
import { client } from '../support/http.js';
import { runCli } from '../support/cli.js';

describe('one edge daemon per DATA_DIR', () => {
  it('a second daemon on the same DATA_DIR exits with the first one\'s pid; a killed one leaves no lock', { timeout: 60_000 }, async () => {
    const dataDir = edgeDataDir('one-daemon');
    const token = (await localClient(dataDir, 'http://unused', ['observer'], 'w')).token!;
    const first = await spawnEdge({ DATA_DIR: dataDir });
    try {
      const w = await client(first.url, token).post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
      assert.equal(w.status, 201, w.text);
      await assert.rejects(spawnEdge({ DATA_DIR: dataDir }), (err: Error) => {
        assert.match(err.message, new RegExp(`DATA_DIR .* is in use by another opsdb process \\(pid ${first.pid}\\): one opsdb serve per data directory`));
        assert.match(err.message, /exited with 1/);
        return true;
      });
      // The CLI still works beside the running daemon.
      const stats = await runCli(['buffer', 'stats'], { SITE_TYPE: 'secondary', DATA_DIR: dataDir });
      assert.equal(stats.code, 0, stats.stderr);
      assert.equal(JSON.parse(stats.stdout).accepted_total, 1);
      assert.equal((await client(first.url, token).post('/executed_obs_units/start', { body: { obs_unit_id: 2 } })).status, 201, 'the first one is undisturbed');
    } finally {
      await first.kill('SIGKILL');
    }
    // SIGKILL: the system dropped the lock with the process.
    const next = await spawnEdge({ DATA_DIR: dataDir });
    try {
      assert.equal((await client(next.url).get('/buffer-stats')).body.accepted_total, 2);
    } finally {
      await next.kill('SIGTERM');
    }
  });

  it('a second SIGTERM while stopping does not cut the stop short', { timeout: 90_000 }, async () => {
    // The second signal must land between "stopping" and "stopped"; a stop can be quick enough to miss
    // that on a busy machine, so up to five daemons are tried and at least one must have been hit there.
    for (let attempt = 1; ; attempt++) {
      const edge = await spawnEdge({ DATA_DIR: edgeDataDir('two-sigterms') });
      const msgs = () => edge.lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
      edge.child.kill('SIGTERM');
      while (!msgs().includes('stopping')) await new Promise((r) => setTimeout(r, 1));
      if (!msgs().includes('stopped')) edge.child.kill('SIGTERM');
      const code = await edge.exited;
      // Handled during the stop, it is logged; one that came after the stop was done proves nothing here.
      const inTime = msgs().some((m) => m.startsWith('already stopping'));
      if (!inTime) {
        assert.ok(attempt < 5, 'the stop was over before a second signal could be sent, five times');
        continue;
      }
      assert.equal(code, 0, msgs().join(' | '));
      assert.ok(msgs().includes('stopped'), msgs().join(' | '));
      return;
    }
  });

  it('a client that never finishes its request does not hold a stop up', { timeout: 60_000 }, async () => {
    const edge = await spawnEdge({ DATA_DIR: edgeDataDir('slow-client') });
    // Headers promising a 100-byte body, then 5 bytes, then nothing: kept open until the daemon has exited.
    const socket = net.connect(edge.port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    socket.on('error', () => {});
    socket.write('POST /executed_obs_units/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"obs');
    await new Promise((r) => setTimeout(r, 200));
    try {
      edge.child.kill('SIGTERM');
      // Before, the stop waited for this client for as long as it kept the connection: here, for ever.
      assert.equal(await edge.exited, 0);
      assert.ok(edge.lines.some((l) => (JSON.parse(l) as { msg: string }).msg === 'stopped'));
    } finally {
      socket.destroy();
    }
  });
});
