// How readChanges cuts the change feed into pages: whole positions, about
// max_rows rows, at least one position; positions that hold nothing for the
// site are stepped over, a bounded number per page, so a page's work does
// not grow with the length of the feed after `since`.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { readChanges } from '../../src/central/sync.js';

describe('change feed pages', () => {
  let c: TestCentral;
  /** The feed's head: every page from here on holds only what the test writes next. */
  const head = async () => Number((await c.db.query('SELECT pos FROM feed_position WHERE id = 1')).rows[0].pos);
  /** One position (one database transaction) with `n` rows every site sees. */
  const visible = async (n: number, tag: string) => {
    await c.db.query(`INSERT INTO observing_program (name) SELECT $1 || '-' || g FROM generate_series(1, $2) g`, [tag, n]);
  };
  /** One position with `n` observations of another site: nothing in it for 'reader'. */
  const foreign = async (n: number) => {
    await c.db.query(
      `INSERT INTO executed_obs_unit (id, obs_unit_id, site, status, start_time)
       SELECT gen_random_uuid(), (SELECT min(id) FROM obs_unit), 'other', 'running', now() FROM generate_series(1, $1)`,
      [n],
    );
  };
  const programs = (page: { changes: { table: string; row: Record<string, unknown> | null }[] }) =>
    page.changes.filter((x) => x.table === 'observing_program').map((x) => String(x.row?.name));

  before(async () => {
    c = await startTestCentral('feed-paging');
    assert.equal((await c.admin.post('/api/sites/', { body: { name: 'reader' } })).status, 201);
  });
  after(() => c?.stop());

  it('fills a page with whole positions up to max_rows, and sends a bigger position whole', async () => {
    const since = await head();
    for (const [i, n] of [3, 3, 3, 10].entries()) await visible(n, `p${i}`);
    const first = await readChanges(c.db, 'reader', since, 7);
    assert.deepEqual(programs(first).map((x) => x.split('-')[0]), ['p0', 'p0', 'p0', 'p1', 'p1', 'p1'], 'two positions of 3; a third would pass 7');
    assert.equal(first.more, true);
    const second = await readChanges(c.db, 'reader', first.position, 7);
    assert.deepEqual(programs(second).map((x) => x.split('-')[0]), ['p2', 'p2', 'p2']);
    const third = await readChanges(c.db, 'reader', second.position, 7);
    assert.equal(programs(third).length, 10, 'a position bigger than max_rows comes whole, on its own');
    assert.equal(third.more, false);
    assert.equal(third.position, await head());
  });

  it('names each page\'s position in central\'s history, and says since_unknown when the position asked after is another one now', async () => {
    const since = await head();
    await visible(1, 'named');
    const page = await readChanges(c.db, 'reader', since, 1000);
    assert.match(page.position_id ?? '', /^\d+@\d+$/, 'its transaction and when it committed');
    await visible(1, 'next');
    const next = await readChanges(c.db, 'reader', page.position, 1000, page.position_id!);
    assert.equal(next.since_unknown, undefined);
    assert.deepEqual(programs(next), ['next-1']);
    assert.notEqual(next.position_id, page.position_id);
    // What a restored central answers: its position is held by another transaction than the one the edge read.
    const parted = await readChanges(c.db, 'reader', page.position, 1000, next.position_id!);
    assert.deepEqual({ ...parted, head: undefined }, { changes: [], position: page.position, more: true, head: undefined, since_unknown: true });
    const past = await readChanges(c.db, 'reader', (await head()) + 5, 1000, page.position_id!);
    assert.equal(past.since_unknown, true, 'a position central does not have');
    // An edge older than position_id sends none: nothing is checked.
    assert.deepEqual(programs(await readChanges(c.db, 'reader', page.position, 1000)), ['next-1']);
  });

  it('steps over positions with nothing for the site and stops at the next that has something', async () => {
    const since = await head();
    for (let i = 0; i < 40; i++) await foreign(2);
    await visible(1, 'after-foreign');
    const page = await readChanges(c.db, 'reader', since, 1000);
    assert.deepEqual(programs(page), ['after-foreign-1']);
    assert.ok(!page.changes.some((x) => x.table === 'executed_obs_unit'), "another site's rows are never sent");
    assert.equal(page.position, await head());
    assert.equal(page.more, false);
  });

  it('with only other sites\' positions ahead, moves the edge to the head in bounded pages', async () => {
    const since = await head();
    for (let i = 0; i < 20; i++) await foreign(1);
    const page = await readChanges(c.db, 'reader', since, 1000);
    assert.deepEqual(page.changes, []);
    assert.equal(page.position, await head());
    assert.equal(page.more, false);
  });

  it('looks at a bounded number of positions per page: a long run of other sites\' writes takes more than one page', async () => {
    const since = await head();
    // 4,100 positions of another site (one commit each), then one for everybody.
    await c.db.query(`DO $$ BEGIN
      FOR i IN 1..4100 LOOP
        INSERT INTO executed_obs_unit (id, obs_unit_id, site, status, start_time)
        VALUES (gen_random_uuid(), (SELECT min(id) FROM obs_unit), 'other', 'running', now());
        COMMIT;
      END LOOP; END $$`);
    await visible(1, 'after-long-run');
    const first = await readChanges(c.db, 'reader', since, 1000);
    assert.deepEqual(first.changes, [], 'the first page only steps over positions');
    assert.ok(first.position > since && first.position < (await head()) - 1, `moved from ${since} to ${first.position}`);
    assert.equal(first.more, true);
    const second = await readChanges(c.db, 'reader', first.position, 1000);
    assert.deepEqual(programs(second), ['after-long-run-1']);
    assert.equal(second.more, false);
  });
});
