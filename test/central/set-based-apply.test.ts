// A batch of transactions that only create rows is applied with one INSERT
// per table (migration 008) instead of transaction by transaction. These
// tests hold it to the same answers and the same change feed as applying the
// transactions one by one, in seq order, and check that every case it does
// not take (repeats, failing rows, references forward in the batch, updates)
// is still answered transaction by transaction.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { client, type Client } from '../support/http.js';
import { uuidv7 } from '../../src/lib/uuid.js';
import { insertOnlyRows, prepareTransaction } from '../../src/central/apply.js';
import type { Transaction } from '../../src/lib/api/transaction.js';

interface Ids { obs: string; pkg: string; files: string[] }

function createObservation(site: string, seq: number, opts: { obsUnit?: number; pkgOf?: string } = {}): { tx: Transaction; ids: Ids } {
  const ids: Ids = { obs: uuidv7(), pkg: uuidv7(), files: [uuidv7(), uuidv7()] };
  const tx = {
    transaction_id: uuidv7(), site, seq, created_at: new Date().toISOString(), endpoint: 'POST /api/demo/create-observation',
    steps: [
      { step_id: 'obs', op: 'create', table: 'executed_obs_unit', id: ids.obs,
        data: { obs_unit_id: opts.obsUnit ?? 1, site, status: 'success', start_time: '2025-01-01T00:00:00.000Z' } },
      { step_id: 'pkg', op: 'create', table: 'raw_data_package', id: ids.pkg, data: { name: `pkg-${seq}`, executed_obs_unit_id: ids.obs } },
      { step_id: 'files', op: 'bulk_create', table: 'raw_data_file',
        rows: ids.files.map((id, i) => ({ id, name: `f${i}.fits`, path: `/d/${seq}/f${i}.fits`, size: 10, checksum: `c${i}`, file_type: 'fits',
          executed_obs_unit_id: ids.obs, raw_data_package_id: opts.pkgOf ?? ids.pkg })) },
    ],
  } as Transaction;
  return { tx, ids };
}

function finish(site: string, seq: number, obs: string): Transaction {
  return {
    transaction_id: uuidv7(), site, seq, created_at: new Date().toISOString(), endpoint: 'PUT /executed_obs_units/{id}/finish',
    steps: [{ step_id: 'finish', op: 'update', table: 'executed_obs_unit', id: obs, data: { status: 'success', end_time: '2025-01-01T01:00:00.000Z' } }],
  } as Transaction;
}

describe('create-only batches applied one INSERT per table', () => {
  let c: TestCentral;
  let edge: Client;
  const SITE = 'bulk';
  let seq = 0;
  const send = async (txs: Transaction[]) => {
    const r = await edge.post('/api/sync/transactions', { body: { site: SITE, transactions: txs } });
    assert.equal(r.status, 200, r.text);
    return r.body.results.map((x: { result: string; code?: string }) => (x.result === 'rejected' ? `rejected:${x.code}` : x.result));
  };
  /** change_log notes of these row keys: table, key, site, and how many feed positions they span. */
  const notes = async (keys: string[]) =>
    (await c.db.query(
      `SELECT table_name, row_key, site FROM change_log WHERE row_key = ANY($1) ORDER BY table_name, row_key`, [keys],
    )).rows.map((r) => `${r.table_name}:${r.row_key}:${r.site}`).sort();
  const expectedNotes = (all: Ids[]) =>
    all.flatMap((i) => [
      `executed_obs_unit:${i.obs}:${SITE}`, `raw_data_package:${i.pkg}:${SITE}`, ...i.files.map((f) => `raw_data_file:${f}:${SITE}`),
    ]).sort();
  const keysOf = (all: Ids[]) => all.flatMap((i) => [i.obs, i.pkg, ...i.files]);
  const count = async (table: string, ids: string[]) =>
    (await c.db.query(`SELECT count(*)::int AS n FROM ${table} WHERE id = ANY($1::uuid[])`, [ids])).rows[0].n as number;

  before(async () => {
    c = await startTestCentral('set-based-apply');
    edge = client(c.url, (await c.admin.post('/api/sites/', { body: { name: SITE } })).body.token);
  });
  after(() => c.stop());

  it('takes the one-INSERT-per-table path only for create-only batches without forward references', () => {
    const a = createObservation(SITE, 1);
    const b = createObservation(SITE, 2);
    assert.ok(insertOnlyRows([a.tx, b.tx].map(prepareTransaction)), 'create-only');
    assert.equal(insertOnlyRows([a.tx, finish(SITE, 3, a.ids.obs)].map(prepareTransaction)), null, 'an update');
    const forward = createObservation(SITE, 4, { pkgOf: b.ids.pkg });
    assert.equal(insertOnlyRows([forward.tx, b.tx].map(prepareTransaction)), null, 'a file of a package created later in the batch');
    assert.ok(insertOnlyRows([b.tx, forward.tx].map(prepareTransaction)), 'the same two in order');
  });

  it('applies every transaction once, with one change-feed note per row and one feed position for the batch', async () => {
    const made = Array.from({ length: 20 }, () => createObservation(SITE, ++seq));
    assert.deepEqual(await send(made.map((m) => m.tx)), made.map(() => 'applied'));
    assert.deepEqual(await notes(keysOf(made.map((m) => m.ids))), expectedNotes(made.map((m) => m.ids)));
    const { rows } = await c.db.query(`SELECT count(DISTINCT xid)::int AS n FROM change_log WHERE row_key = ANY($1)`, [keysOf(made.map((m) => m.ids))]);
    assert.equal(rows[0].n, 1, 'one database transaction, so one feed position');
    const seqs = (await c.db.query(`SELECT seq FROM applied_transaction WHERE site = $1 ORDER BY applied_at, seq`, [SITE])).rows.map((r) => Number(r.seq));
    assert.deepEqual(seqs, made.map((m) => m.tx.seq), 'applied_at follows seq');
    const pkg = (await c.db.query(`SELECT state FROM raw_data_package WHERE id = $1`, [made[0]!.ids.pkg])).rows[0];
    assert.equal(pkg.state, 'open', 'column defaults as on the one-by-one path');
  });

  it('gives the same notes as the one-by-one path (a batch with an update takes that path)', async () => {
    const made = Array.from({ length: 3 }, () => createObservation(SITE, ++seq));
    const fin = finish(SITE, ++seq, made[0]!.ids.obs);
    assert.deepEqual(await send([...made.map((m) => m.tx), fin]), ['applied', 'applied', 'applied', 'applied']);
    const creates = await notes(keysOf(made.map((m) => m.ids)));
    // The update is noted too, by the row trigger: the observation has two notes.
    const expected = [...expectedNotes(made.map((m) => m.ids)), `executed_obs_unit:${made[0]!.ids.obs}:${SITE}`].sort();
    assert.deepEqual(creates, expected);
  });

  it('rows written after a set-based batch in the same way are still noted by the row triggers', async () => {
    const made = createObservation(SITE, ++seq);
    assert.deepEqual(await send([made.tx]), ['applied']);
    assert.deepEqual(await send([finish(SITE, ++seq, made.ids.obs)]), ['applied']);
    const obsNotes = (await notes([made.ids.obs])).filter((n) => n.startsWith('executed_obs_unit:'));
    assert.equal(obsNotes.length, 2, 'the create and the finish');
  });

  it('a repeat inside a batch is answered duplicate, the new ones applied, nothing noted twice', async () => {
    const old = createObservation(SITE, ++seq);
    assert.deepEqual(await send([old.tx]), ['applied']);
    const fresh = createObservation(SITE, ++seq);
    assert.deepEqual(await send([old.tx, fresh.tx]), ['duplicate', 'applied']);
    assert.deepEqual(await notes(keysOf([old.ids, fresh.ids])), expectedNotes([old.ids, fresh.ids]));
  });

  it('a failing transaction is rejected alone: the others apply, it leaves no row and no note', async () => {
    const a = createObservation(SITE, ++seq);
    const bad = createObservation(SITE, ++seq, { obsUnit: 999_999 });
    const b = createObservation(SITE, ++seq);
    assert.deepEqual(await send([a.tx, bad.tx, b.tx]), ['applied', 'rejected:reference_not_found', 'applied']);
    assert.equal(await count('executed_obs_unit', [bad.ids.obs]), 0);
    assert.equal(await count('raw_data_file', bad.ids.files), 0);
    assert.deepEqual(await notes(keysOf([bad.ids])), []);
    assert.deepEqual(await notes(keysOf([a.ids, b.ids])), expectedNotes([a.ids, b.ids]));
  });

  it('a file of a package created by a later transaction is rejected, as it would be in order', async () => {
    const later = createObservation(SITE, seq + 2);
    const early = createObservation(SITE, seq + 1, { pkgOf: later.ids.pkg });
    seq += 2;
    assert.deepEqual(await send([early.tx, later.tx]), ['rejected:reference_not_found', 'applied']);
    assert.equal(await count('raw_data_file', early.ids.files), 0);
    assert.equal(await count('raw_data_file', later.ids.files), 2);
  });

  it('a package created before its own observation in one transaction is rejected, as it would be in order', async () => {
    const { tx, ids } = createObservation(SITE, ++seq);
    const reordered = { ...tx, steps: [tx.steps[1]!, tx.steps[0]!, tx.steps[2]!] } as Transaction;
    assert.equal(insertOnlyRows([reordered].map(prepareTransaction)), null);
    const fine = createObservation(SITE, ++seq);
    assert.deepEqual(await send([reordered, fine.tx]), ['rejected:reference_not_found', 'applied']);
    assert.equal(await count('executed_obs_unit', [ids.obs]), 0, 'the whole transaction rolled back');
    assert.deepEqual(await notes(keysOf([ids])), []);
  });
});
