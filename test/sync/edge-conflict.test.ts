// Found in review: two edge daemons started with the same SITE_NAME and site token (a test machine
// given the site's configuration, a replaced edge left running) both synced as that site, and nobody
// could tell. Nothing was lost or doubled (central keys on transaction ids), but their pipelined
// batches waited on each other's order and each replica received the other's rows. Each edge process
// now sends a random id of its own; central reports two ids taking turns, and both edges say so in
// /buffer-stats (`edge_conflict`), /health (degraded) and their log. A restart, which also changes the
// id, is not a conflict. A real central on PostgreSQL, real edge processes.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { edgeDataDir, localClient, spawnEdge, type EdgeProcess } from '../support/edge.js';
import { client } from '../support/http.js';
import { until } from '../support/daemon.js';
import { randomUUID } from 'node:crypto';
import { noteEdge } from '../../src/central/sync.js';
import { createLogger } from '../../src/lib/logger.js';

describe('two edge daemons with one SITE_NAME', () => {
  let central: TestCentral;
  let siteToken: string;
  const edges: EdgeProcess[] = [];
  before(async () => {
    central = await startTestCentral('edge-conflict');
    siteToken = (await central.admin.post('/api/sites/', { body: { name: 'twin' } })).body.token;
  });
  after(async () => {
    for (const e of edges) await e.kill('SIGTERM');
    await central?.stop();
  });

  const start = async (dataDir: string) => {
    const e = await spawnEdge({ DATA_DIR: dataDir, SITE_NAME: 'twin', CENTRAL_URL: central.url, SITE_TOKEN: siteToken, SYNC_INTERVAL_MS: '50' });
    edges.push(e);
    return e;
  };
  const logs = (e: EdgeProcess) => e.lines.map((l) => JSON.parse(l) as { msg: string; level: number; [k: string]: unknown });
  const stats = async (e: EdgeProcess) => (await client(e.url).get('/buffer-stats')).body;
  const site = async () => ((await central.admin.get('/api/sites/')).body as { name: string }[]).find((s) => s.name === 'twin') as Record<string, unknown>;

  it('a restart of one edge is not a conflict', async () => {
    const dir = edgeDataDir('twin-restart');
    const first = await start(dir);
    await until('central to hear the first edge', async () => (await site()).edge_id !== null);
    const firstId = (await site()).edge_id;
    await first.kill('SIGTERM');
    const again = await start(dir);
    await until('central to hear the restarted edge', async () => (await site()).edge_id !== firstId);
    // Several rounds of sync from the restarted edge alone.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await stats(again)).edge_conflict, null);
    assert.equal((await client(again.url).get('/health')).body.status, 'healthy');
    assert.equal((await site()).edge_conflict, false);
    await again.kill('SIGTERM');
  });

  it('both edges say so, central too, and the report clears once one is stopped', async () => {
    const dirA = edgeDataDir('twin-a');
    const dirB = edgeDataDir('twin-b');
    const tokenA = (await localClient(dirA, 'http://unused', ['observer'], 'a')).token!;
    const a = await start(dirA);
    const b = await start(dirB);

    const conflictA = await until('edge A to report the conflict', async () => (await stats(a)).edge_conflict, 15_000);
    const conflictB = await until('edge B to report the conflict', async () => (await stats(b)).edge_conflict, 15_000);
    // Each names the other.
    assert.match(conflictA.other_edge_id, /^[0-9a-f-]{36}$/);
    assert.notEqual(conflictA.other_edge_id, conflictB.other_edge_id);
    const health = (await client(a.url).get('/health')).body;
    assert.equal(health.status, 'degraded');
    assert.equal(health.background_processor, 'running', 'syncing goes on');
    const logged = logs(a).filter((l) => l.msg.startsWith('another edge daemon is syncing as site "twin" too'));
    assert.equal(logged.length, 1, 'logged once, not at every sync round');
    assert.equal(logged[0]!.level, 50);
    assert.equal(logged[0]!.other_edge_id, conflictA.other_edge_id);
    const reg = await site();
    assert.equal(reg.edge_conflict, true);
    assert.ok(reg.edge_conflict_at);

    // Writes still reach central from both, exactly once.
    const w = await client(a.url, tokenA).post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    assert.equal(w.status, 201, w.text);
    await until('the write to reach central', async () =>
      (await central.db.query('SELECT 1 FROM applied_transaction WHERE transaction_id = $1', [w.body.transaction_id])).rowCount === 1);

    // B stops; once the last time the two were seen taking turns is older than the window, A is told
    // no more (the window is 5 minutes: its passing is made here by moving that time back).
    await b.kill('SIGTERM');
    // A request B sent just before it stopped may still be on its way through central.
    await new Promise((r) => setTimeout(r, 1000));
    await central.db.query(`UPDATE site SET edge_conflict_at = now() - interval '1 hour' WHERE name = 'twin'`);
    await until('edge A to clear the conflict', async () => (await stats(a)).edge_conflict === null, 10_000);
    assert.equal((await client(a.url).get('/health')).body.status, 'healthy');
    assert.equal((await site()).edge_conflict, false);
    assert.ok(logs(a).some((l) => l.msg === 'central no longer hears another edge as site "twin"'));
  });

  it('central tells a restart from two or three daemons taking turns, in any order', async () => {
    for (const name of ['rot-restart', 'rot-two', 'rot-three']) await central.admin.post('/api/sites/', { body: { name } });
    const log = createLogger('silent');
    const a: string = randomUUID(), b: string = randomUUID(), c: string = randomUUID();
    const run = async (site: string, ids: string[]) => {
      const out: (string | null)[] = [];
      for (const id of ids) out.push(await noteEdge(central.db, site, id, log));
      return out;
    };
    // A restart: the old process never speaks again.
    assert.deepEqual(await run('rot-restart', [a, a, a, b, b, b]), [null, null, null, null, null, null]);
    // Two taking turns: from the first return on, each is told of the other.
    assert.deepEqual(await run('rot-two', [a, b, a, b]), [null, null, b, a]);
    // Three in strict rotation: a returns after b and c.
    const three = await run('rot-three', [a, b, c, a, b, c]);
    assert.deepEqual(three.slice(0, 3), [null, null, null]);
    for (const other of three.slice(3)) assert.ok(other !== null && [a, b, c].includes(other));
  });

  it('a late request of a restarted edge\'s old process is not a conflict; a second daemon still is', async () => {
    await central.admin.post('/api/sites/', { body: { name: 'rot-late' } });
    const log = createLogger('silent');
    // Edge ids are UUIDv7s: their first 48 bits are the process's start time.
    const startedAt = (ms: number) => { const h = ms.toString(16).padStart(12, '0'); return `${h.slice(0, 8)}-${h.slice(8)}-7${randomUUID().slice(15)}`; };
    const t = Date.now();
    const old = startedAt(t - 60_000);
    const restarted = startedAt(t - 1_000);
    assert.equal(await noteEdge(central.db, 'rot-late', old, log, t - 2_000), null);
    assert.equal(await noteEdge(central.db, 'rot-late', restarted, log, t - 500), null);
    // The old process's last request, sent before the new one started, arrives late: nothing to report,
    // and the restarted process stays the site's edge.
    assert.equal(await noteEdge(central.db, 'rot-late', old, log, t - 1_500), null);
    assert.equal(await noteEdge(central.db, 'rot-late', restarted, log, t - 400), null);
    assert.equal((await central.db.query(`SELECT edge_id FROM site WHERE name = 'rot-late'`)).rows[0].edge_id, restarted);
    // But one sent after the new one started is a second daemon.
    assert.equal(await noteEdge(central.db, 'rot-late', old, log, t - 300), restarted);
  });
});
