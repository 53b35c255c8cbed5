// Found in review: the sync engine timed its pulls and backoffs with Date.now(). An NTP step of the
// wall clock backwards by H hours then stopped pulls for H hours: token revocations, reference data
// and compaction all waited, and /health stayed healthy because no pull was ever due. Intervals are
// now measured on the monotonic clock. The real engine, a real central and a real SQLite replica; the
// wall clock of this process is stepped back an hour by replacing Date.now.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { until } from '../support/daemon.js';
import { engineFor } from '../support/engine.js';

describe('the wall clock steps back while the engine runs', () => {
  let central: TestCentral;
  let dir: string;
  before(async () => {
    central = await startTestCentral('clock-step');
    dir = mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), 'opsdb-clock-step-'));
  });
  after(async () => {
    await central?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('goes on pulling every interval', async () => {
    const { engine, local, close } = await engineFor(central, 'clock-step', dir);
    const realNow = Date.now;
    const names = () => local.listReference('observing_program').map((p) => p.name);
    try {
      engine.start();
      await central.db.query(`INSERT INTO observing_program (name) VALUES ('before the step')`);
      await until('the first program to reach the replica', async () => names().includes('before the step'));

      Date.now = () => realNow() - 3_600_000;
      await central.db.query(`INSERT INTO observing_program (name) VALUES ('after the step')`);
      // At an interval of 200 ms, a few seconds is many pulls; with the old timing the next pull was an hour away.
      await until('a program added after the step to reach the replica', async () => names().includes('after the step'), 5_000);
      assert.equal(engine.state(), 'running');
    } finally {
      Date.now = realNow;
      await close();
    }
  });
});
