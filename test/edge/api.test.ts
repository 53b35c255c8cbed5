import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestEdge, type TestEdge } from '../support/edge.js';
import type { Client } from '../support/http.js';

const FILE = { name: 'f.fits', path: '/data/f.fits', size: 1024, checksum: 'abc', file_type: 'fits' };
const OBS = {
  obs_data: {
    obs_unit_id: 1, start_time: '2025-01-01T00:00:00Z', mean_pwv: 2.5, mean_elevation: 45,
    package_name: 'pkg-edge', instrument_module_configuration_id: 1,
  },
  raw_files: [FILE, { ...FILE, name: 'g.fits' }, { ...FILE, name: 'h.fits' }],
};

describe('edge HTTP API (SITE_TYPE=secondary, SQLite buffer)', () => {
  let e: TestEdge;
  let observer: Client;
  before(async () => {
    e = await startTestEdge('api');
    observer = await e.as(['observer']);
  });
  after(() => e.stop());

  it('GET /health describes the edge', async () => {
    const r = await e.anonymous.get('/health');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.site, { name: 'observatory', type: 'secondary' });
    assert.equal(r.body.redis, 'not_used');
    assert.equal(r.body.background_processor, 'disabled');
  });

  it('a write is buffered, readable at once with sync_status pending, and its update shows at once', async () => {
    const start = await observer.post('/executed_obs_units/start', { body: { obs_unit_id: 2, start_time: '2025-05-01T00:00:00Z' } });
    assert.equal(start.status, 201);
    assert.equal(start.body.status, 'buffered');
    const id = start.body.id;
    const got = await observer.get(`/executed_obs_units/${id}`);
    assert.equal(got.status, 200);
    assert.equal(got.body.sync_status, 'pending');
    assert.equal(got.body.status, 'running');
    const fin = await observer.put(`/executed_obs_units/${id}/finish`, { body: { status: 'success', end_time: '2025-05-01T01:00:00Z' } });
    assert.equal(fin.status, 202);
    assert.equal(fin.body.status, 'buffered');
    const after = await observer.get(`/executed_obs_units/${id}`);
    assert.equal(after.body.status, 'success');
    assert.equal(after.body.end_time, '2025-05-01T01:00:00.000Z');
    const listed = await observer.get('/executed_obs_units/?obs_unit_id=2');
    assert.equal(listed.body.length, 1);
    assert.equal(listed.body[0].sync_status, 'pending');
    const tx = await observer.get(`/api/transactions/${fin.body.transaction_id}`);
    assert.equal(tx.body.state, 'pending');
    assert.equal(tx.body.depends_on.length, 1, 'the finish depends on the unsynced start');
  });

  it('create-observation buffers one transaction with edge-made ids that can be used at once', async () => {
    const r = await observer.post('/api/demo/create-observation', { body: OBS });
    assert.equal(r.status, 201);
    assert.equal(r.body.status, 'buffered');
    assert.equal(r.body.raw_data_file_ids.length, 3);
    const pkg = await observer.get(`/raw_data_package/${r.body.raw_data_package_id}`);
    assert.equal(pkg.body.raw_data_files.length, 3);
    assert.equal(pkg.body.sync_status, 'pending');
    const more = await observer.post('/raw_data_files/bulk', {
      body: { executed_obs_unit_id: r.body.executed_obs_unit_id, raw_data_package_id: r.body.raw_data_package_id, files: [FILE] },
    });
    assert.equal(more.status, 201);
    const fin = await observer.put(`/raw_data_package/${r.body.raw_data_package_id}/finalize`, { body: { size: 3072, checksum: 'x' } });
    assert.equal(fin.status, 202);
    const detail = await observer.get(`/executed_obs_units/${r.body.executed_obs_unit_id}`);
    assert.equal(detail.body.raw_data_files.length, 4);
    assert.equal(detail.body.raw_data_packages[0].state, 'finalized');
  });

  it('pages a merged list with a cursor, newest first, each row once', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await observer.post('/executed_obs_units/start', { body: { obs_unit_id: 4, start_time: `2024-01-0${i + 1}T00:00:00Z` } })).body.id);
    }
    const p1 = await observer.get('/executed_obs_units/?obs_unit_id=4&limit=2');
    const cur = p1.headers.get('x-next-cursor');
    assert.ok(cur);
    const p2 = await observer.get(`/executed_obs_units/?obs_unit_id=4&limit=10&cursor=${cur}`);
    const seen = [...p1.body, ...p2.body].map((o: { id: string }) => o.id);
    assert.deepEqual(seen, [...ids].reverse());
  });

  it('refuses references the edge knows are wrong, before buffering anything', async () => {
    const before = (await e.anonymous.get('/buffer-stats')).body.accepted_total;
    const bad = await observer.post('/executed_obs_units/start', { body: { obs_unit_id: 99 } });
    assert.equal(bad.status, 422);
    assert.equal(bad.body.error.code, 'reference_not_found');
    const noObs = await observer.post('/raw_data_files/', { body: { ...FILE, executed_obs_unit_id: '00000000-0000-4000-8000-000000000000' } });
    assert.equal(noObs.status, 422);
    const noFinish = await observer.put('/executed_obs_units/00000000-0000-4000-8000-000000000000/finish', { body: { status: 'success' } });
    assert.equal(noFinish.status, 404);
    assert.equal((await e.anonymous.get('/buffer-stats')).body.accepted_total, before);
  });

  it('serves reference data from its replica, filtered and limited like central', async () => {
    const units = await observer.get('/obs_units/?observing_program_id=1&limit=2');
    assert.equal(units.status, 200, units.text);
    assert.deepEqual(units.body.map((u: { id: number }) => u.id), [1, 2]);
    assert.equal((await observer.get('/obs_units/')).body.length, 5);
    assert.equal((await observer.get('/observing_programs/')).body[0].id, 1);
    const inst = await observer.get('/instruments/1');
    assert.equal(inst.body.modules[0].configurations[0].id, 1);
  });

  it('an edge-made token (negative id) can be revoked over HTTP, at once', async () => {
    const made = await observer.post('/api/tokens/', { body: { name: 'temporary' } });
    assert.equal(made.status, 201);
    assert.ok(made.body.id < 0, 'edge-made ids are negative');
    const temp = (await import('../support/http.js')).client(e.url, made.body.token);
    assert.equal((await temp.get('/auth/me')).status, 200);
    assert.equal((await observer.del(`/api/tokens/${made.body.id}`)).status, 200);
    assert.equal((await temp.get('/auth/me')).status, 401);
    assert.equal((await observer.del('/api/tokens/0')).status, 422);
  });

  it('an account made at this edge is told plainly that it has no preferences at central', async () => {
    const me = (await observer.get('/auth/me')).body as { id: number };
    assert.ok(me.id < 0, `an edge-made account has a negative id (${me.id})`);
    const before = (await e.running.buffer.stats()).accepted_total;
    const r = await observer.post('/api/demo/update-user-preferences', { body: { user_id: me.id, preferences: { theme: 'dark' } } });
    assert.equal(r.status, 422, r.text);
    assert.equal(r.body.error.message, 'Accounts made at this edge have no preferences at central');
    assert.equal((await e.running.buffer.stats()).accepted_total, before, 'nothing buffered');
  });

  it('/buffer-stats has every field of the contract and keeps the ledger', async () => {
    const r = await e.anonymous.get('/buffer-stats');
    assert.equal(r.status, 200);
    for (const k of [
      'pending_transactions', 'failed_transactions', 'processing_rate', 'in_flight_transactions', 'blocked_transactions',
      'synced_awaiting_replica', 'oldest_pending_age_seconds', 'pending_bytes', 'buffer_max_bytes', 'last_sync_at', 'last_error',
      'consecutive_failures', 'central_reachable', 'backend', 'accepted_total', 'applied_total', 'discarded_total',
    ]) assert.ok(k in r.body, `has ${k}`);
    const s = r.body;
    assert.equal(s.backend, 'sqlite');
    assert.ok(s.pending_transactions > 0);
    assert.ok(s.oldest_pending_age_seconds > 0);
    assert.equal(s.accepted_total, s.applied_total + s.pending_transactions + s.in_flight_transactions + s.blocked_transactions + s.failed_transactions + s.discarded_total);
  });

  it('dead-letter endpoints: list, retry (with the blocked chain), discard with audit; admin only', async () => {
    const parent = (await observer.post('/executed_obs_units/start', { body: { obs_unit_id: 5 } })).body;
    const child = (await observer.put(`/executed_obs_units/${parent.id}/finish`, { body: { status: 'success' } })).body;
    const { buffer } = e.running;
    // Play central: reject the parent as the sync engine would record it.
    let claimed = await buffer.claim(1000, 1e9);
    await buffer.settle(claimed.map((t) => (t.transaction_id === parent.transaction_id
      ? { seq: t.seq, outcome: 'rejected' as const, error: { code: 'validation_error', message: 'central said no', at: new Date().toISOString() } }
      : { seq: t.seq, outcome: 'retry' as const, error: { code: 'network', message: 'x', at: new Date().toISOString() } })));
    assert.equal((await observer.get('/api/buffer/failed')).status, 403);
    const failed = await e.admin.get('/api/buffer/failed');
    assert.equal(failed.status, 200);
    assert.deepEqual(failed.body.map((t: { transaction_id: string }) => t.transaction_id), [parent.transaction_id]);
    assert.equal(failed.body[0].last_error.message, 'central said no');
    const blocked = await e.admin.get('/api/buffer/failed?state=blocked');
    assert.deepEqual(blocked.body.map((t: { transaction_id: string }) => t.transaction_id), [child.transaction_id]);
    const obs = await observer.get(`/executed_obs_units/${parent.id}`);
    // The record's creation failed at central: that is what it shows, not the `blocked` of the update waiting on it.
    assert.equal(obs.body.sync_status, 'failed');

    const retry = await e.admin.post(`/api/buffer/failed/${parent.transaction_id}/retry`);
    assert.equal(retry.status, 200);
    assert.deepEqual(retry.body.released, [parent.transaction_id, child.transaction_id]);
    assert.equal((await e.admin.post(`/api/buffer/failed/${parent.transaction_id}/retry`)).status, 409);

    claimed = await buffer.claim(1000, 1e9);
    await buffer.settle(claimed.map((t) => ({ seq: t.seq, outcome: 'rejected' as const, error: { code: 'x', message: 'again', at: new Date().toISOString() } })));
    const blank = await e.admin.post(`/api/buffer/failed/${parent.transaction_id}/discard`, { body: { reason: '  ' } });
    assert.equal(blank.status, 422, 'a reason, when given, says something');
    const d = await e.admin.post(`/api/buffer/failed/${parent.transaction_id}/discard`, { body: { reason: 'test run' } });
    assert.equal(d.status, 200);
    assert.equal(d.body.state, 'discarded');
    const s = (await e.anonymous.get('/buffer-stats')).body;
    assert.ok(s.discarded_total >= 1);
    const audit = await e.admin.get('/api/buffer/audit');
    assert.equal(audit.status, 200);
    assert.ok(audit.body.some((a: { action: string; reason: string | null; transaction_id: string }) =>
      a.action === 'discard' && a.reason === 'test run' && a.transaction_id === parent.transaction_id));
    assert.equal((await observer.get('/api/buffer/audit')).status, 403);
    // SPEC §4 names the call with no body: the reason is optional, and the audit says none was given.
    await buffer.settle((await buffer.claim(1000, 1e9)).map((t) => ({ seq: t.seq, outcome: 'rejected' as const, error: { code: 'x', message: 'no', at: new Date().toISOString() } })));
    const bare = await fetch(`${e.url}/api/buffer/failed/${child.transaction_id}/discard`, { method: 'POST', headers: { authorization: `Bearer ${e.admin.token}` } });
    assert.equal(bare.status, 200, await bare.clone().text());
    assert.equal(((await bare.json()) as { state: string }).state, 'discarded');
    const empty = await e.admin.post(`/api/buffer/failed/${child.transaction_id}/discard`, { body: {} });
    assert.equal(empty.status, 409, 'already discarded');
    const audit2 = (await e.admin.get('/api/buffer/audit')).body as { action: string; reason: string | null; transaction_id: string }[];
    assert.ok(audit2.some((a) => a.action === 'discard' && a.transaction_id === child.transaction_id && a.reason === 'no reason given'));
    const all = await e.admin.post('/api/buffer/retry-failed');
    assert.equal(all.status, 200);
    assert.equal((await e.admin.post('/api/buffer/failed/00000000-0000-4000-8000-000000000000/retry')).status, 404);
  });

  it('a retry of what needs a discarded transaction is a 409 naming it; retry-failed leaves it blocked and lists it in held', async () => {
    const parent = (await observer.post('/executed_obs_units/start', { body: { obs_unit_id: 5 } })).body;
    const child = (await observer.put(`/executed_obs_units/${parent.id}/finish`, { body: { status: 'success' } })).body;
    const { buffer } = e.running;
    const at = new Date().toISOString();
    await buffer.settle((await buffer.claim(1000, 1e9)).map((t) => (t.transaction_id === parent.transaction_id
      ? { seq: t.seq, outcome: 'rejected' as const, error: { code: 'validation_error', message: 'central said no', at } }
      : { seq: t.seq, outcome: 'retry' as const, error: { code: 'network', message: 'x', at } })));
    const early = await e.admin.post(`/api/buffer/failed/${child.transaction_id}/retry`);
    assert.equal(early.status, 409, early.text);
    assert.match(early.body.error.message, new RegExp(`waits on transaction ${parent.transaction_id} \\(seq \\d+\\), which is failed: retry that one`));
    assert.equal((await e.admin.post(`/api/buffer/failed/${parent.transaction_id}/discard`, { body: { reason: 'wrong unit' } })).status, 200);

    const r = await e.admin.post(`/api/buffer/failed/${child.transaction_id}/retry`);
    assert.equal(r.status, 409, r.text);
    assert.match(r.body.error.message, new RegExp(`needs transaction ${parent.transaction_id} \\(seq \\d+\\), which was discarded: .*discard it too`));
    assert.equal(r.body.error.details.waits_on.state, 'discarded');
    const all = await e.admin.post('/api/buffer/retry-failed');
    assert.equal(all.status, 200, all.text);
    assert.ok(!all.body.released.includes(child.transaction_id), 'not counted as released');
    assert.equal(all.body.count, all.body.released.length);
    assert.deepEqual(all.body.held.map((h: { transaction_id: string; waits_on: { transaction_id: string; state: string } }) =>
      [h.transaction_id, h.waits_on.transaction_id, h.waits_on.state]), [[child.transaction_id, parent.transaction_id, 'discarded']]);
    assert.match(all.body.held[0].reason, /discard it too/);
    assert.equal((await buffer.get(child.transaction_id))?.state, 'blocked');
  });
});

describe('edge limits', () => {
  it('answers 507 when the buffer is full, keeps what it accepted, and degrades health from 90 %', async () => {
    // Learn one transaction's size, then restart with room for exactly 10.5 of them.
    const probe = await startTestEdge('full');
    await (await probe.as(['observer'])).post('/api/demo/create-observation', { body: OBS });
    const one = (await probe.anonymous.get('/buffer-stats')).body.held_bytes;
    await probe.stop();
    const e = await startTestEdge('full', { dataDir: probe.dataDir, seed: false, overrides: { BUFFER_MAX_BYTES: Math.floor(one * 10.5) } });
    try {
      const observer = await e.as(['observer']);
      assert.equal((await e.anonymous.get('/health')).body.status, 'healthy');
      const ok: string[] = [];
      for (let i = 0; i < 9; i++) ok.push((await observer.post('/api/demo/create-observation', { body: OBS })).body.transaction_id);
      const refused = await observer.post('/api/demo/create-observation', { body: OBS });
      assert.equal(refused.status, 507);
      assert.equal(refused.body.error.code, 'buffer_full');
      assert.match(refused.body.error.message, /BUFFER_MAX_BYTES/);
      for (const id of ok) assert.equal((await observer.get(`/api/transactions/${id}`)).body.state, 'pending');
      const s = (await e.anonymous.get('/buffer-stats')).body;
      assert.equal(s.accepted_total, 10);
      assert.equal((await e.anonymous.get('/health')).body.status, 'degraded', 'a buffer ≥ 90 % full degrades health');

      // Drained a moment later (synced and compacted), it takes writes again at once: the committer's own
      // running figure of the bytes held still says full, and must be read again rather than trusted.
      const buffer = e.running.buffer;
      const claimed = await buffer.claim(1000, 1e12);
      await buffer.settle(claimed.map((t) => ({ seq: t.seq, outcome: 'applied' as const })));
      await buffer.compact(Math.max(...claimed.map((t) => t.seq)));
      assert.equal((await e.anonymous.get('/buffer-stats')).body.held_bytes, 0);
      const again = await observer.post('/api/demo/create-observation', { body: OBS });
      assert.equal(again.status, 201, JSON.stringify(again.body));
    } finally {
      await e.stop();
    }
  });

  it('answers 507 when the disk is below MIN_FREE_DISK_BYTES', async () => {
    const e = await startTestEdge('disk', { overrides: { MIN_FREE_DISK_BYTES: Number.MAX_SAFE_INTEGER } });
    try {
      const r = await (await e.as(['observer'])).post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
      assert.equal(r.status, 507);
      assert.match(r.body.error.message, /MIN_FREE_DISK_BYTES/);
      assert.equal((await e.anonymous.get('/buffer-stats')).body.accepted_total, 0);
    } finally {
      await e.stop();
    }
  });

  it('accepts writes with an empty replica and lets central decide', async () => {
    const e = await startTestEdge('unseeded', { seed: false });
    try {
      const r = await (await e.as(['observer'])).post('/executed_obs_units/start', { body: { obs_unit_id: 424242 } });
      assert.equal(r.status, 201);
    } finally {
      await e.stop();
    }
  });

  it('refuses to start on a buffer file that is not a database', async () => {
    const { edgeDataDir } = await import('../support/edge.js');
    const dir = edgeDataDir('corrupt');
    writeFileSync(join(dir, 'buffer.db'), 'this is not an SQLite database, it is a very long line of text '.repeat(100));
    await assert.rejects(startTestEdge('corrupt', { dataDir: dir }), /cannot open the SQLite buffer/);
  });

  it('returns in-flight work to pending at start, in order', async () => {
    const e = await startTestEdge('recover');
    const observer = await e.as(['observer']);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await observer.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).body.transaction_id);
    await e.running.buffer.claim(2, 1e9);
    await e.stop();
    const again = await startTestEdge('recover', { dataDir: e.dataDir, seed: false });
    try {
      const s = (await again.anonymous.get('/buffer-stats')).body;
      assert.equal(s.in_flight_transactions, 0);
      assert.equal(s.pending_transactions, 3);
      const batch = await again.running.buffer.claim(10, 1e9);
      assert.deepEqual(batch.map((t) => t.transaction_id), ids);
    } finally {
      await again.stop();
    }
  });
});
