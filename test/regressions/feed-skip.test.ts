// readChanges (src/central/sync.ts) reads the visible positions after `since`
// and then, in a separate statement, feed_position.pos. When the first finds
// nothing and a writer commits in between, it answers "no changes, position =
// the new current": the edge moves past a position it never saw, and that
// change (reference data, a token revocation, a row) never reaches the
// replica. The interleaving is forced here by running a committed write
// just before readChanges' second query.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { readChanges } from '../../src/central/sync.js';
import type { Pool } from '../../src/central/db.js';

describe('change feed page race', () => {
  let c: TestCentral;
  before(async () => {
    c = await startTestCentral('review-feed');
    assert.equal((await c.admin.post('/api/sites/', { body: { name: 'racer' } })).status, 201);
  });
  after(() => c?.stop());

  it('never advances an edge past a position whose changes it was not sent', async () => {
    // Catch up with the feed as an edge would.
    let since = 0;
    for (;;) {
      const page = await readChanges(c.db, 'racer', since, 50_000);
      since = page.position;
      if (!page.more) break;
    }

    // A commit lands between readChanges' "which positions?" and "where is the feed now?".
    let injected = false;
    const racy = {
      query: async (text: string, params?: unknown[]) => {
        if (!injected && /SELECT pos FROM feed_position/.test(text)) {
          injected = true;
          await c.db.query(`INSERT INTO obs_unit (name, observing_program_id) VALUES ('raced-unit', 1)`);
        }
        return c.db.query(text, params as unknown[]);
      },
    } as unknown as Pool;
    const first = await readChanges(racy, 'racer', since, 50_000);
    assert.ok(injected);

    const seen = [...first.changes];
    let pos = first.position;
    let more = first.more;
    while (more) {
      const page = await readChanges(c.db, 'racer', pos, 50_000);
      seen.push(...page.changes);
      pos = page.position;
      more = page.more;
    }
    const { rows } = await c.db.query(`SELECT id FROM obs_unit WHERE name = 'raced-unit'`);
    const key = String(rows[0].id);
    assert.ok(
      seen.some((ch) => ch.table === 'obs_unit' && ch.key === key),
      `the new obs_unit ${key} was never sent; the edge was moved from position ${since} to ${first.position} (more=${first.more}) with ${first.changes.length} changes`,
    );
  });
});
