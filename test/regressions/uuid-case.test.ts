// Found in a contract review: an id typed in upper case worked at central (PostgreSQL's uuid type
// ignores case) but got 404 or 422 at the edge, whose SQLite store compares text. SPEC §1: a script
// written against the edge works unchanged against central, and the other way round. Ids are now taken
// in their canonical lower-case form at both sites. A real central on PostgreSQL, an edge in-process,
// and the CLI as a real process.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { startTestEdge, type TestEdge } from '../support/edge.js';
import { runCli } from '../support/cli.js';

describe('a UUID in upper case names the same record as in lower case', () => {
  let central: TestCentral;
  let edge: TestEdge;
  before(async () => {
    central = await startTestCentral('uuid-case');
    edge = await startTestEdge('uuid-case');
  });
  after(async () => {
    await edge?.stop();
    await central?.stop();
  });

  for (const name of ['central', 'edge'] as const) {
    it(`at ${name}: reads, references, updates and the transaction`, async () => {
      const site = name === 'central' ? central.admin : edge.admin;
      const started = await site.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
      assert.equal(started.status, 201, started.text);
      const id = started.body.id as string;
      const upper = id.toUpperCase();

      const read = await site.get(`/executed_obs_units/${upper}`);
      assert.equal(read.status, 200, read.text);
      assert.equal(read.body.id, id);

      const pkg = await site.post('/raw_data_package/', { body: { name: `p-${name}`, executed_obs_unit_id: upper } });
      assert.equal(pkg.status, 201, pkg.text);
      const file = await site.post('/raw_data_files/', {
        body: { name: 'a.fits', path: '/d/a.fits', size: 1, checksum: 'x', file_type: 'fits', executed_obs_unit_id: upper, raw_data_package_id: (pkg.body.id as string).toUpperCase() },
      });
      assert.equal(file.status, 201, file.text);
      const back = await site.get(`/raw_data_files/${(file.body.id as string).toUpperCase()}`);
      assert.equal(back.status, 200, back.text);
      assert.equal(back.body.executed_obs_unit_id, id, 'stored in lower case');
      assert.equal(back.body.raw_data_package_id, pkg.body.id);

      const fin = await site.put(`/executed_obs_units/${upper}/finish`, { body: { status: 'success' } });
      assert.equal(fin.status, 202, fin.text);
      assert.equal(fin.body.id, id, 'answered with the id in its canonical form');
      const full = await site.get(`/executed_obs_units/${id}`);
      assert.equal(full.body.status, 'success');
      assert.equal(full.body.raw_data_packages.length, 1);
      assert.equal(full.body.raw_data_files.length, 1);

      const tx = await site.get(`/api/transactions/${(started.body.transaction_id as string).toUpperCase()}`);
      assert.equal(tx.status, 200, tx.text);
      assert.equal(tx.body.transaction_id, started.body.transaction_id);
    });
  }

  it('opsdb buffer show takes the id in upper case', async () => {
    const w = await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    const r = await runCli(['buffer', 'show', (w.body.transaction_id as string).toUpperCase()], { SITE_TYPE: 'secondary', DATA_DIR: edge.dataDir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).transaction_id, w.body.transaction_id);
  });
});
