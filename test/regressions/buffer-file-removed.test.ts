// Found in review: buffer.db removed (or replaced) under a running edge. SQLite goes on committing to
// the open, deleted file, so every later write was answered 201 and readable, /health said healthy,
// and the next restart opened a fresh, empty buffer.db: every one of those writes was gone.
// Now the buffer checks before each append that the file at its path is still the one it opened:
// new writes get 503 "Nothing was stored", /health is degraded and says why, one error is logged, and
// what the open file holds is still sent to central (a restart would lose it). local.db removed:
// writes go on, /health is degraded, one error is logged.
// Real edge processes, a real central on PostgreSQL behind a proxy that is cut, then restored.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startTestCentral } from '../support/central.js';
import { edgeDataDir, localClient, spawnEdge, type EdgeProcess } from '../support/edge.js';
import { until } from '../support/daemon.js';
import { FaultProxy } from '../support/fault-proxy.js';

const start = (url: string, token: string) =>
  fetch(`${url}/executed_obs_units/start`, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ obs_unit_id: 1 }),
  }).then(async (r) => ({ status: r.status, body: (await r.json()) as { transaction_id?: string; error?: { message: string } } }));
const get = async (url: string) => (await fetch(url)).json() as Promise<Record<string, unknown>>;
const errors = (edge: EdgeProcess, what: RegExp) => edge.lines.filter((l) => /"level":50/.test(l) && what.test(l));

describe('a database file removed under a running edge', () => {
  const stops: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
  });

  for (const how of ['removed', 'replaced'] as const) {
    it(`buffer.db ${how}: new writes are refused, and what it held still reaches central`, { timeout: 90_000 }, async () => {
      const central = await startTestCentral(`file-${how}`, { LOG_LEVEL: 'silent' });
      stops.push(() => central.stop());
      const site = `file${how}`;
      const token = (await central.admin.post('/api/sites/', { body: { name: site } })).body.token as string;
      const proxy = await FaultProxy.start(Number(new URL(central.url).port), 'refuse');
      stops.push(() => proxy.close());
      const dataDir = edgeDataDir(`file-${how}`);
      const admin = await localClient(dataDir, 'http://unused', ['admin'], 'adm');
      const edge = await spawnEdge({
        DATA_DIR: dataDir, SITE_NAME: site, CENTRAL_URL: proxy.url, SITE_TOKEN: token,
        SYNC_INTERVAL_MS: '50', RETRY_BASE_MS: '20', RETRY_MAX_MS: '200',
      });
      stops.push(() => edge.kill());

      const held: string[] = [];
      for (let i = 0; i < 3; i++) {
        const w = await start(edge.url, admin.token!);
        assert.equal(w.status, 201);
        held.push(w.body.transaction_id!);
      }
      const path = join(dataDir, 'buffer.db');
      if (how === 'removed') rmSync(path);
      else {
        copyFileSync(path, `${path}.copy`);
        renameSync(`${path}.copy`, path);
      }

      const refused = await start(edge.url, admin.token!);
      assert.equal(refused.status, 503, JSON.stringify(refused.body));
      assert.match(refused.body.error!.message, new RegExp(`^Nothing was stored: ${path.replace(/[.]/g, '\\.')} was ${how === 'removed' ? 'removed' : 'replaced by another file'} while the edge ran`));
      const health = await get(`${edge.url}/health`);
      assert.equal(health.status, 'degraded');
      assert.match(String(health.database), /^connected \(refusing writes: .*buffer\.db was/);
      await until('one error logged', async () => errors(edge, /the buffer file was removed or replaced/).length === 1, 5_000);
      assert.equal((await get(`${edge.url}/buffer-stats`)).accepted_total, 3, 'the refused write was not stored');

      // The link comes back: what the open file holds goes to central, exactly once.
      await proxy.setMode('pass');
      await until('the three at central', async () =>
        (await central.db.query('SELECT count(*)::int AS n FROM executed_obs_unit WHERE site = $1', [site])).rows[0].n === 3, 30_000);
      for (const id of held) {
        assert.equal((await central.db.query('SELECT count(*)::int AS n FROM applied_transaction WHERE transaction_id = $1', [id])).rows[0].n, 1);
      }
      assert.equal((await start(edge.url, admin.token!)).status, 503, 'still refused: only a restart opens a buffer again');
      assert.equal(errors(edge, /the buffer file was removed or replaced/).length, 1, 'logged once');
    });
  }

  it('local.db removed: writes go on, /health is degraded and says why', { timeout: 60_000 }, async () => {
    const dataDir = edgeDataDir('file-local');
    const admin = await localClient(dataDir, 'http://unused', ['admin'], 'adm');
    const edge = await spawnEdge({ DATA_DIR: dataDir });
    stops.push(() => edge.kill());
    assert.equal((await get(`${edge.url}/health`)).status, 'healthy');
    rmSync(join(dataDir, 'local.db'));
    const w = await start(edge.url, admin.token!);
    assert.equal(w.status, 201, JSON.stringify(w.body));
    const health = await get(`${edge.url}/health`);
    assert.equal(health.status, 'degraded');
    assert.match(String(health.database), /local\.db was removed while the edge ran: a restart would lose local accounts/);
    await until('one error logged', async () => errors(edge, /the local store file was removed or replaced/).length === 1, 5_000);
  });
});
