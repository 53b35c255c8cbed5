// Found in review: a finish that names no end_time got the server's "now". After the clock was stepped
// back (NTP correcting a site that ran without it) since the start, "now" was before the start, and
// the finish was refused with 422 "end_time … is before the observation's start_time", though the
// client sent nothing wrong. The default is now the later of now and the start. A start_time ahead of
// the clock stands for the step here: no clock is touched. Edge and central, real processes' code.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestEdge } from '../support/edge.js';
import { startTestCentral } from '../support/central.js';
import type { Client } from '../support/http.js';

describe('a finish with no end_time after the clock went back', () => {
  const stops: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
  });

  const check = async (admin: Client) => {
    const ahead = new Date(Date.now() + 10 * 60_000).toISOString();
    const obs = await admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1, start_time: ahead } });
    assert.equal(obs.status, 201, obs.text);
    const fin = await admin.put(`/executed_obs_units/${obs.body.id}/finish`, { body: { status: 'success' } });
    assert.equal(fin.status, 202, fin.text);
    const row = (await admin.get(`/executed_obs_units/${obs.body.id}`)).body;
    assert.equal(row.end_time, ahead, 'ends when it started, not before');
    // One the client times itself is still checked.
    const early = await admin.put(`/executed_obs_units/${obs.body.id}/finish`, { body: { status: 'success', end_time: new Date().toISOString() } });
    assert.equal(early.status, 422, early.text);
    // And an ordinary finish still ends now.
    const now = await admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
    const before = Date.now();
    await admin.put(`/executed_obs_units/${now.body.id}/finish`, { body: { status: 'success' } });
    const end = Date.parse((await admin.get(`/executed_obs_units/${now.body.id}`)).body.end_time);
    assert.ok(end >= before - 1000 && end <= Date.now() + 1000, `end_time ${end} is now`);
  };

  it('at the edge', { timeout: 30_000 }, async () => {
    const edge = await startTestEdge('finish-default');
    stops.push(() => edge.stop());
    await check(edge.admin);
  });

  it('at central', { timeout: 30_000 }, async () => {
    const central = await startTestCentral('finish-default', { LOG_LEVEL: 'silent' });
    stops.push(() => central.stop());
    await check(central.admin);
  });
});
