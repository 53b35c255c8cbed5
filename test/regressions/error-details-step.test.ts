// Found in a contract review: the same refused write named its step in the error's details at the
// edge ({"step":"obs",…}) but not at central ({"step":null,…}), though SPEC §4 gives errors one shape
// at both sites. Central now names the step when it is the transaction's only step on the table
// PostgreSQL names. A real central on PostgreSQL and an edge in-process with reference data.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { startTestEdge, type TestEdge } from '../support/edge.js';

describe('the details of a refused reference', () => {
  let central: TestCentral;
  let edge: TestEdge;
  before(async () => {
    central = await startTestCentral('error-details-step');
    edge = await startTestEdge('error-details-step');
  });
  after(async () => {
    await edge?.stop();
    await central?.stop();
  });

  it('name the same step at central as at the edge', async () => {
    const cases: [string, Record<string, unknown>, string][] = [
      ['/executed_obs_units/start', { obs_unit_id: 99_999 }, 'obs'],
      ['/api/demo/create-observation', { obs_data: { obs_unit_id: 99_999, start_time: '2025-01-01T00:00:00Z', package_name: 'p' }, raw_files: [] }, 'obs'],
    ];
    for (const [path, body, step] of cases) {
      const e = await edge.admin.post(path, { body });
      const c = await central.admin.post(path, { body });
      assert.equal(e.status, 422, e.text);
      assert.equal(c.status, 422, c.text);
      assert.equal(c.body.error.code, e.body.error.code);
      assert.equal(e.body.error.details.step, step, e.text);
      assert.equal(c.body.error.details.step, step, c.text);
      assert.equal(c.body.error.details.table, e.body.error.details.table);
    }
  });
});
