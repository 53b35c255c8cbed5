// Found in session 12's fuzz: a raw data file could be put in a package of another observation, at central
// and at the edge alike (a package belongs to one observation; nothing tied a file's two references
// together), so the package then listed a file of another observation. Now both sites refuse it with
// the same 422, and central's trigger (migration 012) also catches it in a sync batch.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startCentralAndEdge } from '../support/edge.js';
import { Acked, createObservation, waitFor } from '../support/processes.js';
import { client } from '../support/http.js';
import { uuidv7 } from '../../src/lib/uuid.js';
import { migrate } from '../../src/central/migrate.js';

let sites: Awaited<ReturnType<typeof startCentralAndEdge>>;
before(async () => {
  sites = await startCentralAndEdge('file-package-observation', 'pkgsite');
});
after(() => sites?.stop());

const both = () => [['central', sites.central.admin], ['edge', sites.edge.admin]] as const;
const file = (n: string) => ({ name: `${n}.fits`, path: `/data/raw/${n}.fits`, size: 10, checksum: `sha256:${n}`, file_type: 'fits' });

function assertRefused(r: { status: number; body: any }, pkg: string, obs: string, what: string) {
  assert.equal(r.status, 422, `${what}: ${JSON.stringify(r.body)}`);
  assert.equal(r.body.error.code, 'validation_error', what);
  assert.match(r.body.error.message, new RegExp(`raw_data_package ${pkg} is not a package of executed_obs_unit ${obs}`), what);
  assert.equal(r.body.error.details.raw_data_package_id, pkg, what);
  assert.equal(r.body.error.details.executed_obs_unit_id, obs, what);
}

describe("a raw data file can only be put in a package of its own observation", () => {
  it('POST /raw_data_files/ and /raw_data_files/bulk with another observation\'s package: 422, nothing stored, at both sites', async () => {
    for (const [site, admin] of both()) {
      // Edge: reference data (obs_unit 1) comes from central by sync.
      const [a, b] = await waitFor(async () => {
        const x = await createObservation(admin, new Acked());
        return x.status === 201 ? [x.body, (await createObservation(admin, new Acked())).body] : null;
      }, 20_000, `${site} takes writes`);
      const filesOfB = async () => ((await admin.get(`/executed_obs_units/${b.executed_obs_unit_id}`)).body.raw_data_files as unknown[]).length;
      const before = await filesOfB();
      const one = await admin.post('/raw_data_files/', {
        body: { ...file(`${site}-x`), executed_obs_unit_id: a.executed_obs_unit_id, raw_data_package_id: b.raw_data_package_id },
      });
      assertRefused(one, b.raw_data_package_id, a.executed_obs_unit_id, `${site} single`);
      const bulk = await admin.post('/raw_data_files/bulk', {
        body: { executed_obs_unit_id: a.executed_obs_unit_id, raw_data_package_id: b.raw_data_package_id, files: [file(`${site}-y`), file(`${site}-z`)] },
      });
      assertRefused(bulk, b.raw_data_package_id, a.executed_obs_unit_id, `${site} bulk`);
      assert.equal(await filesOfB(), before, `${site}: nothing was stored`);
      // Its own package, or none: stored.
      const own = await admin.post('/raw_data_files/', {
        body: { ...file(`${site}-own`), executed_obs_unit_id: a.executed_obs_unit_id, raw_data_package_id: a.raw_data_package_id },
      });
      assert.equal(own.status, 201, JSON.stringify(own.body));
      const none = await admin.post('/raw_data_files/', { body: { ...file(`${site}-none`), executed_obs_unit_id: b.executed_obs_unit_id } });
      assert.equal(none.status, 201, JSON.stringify(none.body));
    }
  });

  it('a sync batch that does it is rejected alone, with the same answer, by central\'s trigger', async () => {
    const acked = new Acked();
    const a = (await createObservation(sites.central.admin, acked)).body;
    const b = (await createObservation(sites.central.admin, acked)).body;
    const site = client(sites.central.url, (await sites.central.admin.post('/api/sites/', { body: { name: 'pkgraw' } })).body.token);
    const obs = uuidv7();
    const tx = (seq: number, steps: unknown[]) => ({
      transaction_id: uuidv7(), site: 'pkgraw', seq, created_at: new Date().toISOString(), endpoint: 'POST /raw_data_files/', steps,
    });
    // Its own observation, with a file in a package of one of central's observations (not this site's: the
    // site check would answer 403 first), so the database's trigger is what refuses it.
    const own = tx(1, [{ step_id: 'obs', op: 'create', table: 'executed_obs_unit', id: obs,
      data: { id: obs, obs_unit_id: 1, site: 'pkgraw', status: 'running', start_time: '2025-01-01T00:00:00.000Z' } }]);
    const pkg = uuidv7();
    const ownPackage = tx(2, [{ step_id: 'pkg', op: 'create', table: 'raw_data_package', id: pkg, data: { id: pkg, name: 'p', executed_obs_unit_id: obs } }]);
    const fileId = uuidv7();
    const good = tx(3, [{ step_id: 'file', op: 'create', table: 'raw_data_file', id: fileId, data: { id: fileId, ...file('good'), executed_obs_unit_id: obs, raw_data_package_id: pkg } }]);
    const obs2 = uuidv7();
    const other = tx(4, [{ step_id: 'obs2', op: 'create', table: 'executed_obs_unit', id: obs2,
      data: { id: obs2, obs_unit_id: 1, site: 'pkgraw', status: 'running', start_time: '2025-01-01T00:00:00.000Z' } }]);
    const badId = uuidv7();
    const bad = tx(5, [{ step_id: 'file', op: 'create', table: 'raw_data_file', id: badId, data: { id: badId, ...file('bad'), executed_obs_unit_id: obs2, raw_data_package_id: pkg } }]);
    const r = await site.post('/api/sync/transactions', { body: { site: 'pkgraw', transactions: [own, ownPackage, good, other, bad] } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.results.map((x: { result: string }) => x.result), ['applied', 'applied', 'applied', 'applied', 'rejected']);
    const rejected = r.body.results[4];
    assert.equal(rejected.code, 'validation_error', JSON.stringify(rejected));
    assert.equal(rejected.details.step, 'file');
    assert.match(rejected.reason, new RegExp(`raw_data_package ${pkg} is not a package of executed_obs_unit ${obs2}`));
    const stored = await sites.central.db.query('SELECT count(*)::int AS n FROM raw_data_file WHERE id = $1', [badId]);
    assert.equal(stored.rows[0].n, 0);
    assert.ok(a && b);
  });

  it('a package that does not exist is still reference_not_found, at both sites', async () => {
    for (const [site, admin] of both()) {
      const a = (await createObservation(admin, new Acked())).body;
      const missing = uuidv7();
      const r = await admin.post('/raw_data_files/', { body: { ...file(`${site}-m`), executed_obs_unit_id: a.executed_obs_unit_id, raw_data_package_id: missing } });
      assert.equal(r.status, 422, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'reference_not_found', site);
      assert.match(r.body.error.message, new RegExp(missing), site);
    }
  });

  it('a database that already holds such a file still migrates, and refuses new ones', async () => {
    const db = sites.central.db;
    const acked = new Acked();
    const a = (await createObservation(sites.central.admin, acked)).body;
    const b = (await createObservation(sites.central.admin, acked)).body;
    // As before migration 012: without its trigger, and with a file in another observation's package.
    await db.query('DROP TRIGGER raw_data_file_package_observation ON raw_data_file');
    await db.query('DROP FUNCTION opsdb_file_package_observation()');
    await db.query("DELETE FROM schema_migration WHERE version = '012_file_package_observation'");
    const old = uuidv7();
    await db.query(
      `INSERT INTO raw_data_file (id, name, path, size, checksum, file_type, executed_obs_unit_id, raw_data_package_id)
       VALUES ($1, 'old.fits', '/data/raw/old.fits', 1, 'sha256:old', 'fits', $2, $3)`,
      [old, a.executed_obs_unit_id, b.raw_data_package_id],
    );
    const result = await migrate(db);
    assert.deepEqual(result.applied, ['012_file_package_observation']);
    const r = await sites.central.admin.post('/raw_data_files/', {
      body: { ...file('after'), executed_obs_unit_id: a.executed_obs_unit_id, raw_data_package_id: b.raw_data_package_id },
    });
    assertRefused(r, b.raw_data_package_id, a.executed_obs_unit_id, 'after the migration');
    // The query docs/central.md gives finds the old row.
    const found = await db.query(
      `SELECT f.id FROM raw_data_file f JOIN raw_data_package p ON p.id = f.raw_data_package_id
        WHERE p.executed_obs_unit_id <> f.executed_obs_unit_id`,
    );
    assert.deepEqual(found.rows.map((x) => x.id), [old]);
  });
});
