import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { client, type Client } from '../support/http.js';
import { uuidv7 } from '../../src/lib/uuid.js';

function startTx(site: string, seq: number, over: Record<string, unknown> = {}) {
  const id = randomUUID();
  return {
    transaction_id: uuidv7(), site, seq, created_at: new Date().toISOString(), endpoint: 'POST /executed_obs_units/start',
    steps: [{ step_id: 'obs', op: 'create', table: 'executed_obs_unit', id,
      data: { id, obs_unit_id: 1, site, status: 'running', start_time: '2025-01-01T00:00:00.000Z', ...over } }],
  };
}

describe('central sync endpoints', () => {
  let c: TestCentral;
  let north: Client;
  let south: Client;
  const count = async (sql: string, params: unknown[] = []) => (await c.db.query(sql, params)).rows[0].n as number;

  before(async () => {
    c = await startTestCentral('sync');
    const a = await c.admin.post('/api/sites/', { body: { name: 'north', description: 'north edge' } });
    assert.equal(a.status, 201, a.text);
    assert.match(a.body.token, /^ops_api_token_/);
    north = client(c.url, a.body.token);
    south = client(c.url, (await c.admin.post('/api/sites/', { body: { name: 'south' } })).body.token);
  });
  after(() => c.stop());

  it('registers a site once; its token is shown once and only admins manage sites', async () => {
    assert.equal((await c.admin.post('/api/sites/', { body: { name: 'north' } })).status, 409);
    assert.equal((await c.admin.post('/api/sites/', { body: { name: 'Bad Name' } })).status, 422);
    const viewer = await c.as(['viewer']);
    assert.equal((await viewer.get('/api/sites/')).status, 403);
    const list = await c.admin.get('/api/sites/');
    assert.deepEqual(list.body.map((s: { name: string }) => s.name), ['north', 'south']);
    assert.ok(list.body.every((s: Record<string, unknown>) => !('token' in s)));
  });

  it('applies a batch in seq order; a repeat is a duplicate and changes nothing', async () => {
    const txs = [startTx('north', 2), startTx('north', 1)];
    const r = await north.post('/api/sync/transactions', { body: { site: 'north', transactions: txs } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.results.map((x: { seq: number; result: string }) => [x.seq, x.result]), [[1, 'applied'], [2, 'applied']]);
    assert.ok(r.body.position > 0);
    const again = await north.post('/api/sync/transactions', { body: { site: 'north', transactions: txs } });
    assert.deepEqual(again.body.results.map((x: { result: string }) => x.result), ['duplicate', 'duplicate']);
    assert.equal(await count(`SELECT count(*)::int AS n FROM executed_obs_unit WHERE site = 'north'`), 2);
    assert.equal(await count(`SELECT count(*)::int AS n FROM applied_transaction WHERE site = 'north'`), 2);
    const order = await c.db.query(`SELECT seq FROM applied_transaction WHERE site = 'north' ORDER BY applied_at, seq`);
    assert.deepEqual(order.rows.map((x) => Number(x.seq)), [1, 2]);
  });

  it('rejects one bad transaction alone; the rest of the batch applies', async () => {
    const good1 = startTx('north', 3);
    const bad = startTx('north', 4, { obs_unit_id: 999_999 });
    const good2 = startTx('north', 5);
    const r = await north.post('/api/sync/transactions', { body: { site: 'north', transactions: [good1, bad, good2] } });
    const [a, b, d] = r.body.results;
    assert.equal(a.result, 'applied');
    assert.equal(b.result, 'rejected');
    assert.equal(b.code, 'reference_not_found');
    assert.match(b.reason, /obs_unit/);
    assert.equal(b.details.step, 'obs', "the step is named, as the edge names it (the transaction's one step on that table)");
    assert.equal(b.details.table, 'executed_obs_unit');
    assert.equal(d.result, 'applied');
    assert.equal(await count(`SELECT count(*)::int AS n FROM applied_transaction WHERE transaction_id = $1`, [bad.transaction_id]), 0);
  });

  it('refuses the same transaction id with a different payload; a new transaction with a reused seq (a rebuilt edge) applies', async () => {
    const t = startTx('north', 6);
    await north.post('/api/sync/transactions', { body: { site: 'north', transactions: [t] } });
    const changed = { ...t, steps: [{ ...t.steps[0]!, data: { ...t.steps[0]!.data, status: 'failed' } }] };
    const r = await north.post('/api/sync/transactions', { body: { site: 'north', transactions: [changed] } });
    assert.equal(r.body.results[0].result, 'rejected');
    assert.equal(r.body.results[0].code, 'conflict');
    const reused = await north.post('/api/sync/transactions', { body: { site: 'north', transactions: [startTx('north', 6)] } });
    assert.equal(reused.body.results[0].result, 'applied', 'exactly-once is keyed on transaction ids, not seqs');
  });

  it('last_applied_seq never goes back for a retried transaction; it follows a rebuilt edge down', async () => {
    const token = (await c.admin.post('/api/sites/', { body: { name: 'west' } })).body.token;
    const west = client(c.url, token);
    const lastApplied = async () => (await c.admin.get('/api/sites/')).body.find((x: { name: string }) => x.name === 'west').last_applied_seq;
    const backlog = (last_seq: number) => ({ pending: 0, in_flight: 0, blocked: 0, failed: 0, oldest_pending_age_seconds: 0, last_seq, pending_bytes: 0 });
    const send = async (seqs: number[], last: number | null) => {
      const r = await west.post('/api/sync/transactions', {
        body: { site: 'west', transactions: seqs.map((s) => startTx('west', s)), ...(last === null ? {} : { backlog: backlog(last) }) } });
      assert.deepEqual(r.body.results.map((x: { result: string }) => x.result), seqs.map(() => 'applied'), r.text);
    };
    await send([2, 3, 4], 4);
    assert.equal(await lastApplied(), 4);
    await send([1], 4); // seq 1 failed at first; an operator retried it
    assert.equal(await lastApplied(), 4, 'a retried older transaction does not move it back');
    await send([5], 5);
    assert.equal(await lastApplied(), 5);
    await send([1, 2], 2); // the edge was rebuilt on an empty DATA_DIR: its seqs start again from 1
    assert.equal(await lastApplied(), 2, 'an edge counting below it was rebuilt, and is followed');
    await send([3], 3);
    assert.equal(await lastApplied(), 3);
    await send([1], null); // an older edge reports no backlog: followed as it sends, as before
    assert.equal(await lastApplied(), 1);
  });

  it("refuses a batch, applying nothing, when its feed does not have the edge's replica position as the edge read it", async () => {
    const page = (await north.get('/api/sync/changes?since=0&max_rows=50000')).body;
    assert.ok(page.position > 0 && page.position_id, `a position and its id: ${JSON.stringify({ ...page, changes: page.changes?.length })}`);
    const n = async () => count(`SELECT count(*)::int AS n FROM applied_transaction WHERE site = 'north'`);
    const before = await n();
    for (const header of [`${page.position} 1@2`, `${page.position + 1_000_000} ${page.position_id}`]) {
      const r = await north.post('/api/sync/transactions', { body: { site: 'north', transactions: [startTx('north', 50)] }, headers: { 'x-opsdb-replica': header } });
      assert.equal(r.status, 409, r.text);
      assert.equal(r.body.error.code, 'central_went_back');
      assert.match(r.body.error.message, /went back in time .*Nothing of this batch was applied/);
    }
    assert.equal(await n(), before, 'nothing applied');
    const ok = await north.post('/api/sync/transactions', { body: { site: 'north', transactions: [startTx('north', 51)] }, headers: { 'x-opsdb-replica': `${page.position} ${page.position_id}` } });
    assert.equal(ok.status, 200, ok.text);
    const head = (await north.get('/api/sync/changes?since=0&max_rows=50000')).body;
    assert.deepEqual([ok.body.position, ok.body.position_id], [head.position, head.position_id], 'a batch answer names its position as the feed does');
    const none = await north.post('/api/sync/transactions', { body: { site: 'north', transactions: [startTx('north', 52)] } });
    assert.equal(none.status, 200, 'an edge that sends no header (older builds) is not checked');
    assert.equal(await n(), before + 2);
  });

  it('a site token acts only for its own site', async () => {
    const asSouth = await north.post('/api/sync/transactions', { body: { site: 'south', transactions: [startTx('south', 1)] } });
    assert.equal(asSouth.status, 403);
    const mixed = await north.post('/api/sync/transactions', { body: { site: 'north', transactions: [startTx('south', 7)] } });
    assert.equal(mixed.status, 403);
    const rowForOther = startTx('north', 8);
    rowForOther.steps[0]!.data.site = 'south';
    const r = await north.post('/api/sync/transactions', { body: { site: 'north', transactions: [rowForOther] } });
    assert.equal(r.body.results[0].result, 'rejected');
    assert.equal(r.body.results[0].code, 'forbidden');
    const human = await c.as(['observer']);
    assert.equal((await human.post('/api/sync/transactions', { body: { site: 'north', transactions: [startTx('north', 9)] } })).status, 403);
    assert.equal((await north.get('/instruments/')).status, 403, 'a site token is for sync only');
  });

  it('a revoked site token stops working at once', async () => {
    const t = await c.admin.post('/api/sites/', { body: { name: 'east' } });
    const east = client(c.url, t.body.token);
    assert.equal((await east.get('/api/sync/changes?since=0')).status, 200);
    const { rows } = await c.db.query(`SELECT t.id FROM api_token t JOIN "user" u ON u.id = t.user_id WHERE u.site_name = 'east'`);
    assert.equal((await c.admin.del(`/api/tokens/${rows[0].id}`)).status, 200);
    const r = await east.get('/api/sync/changes?since=0');
    assert.equal(r.status, 401);
    assert.equal(r.body.error.code, 'token_revoked');
  });

  it('the change feed carries reference data, accounts for offline auth and only this site\'s rows', async () => {
    await south.post('/api/sync/transactions', { body: { site: 'south', transactions: [startTx('south', 1)] } });
    const all: { table: string; key: string; row: Record<string, unknown> | null }[] = [];
    let since = 0;
    let pages = 0;
    for (;;) {
      const r = await north.get(`/api/sync/changes?since=${since}&max_rows=20`);
      assert.equal(r.status, 200);
      assert.ok(r.body.position >= since);
      all.push(...r.body.changes);
      since = r.body.position;
      pages++;
      if (!r.body.more) break;
      assert.ok(pages < 100, 'the feed ends');
    }
    assert.ok(pages > 1, 'max_rows pages the feed');
    const tables = new Set(all.map((x) => x.table));
    for (const t of ['instrument', 'instrument_module_configuration', 'obs_unit', 'user', 'user_role', 'api_token', 'executed_obs_unit']) {
      assert.ok(tables.has(t), `feed has ${t}`);
    }
    const sites = all.filter((x) => x.table === 'executed_obs_unit').map((x) => x.row?.site);
    assert.ok(sites.length > 0 && sites.every((s) => s === 'north'), 'only this site\'s observations');
    const users = all.filter((x) => x.table === 'user').map((x) => x.row?.username);
    assert.ok(users.includes('site-north'));
    assert.ok(!users.includes('site-south'), 'never another site\'s account');
    const token = all.find((x) => x.table === 'api_token' && x.row?.user_id !== undefined);
    assert.match(String(token?.row?.token_hash), /^[0-9a-f]{64}$/);
    const end = await north.get(`/api/sync/changes?since=${since}`);
    assert.deepEqual(end.body.changes, []);
    assert.equal(end.body.more, false);
  });

  it('feed positions follow commit order: a transaction that commits late is not skipped', async () => {
    const head = (await north.get('/api/sync/changes?since=0&max_rows=50000')).body.position;
    const slow = new pg.Client({ connectionString: c.databaseUrl });
    await slow.connect();
    try {
      await slow.query('BEGIN');
      await slow.query(`INSERT INTO observing_program (name) VALUES ('slow program')`);
      await c.db.query(`INSERT INTO observing_program (name) VALUES ('fast program')`);
      const first = await north.get(`/api/sync/changes?since=${head}`);
      const names = (b: { changes: { row: { name?: string } | null }[] }) => b.changes.map((x) => x.row?.name);
      assert.deepEqual(names(first.body), ['fast program']);
      await slow.query('COMMIT');
      const second = await north.get(`/api/sync/changes?since=${first.body.position}`);
      assert.deepEqual(names(second.body), ['slow program']);
    } finally {
      await slow.end();
    }
  });

  it('GET /api/sites/ shows last contact, last applied seq and the reported backlog', async () => {
    const backlog = { pending: 3, in_flight: 1, blocked: 1, failed: 1, oldest_pending_age_seconds: 12.5, last_seq: 20, pending_bytes: 4000 };
    await north.post('/api/sync/transactions', { body: { site: 'north', transactions: [startTx('north', 10)], backlog } });
    const s = (await c.admin.get('/api/sites/')).body.find((x: { name: string }) => x.name === 'north');
    assert.equal(s.last_applied_seq, 10);
    assert.deepEqual(s.reported_backlog, backlog);
    assert.equal(s.lag_transactions, 6);
    assert.ok(s.seconds_since_contact < 5);
    await north.get('/api/sync/changes?since=0', { headers: { 'x-opsdb-backlog': JSON.stringify({ ...backlog, pending: 0 }) } });
    const s2 = (await c.admin.get('/api/sites/')).body.find((x: { name: string }) => x.name === 'north');
    assert.equal(s2.reported_backlog.pending, 0);
  });

  it('GET /buffer-stats at central (admin) adds up what the edges reported', async () => {
    assert.equal((await c.anonymous.get('/buffer-stats')).status, 401);
    assert.equal((await (await c.as(['viewer'])).get('/buffer-stats')).status, 403);
    const r = await c.admin.get('/buffer-stats');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.backend, 'postgresql');
    assert.equal(r.body.pending_transactions, 0, 'north last reported 0 pending');
    assert.equal(r.body.failed_transactions, 1);
    assert.ok(r.body.processing_rate > 0, 'applied in the last minute');
    assert.deepEqual(r.body.sites.map((s: { name: string }) => s.name).sort(), ['east', 'north', 'south', 'west']);
  });

  it('refuses a malformed batch with 422 and writes nothing', async () => {
    const before = await count('SELECT count(*)::int AS n FROM applied_transaction');
    for (const body of [{}, { site: 'north', transactions: [] }, { site: 'north', transactions: [{ ...startTx('north', 11), seq: 0 }] },
      { site: 'north', transactions: [{ ...startTx('north', 11), steps: [{ step_id: 'x', op: 'drop', table: 'user', id: 1, data: {} }] }] }]) {
      const r = await north.post('/api/sync/transactions', { body });
      assert.equal(r.status, 422, JSON.stringify(body));
    }
    assert.equal(await count('SELECT count(*)::int AS n FROM applied_transaction'), before);
  });

  it('refuses a batch that names one transaction twice (two answers under one id)', async () => {
    const before = await count('SELECT count(*)::int AS n FROM applied_transaction');
    const t = startTx('north', 12);
    const r = await north.post('/api/sync/transactions', { body: { site: 'north', transactions: [t, startTx('north', 13), { ...t, seq: 14, transaction_id: t.transaction_id.toUpperCase() }] } });
    assert.equal(r.status, 422, r.text);
    assert.match(r.body.error.message, /transactions\.2\.transaction_id: repeats transactions\[0\]: a batch names each transaction once/);
    assert.equal(await count('SELECT count(*)::int AS n FROM applied_transaction'), before);
  });
});
