// Found in review: when central's database went back in time (restored from a backup, or failed over to a
// standby that was behind), its change feed gave out positions the edge had already passed, to new
// changes. The edge asked for changes after its old position and silently skipped them: a token revoked
// at central after the restore kept working at the edge. Central now says where its feed is (`head`), and
// an edge whose replica is past it says so at level error and follows the feed from there. A real central
// on PostgreSQL whose feed is rewound in place, the real engine, a real SQLite replica.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { until } from '../support/daemon.js';
import { engineBed, engineFor, startObservation as observation } from '../support/engine.js';
import type { SavedSyncState } from '../../src/sync/engine.js';
import type { CentralClient } from '../../src/sync/transport.js';
import type { NewTransaction } from '../../src/edge/buffer/buffer.js';
import { createMetrics } from '../../src/lib/metrics.js';
import { registerEdgeMetrics } from '../../src/edge/metrics.js';

describe('central\'s feed goes back behind the edge', () => {
  const bed = engineBed('went-back');
  /** The engine's saved state (local.db keeps it) with a replay under way after `after_seq` through `through_seq`. */
  const replayUnderWay = (after_seq: number, through_seq: number, duplicate = 0) => {
    let saved: SavedSyncState = {
      last_sync_at: null, last_error: null, consecutive_failures: 0, central_reachable: true,
      replay: { after_seq, through_seq, started_at: new Date().toISOString(), applied: 0, duplicate, rejected: 0 },
    };
    /** Every replay state saved, in order (null once it ended). */
    const replays: SavedSyncState['replay'][] = [];
    const save = (st: SavedSyncState) => {
      saved = st;
      replays.push(st.replay ? { ...st.replay } : null);
    };
    return { memory: { load: () => saved, save }, state: () => saved, replays };
  };

  it('the edge says so and receives the changes made after it', async () => {
    const { engine, local, close } = await engineFor(bed.central, 'went-back', bed.dir, { retryMaxMs: 200 });
    const codes: string[] = [];
    engine.on({ error: (code) => codes.push(code) });
    const names = () => local.listReference('observing_program').map((p) => p.name);
    try {
      engine.start();
      await bed.central.db.query(`INSERT INTO observing_program (name) VALUES ('before the restore')`);
      await until('the replica to have it', async () => names().includes('before the restore'));
      const passed = local.position();
      assert.ok(passed > 2, `the replica is well into the feed (${passed})`);

      // The restore: central's feed as it was at position 1. What it gives out next, the edge has passed.
      await bed.central.db.query('DELETE FROM feed_tx WHERE pos > 1');
      await bed.central.db.query('UPDATE feed_position SET pos = 1 WHERE id = 1');
      await bed.central.db.query(`INSERT INTO observing_program (name) VALUES ('after the restore')`);

      await until('the change made after the restore to reach the replica', async () => names().includes('after the restore'), 10_000);
      assert.ok(codes.includes('central_behind'), `the engine reported it (${codes.join(', ')})`);
      assert.ok(local.position() < passed, 'the replica follows central\'s feed as it is now');
      assert.equal(engine.state(), 'running');
    } finally {
      await close();
    }
  });

  it('also when the feed went back and then on past the edge before its next pull', async () => {
    // A central restored while the link was down, then busy (other sites, this edge's own backlog):
    // by the edge's next pull, the head is past the replica again, and only position_id tells.
    const { engine, local, close } = await engineFor(bed.central, 'went-back-past', bed.dir, { retryMaxMs: 200 });
    const codes: string[] = [];
    engine.on({ error: (code) => codes.push(code) });
    const names = () => local.listReference('observing_program').map((p) => p.name);
    try {
      engine.start();
      await bed.central.db.query(`INSERT INTO observing_program (name) VALUES ('before the second restore')`);
      await until('the replica to have it', async () => names().includes('before the second restore'));
      const passed = local.position();
      await engine.stop();

      const back = Number((await bed.central.db.query('SELECT min(pos) AS p FROM feed_tx WHERE pos > 1')).rows[0].p);
      await bed.central.db.query('DELETE FROM feed_tx WHERE pos >= $1', [back]);
      await bed.central.db.query('UPDATE feed_position SET pos = $1 WHERE id = 1', [back - 1]);
      const after = Array.from({ length: passed - back + 3 }, (_, i) => `after the second restore ${i}`);
      for (const name of after) await bed.central.db.query('INSERT INTO observing_program (name) VALUES ($1)', [name]);
      const head = Number((await bed.central.db.query('SELECT pos FROM feed_position WHERE id = 1')).rows[0].pos);
      assert.ok(head > passed, `central's head (${head}) is past the replica (${passed}) again`);

      engine.start();
      await until('every change made after the restore to reach the replica', async () => after.every((n) => names().includes(n)), 10_000);
      assert.ok(codes.includes('central_behind'), `the engine reported it (${codes.join(', ')})`);
      assert.equal(engine.state(), 'running');
    } finally {
      await close();
    }
  });
  it('a replay to central saved before a restart goes on from where it was', async () => {
    // As the engine saves it in local.db: seqs 1–2 already sent again (central still had them), 3–4 to go.
    const { memory, state } = replayUnderWay(2, 4, 2);
    const site = 'replay-resume';
    const own = bed.siteDir(site);
    const { engine, buffer, close } = await engineFor(bed.central, site, own, { memory, keepSyncedSeconds: 3600 });
    try {
      const txs = await buffer.append(Array.from({ length: 5 }, () => observation(site)));
      // Seqs 1–4 synced (and compacted, kept whole) before the restart; 5 written since, pending.
      await buffer.settle((await buffer.claim(4, 1e9)).map((t) => ({ seq: t.seq, outcome: 'applied' as const })));
      await buffer.compact(4, 3600);
      const metrics = createMetrics(false);
      registerEdgeMetrics(metrics, buffer, engine);
      assert.match(await metrics.registry.metrics(), /^opsdb_sync_central_replay_remaining_seqs 2$/m, 'seqs 3 and 4 to go, in /metrics');
      engine.start();
      await until('the replay to end and the pending one to be sent', async () => state().replay === null && (await buffer.stats()).applied_total === 5, 10_000);
      const { rows } = await bed.central.db.query<{ seq: string }>('SELECT seq FROM applied_transaction WHERE site = $1 ORDER BY applied_at, seq', [site]);
      assert.deepEqual(rows.map((r) => Number(r.seq)), [3, 4, 5], 'only what was left of the replay, then what was pending, in order');
      assert.equal(rows.length, txs.length - 2);
      assert.match(await metrics.registry.metrics(), /^opsdb_sync_central_replay_remaining_seqs 0$/m);
    } finally {
      await close();
    }
  });
  // Found in review: the replay ran before any pull, with the replica read again from the start, so
  // central's changes (a revoked token) waited for the whole replay: hours over the site's link.
  it("central's changes reach the replica while a long replay runs", async () => {
    const site = 'replay-pulls';
    const own = bed.siteDir(site);
    const { memory, state } = replayUnderWay(0, 3000);
    // 100 ms per batch: the site's long link.
    const slow = (real: CentralClient): CentralClient => ({
      get: real.get.bind(real),
      post: async (...a) => (await new Promise((r) => setTimeout(r, 100)), real.post(...a)),
    });
    const { engine, buffer, local, close } = await engineFor(bed.central, site, own, { memory, keepSyncedSeconds: 3600, client: slow });
    try {
      for (let i = 0; i < 30; i++) await buffer.append(Array.from({ length: 100 }, () => observation(site)));
      await buffer.settle((await buffer.claim(5000, 1e12)).map((t) => ({ seq: t.seq, outcome: 'applied' as const })));
      await buffer.compact(3000, 3600);
      await bed.central.db.query(`INSERT INTO observing_program (name) VALUES ('changed at central during the replay')`);
      engine.start();
      await until("central's change in the replica", async () => local.listReference('observing_program').some((p) => p.name === 'changed at central during the replay'), 10_000);
      assert.ok(engine.centralReplay() !== null, 'while the replay still runs');
      await until('the replay to end', async () => engine.centralReplay() === null, 30_000);
      const { rows } = await bed.central.db.query<{ n: number }>('SELECT count(*)::int AS n FROM applied_transaction WHERE site = $1', [site]);
      assert.equal(rows[0]!.n, 3000, 'every one sent again, and none dropped by a compaction during the replay');
    } finally {
      await close();
    }
  });

  // Found in review: the position of the last batch was saved with the engine's state at most every 10 s,
  // so a restart right after a batch checked only the replica's older position, which a central restored
  // to between the two still has: the batches after it were lost without a word.
  it('a restart right after a batch still knows its position: a restore to before it is found', async () => {
    const site = 'replay-restart';
    const own = bed.siteDir(site);
    let saved: SavedSyncState | null = null;
    const memory = { load: () => saved, save: (st: SavedSyncState) => { saved = JSON.parse(JSON.stringify(st)) as SavedSyncState; } };
    // Pulls at start only, as while a backlog drains.
    let e = await engineFor(bed.central, site, own, { memory, keepSyncedSeconds: 3600, intervalMs: 60_000 });
    const token = e.token;
    e.engine.start();
    await until('the first pull', async () => e.local.position() > 0, 10_000);
    const replicaAt = e.local.position();
    const lost = await e.buffer.append(Array.from({ length: 5 }, () => observation(site)));
    e.engine.nudge();
    await until('the five applied', async () => (await e.buffer.stats()).applied_total === 5, 10_000);
    await e.close(); // a clean restart (an upgrade), within seconds of the batch

    // Central restored to the replica's position: the five are gone from it.
    await bed.central.db.query('DELETE FROM applied_transaction WHERE site = $1', [site]);
    await bed.central.db.query('DELETE FROM executed_obs_unit WHERE id = ANY($1::uuid[])', [lost.map((t) => (t.steps[0] as { id: string }).id)]);
    await bed.central.db.query('DELETE FROM feed_tx WHERE pos > $1', [replicaAt]);
    await bed.central.db.query('UPDATE feed_position SET pos = $1 WHERE id = 1', [replicaAt]);

    e = await engineFor(bed.central, site, own, { memory, keepSyncedSeconds: 3600, token });
    try {
      await e.buffer.append([observation(site)]);
      e.engine.start();
      await until('all six at central', async () => (await bed.central.db.query('SELECT 1 FROM applied_transaction WHERE site = $1', [site])).rowCount === 6, 10_000);
      const { rows } = await bed.central.db.query<{ seq: string }>('SELECT seq FROM applied_transaction WHERE site = $1 ORDER BY applied_at, seq', [site]);
      assert.deepEqual(rows.map((r) => Number(r.seq)), [1, 2, 3, 4, 5, 6], 'the five sent again, then the new one');
    } finally {
      await e.close();
    }
  });
  // Found by the fault-injection runs (a central restored under load): during the replay, a pull read
  // central's feed again and put central's restored copy of a row over this edge's newer one, whose
  // change was synced (and compacted) but lost at central and not sent again yet: an observation finished
  // here read `running` again, until the replay and a later pull put the finish back.
  it("during a replay, a row central lost a change of keeps this edge's copy", async () => {
    const site = 'replay-keeps-rows';
    const own = bed.siteDir(site);
    let slowPosts = false;
    const slow = (real: CentralClient): CentralClient => ({
      get: real.get.bind(real),
      post: async (...a) => (slowPosts && (await new Promise((r) => setTimeout(r, 1500))), real.post(...a)),
    });
    const { engine, buffer, local, close } = await engineFor(bed.central, site, own, { keepSyncedSeconds: 3600, client: slow, intervalMs: 100 });
    const write = async (txs: NewTransaction[]) => local.applyBuffered(await buffer.append(txs));
    try {
      const start = observation(site);
      const obsId = (start.steps[0] as { id: string }).id;
      const txs0 = [start, ...Array.from({ length: 499 }, () => observation(site))];
      await write(txs0);
      const finish: NewTransaction = { ...observation(site), endpoint: 'PUT /executed_obs_units/{id}/finish',
        steps: [{ step_id: 'finish', op: 'update', table: 'executed_obs_unit', id: obsId, data: { status: 'success', end_time: '2026-01-01T01:00:00.000Z' } }] };
      await write([finish]);
      engine.start();
      await until('all synced and compacted', async () => {
        const st = await buffer.stats();
        return st.applied_total === 501 && st.synced === 0;
      }, 20_000);
      const status = () => local.findRow('executed_obs_unit', obsId)?.status;
      assert.equal(status(), 'success');

      // Central restored to before the finish: the row as it was, its inbox without the finish, its feed
      // back to a position before it (written with triggers off, as a restore writes nothing to the feed).
      const finishedAt = ((await buffer.receipt(finish.transaction_id))!.central_result as { position: number }).position;
      const before = { pos: finishedAt - 1 };
      const c = await bed.central.db.connect();
      try {
        await c.query(`SET session_replication_role = replica`);
        await c.query(`UPDATE executed_obs_unit SET status = 'running', end_time = NULL WHERE id = $1`, [obsId]);
        await c.query('DELETE FROM applied_transaction WHERE site = $1 AND seq = 501', [site]);
      } finally {
        await c.query('RESET session_replication_role');
        c.release();
      }
      slowPosts = true;
      await bed.central.db.query('DELETE FROM feed_tx WHERE pos > $1', [before.pos]);
      await bed.central.db.query('UPDATE feed_position SET pos = $1 WHERE id = 1', [before.pos]);
      // Changes central makes after the restore, to a row this edge has as central's copy and to one it
      // lacks: held during the replay too, and put in place once it is done (found by the fault-injection
      // runs: they were dropped, and the edge kept the older copy for good).
      const otherId = (txs0[1]!.steps[0] as { id: string }).id;
      await bed.central.db.query(`UPDATE executed_obs_unit SET status = 'aborted' WHERE id = $1`, [otherId]);
      const newId = randomUUID();
      await bed.central.db.query(`INSERT INTO executed_obs_unit (id, obs_unit_id, site, status, start_time) VALUES ($1, 1, $2, 'running', now())`, [newId, site]);

      // Batches of 100 at 1.5 s each; pulls come every 5 s while a replay (or a drain) runs.
      await until('a pull during the replay, with the finish not sent again yet', async () => {
        const r = engine.centralReplay();
        return r !== null && r.after_seq > 0 && r.after_seq < 501 && local.position() > 0;
      }, 20_000);
      assert.equal(status(), 'success', "this edge's finish, not central's restored copy");
      await until('the replay to end', async () => engine.centralReplay() === null, 20_000);
      await until("central's changes made during the replay at the edge", async () =>
        local.findRow('executed_obs_unit', otherId)?.status === 'aborted' && local.findRow('executed_obs_unit', newId) !== null, 10_000);
      const { rows: [atCentral] } = await bed.central.db.query<{ status: string }>('SELECT status FROM executed_obs_unit WHERE id = $1', [obsId]);
      assert.equal(atCentral!.status, 'success', 'central has the finish again');
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(status(), 'success');
    } finally {
      await close();
    }
  });
  // Found by the fault-injection runs: transactions synced but not compacted when central went back kept
  // the positions central had answered them with in the history it lost; the restored feed may never
  // reach them again, so they stayed `synced_awaiting_replica` for good. After the replay sent them again,
  // the replay's position stands for theirs.
  it('what the replay sent again is compacted once the replica has central\'s new copy', async () => {
    const site = 'replay-compacts';
    const own = bed.siteDir(site);
    const { memory, state } = replayUnderWay(0, 5);
    const { engine, buffer, close } = await engineFor(bed.central, site, own, { memory, keepSyncedSeconds: 3600 });
    try {
      await buffer.append(Array.from({ length: 5 }, () => observation(site)));
      // Synced before central went back, at positions of the history it lost (far beyond its feed now).
      const at = new Date().toISOString();
      await buffer.settle((await buffer.claim(5, 1e9)).map((t) => ({ seq: t.seq, outcome: 'applied' as const, central_result: { result: 'applied', position: 999_999, at } })));
      engine.start();
      await until('the replay to end', async () => state().replay === null, 10_000);
      await until('them compacted', async () => (await buffer.stats()).synced === 0, 10_000);
    } finally {
      await close();
    }
  });

  // Found in review: a transaction central refused when the replay sent it again was only logged. It had been
  // applied, central lost it, and the edge had it as synced: an acknowledged observation gone from central,
  // seen by nobody who does not read the log, and with no way to send it again.
  it('a synced transaction central refuses when sent again goes back to the dead-letter queue, and a retry sends it', async () => {
    const site = 'replay-refused';
    const own = bed.siteDir(site);
    const { memory, state } = replayUnderWay(0, 3);
    const { engine, buffer, local, close } = await engineFor(bed.central, site, own, { memory, keepSyncedSeconds: 3600 });
    try {
      // Seq 2 names an observation unit central lost when it went back (it no longer has it).
      const lost = 900_000 + Math.floor(Math.random() * 1000);
      const txs = await buffer.append([observation(site), observation(site, lost), observation(site)]);
      await buffer.settle((await buffer.claim(3, 1e9)).map((t) => ({ seq: t.seq, outcome: 'applied' as const })));
      local.noteSynced([1, 2]); // as the engine does before it compacts
      assert.equal(await buffer.compact(2, 3600), 2, 'seqs 1 and 2 compacted, kept whole; 3 still held');
      engine.start();
      await until('the replay to end', async () => state().replay === null, 10_000);
      const applied = async () => (await bed.central.db.query<{ seq: string }>(
        'SELECT seq FROM applied_transaction WHERE site = $1 ORDER BY applied_at, seq', [site])).rows.map((r) => Number(r.seq));
      assert.deepEqual(await applied(), [1, 3], 'central took the others');
      const refused = await buffer.get(txs[1]!.transaction_id);
      assert.equal(refused?.state, 'failed', 'the refused one is failed again, in the dead-letter queue');
      assert.match(refused!.last_error!.message, /obs_unit|not found|does not exist/i, refused!.last_error!.message);
      const stats = await buffer.stats();
      assert.equal(stats.failed, 1);
      assert.equal(stats.applied_total, 2, 'applied no more');
      assert.deepEqual((await buffer.verify()).problems, []);
      assert.equal(local.getMeta('synced_seqs'), '[[1,1]]', 'no longer recorded as at central: a buffer lost later counts it lost');

      // The operator gives central back what it lost, and retries: it is sent, and applied, after the others.
      const { rows: prog } = await bed.central.db.query<{ id: number }>('SELECT id FROM observing_program ORDER BY id LIMIT 1');
      await bed.central.db.query('INSERT INTO obs_unit (id, name, observing_program_id) VALUES ($1, $2, $3)', [lost, `restored-${lost}`, prog[0]!.id]);
      assert.deepEqual((await buffer.retry(txs[1]!.transaction_id, 'operator')).released, [2]);
      await until('the retried one applied', async () => (await buffer.stats()).applied_total === 3, 10_000);
      assert.deepEqual(await applied(), [1, 3, 2]);
      assert.deepEqual((await buffer.verify()).problems, []);
    } finally {
      await close();
    }
  });

  // Found in review: the replay counted a batch's answers before the buffer took its refusals; when that
  // failed (a busy storage, a Redis timeout), the batch was sent again and counted twice.
  it("a replay batch whose refusals the buffer could not take is sent again and counted once", async () => {
    const { memory, state, replays } = replayUnderWay(0, 3);
    const site = 'replay-count';
    const { engine, buffer, close } = await engineFor(bed.central, site, bed.siteDir(site), { memory, keepSyncedSeconds: 3600 });
    try {
      const txs = await buffer.append([observation(site), observation(site, 900_999), observation(site)]);
      await buffer.settle((await buffer.claim(3, 1e9)).map((t) => ({ seq: t.seq, outcome: 'applied' as const })));
      const real = buffer.failSynced.bind(buffer);
      let calls = 0;
      buffer.failSynced = async (r) => {
        if (++calls === 1) throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
        return real(r);
      };
      engine.start();
      await until('the replay to end', async () => state().replay === null, 20_000);
      assert.equal(calls, 2, 'the buffer refused once, then took them');
      assert.equal((await buffer.get(txs[1]!.transaction_id))?.state, 'failed');
      const last = replays.filter((r) => r !== null).at(-1)!;
      // Sent twice, central applied the two it took the first time and answered `duplicate` the second.
      assert.deepEqual([last.applied + last.duplicate, last.rejected], [2, 1], `each counted once: ${JSON.stringify(last)}`);
    } finally {
      await close();
    }
  });

  // Found by the fault-injection runs: central restored a second time, to a backup taken during the replay.
  // Replay batches carried no position check, so the replay went on from where it was, past what central
  // had lost again, and the newer writes followed ahead of them.
  it('central going back again during a replay is found by the replay, which starts again', async () => {
    const site = 'replay-twice';
    const own = bed.siteDir(site);
    let slowPosts = false;
    const slow = (real: CentralClient): CentralClient => ({
      get: real.get.bind(real),
      post: async (...a) => (slowPosts && (await new Promise((r) => setTimeout(r, 700))), real.post(...a)),
    });
    const { engine, buffer, local, close } = await engineFor(bed.central, site, own, { keepSyncedSeconds: 3600, client: slow, intervalMs: 100 });
    const txs = await buffer.append(Array.from({ length: 300 }, () => observation(site)));
    local.applyBuffered(txs);
    const ids = txs.map((t) => (t.steps[0] as { id: string }).id);
    /** A restore: central without the site's transactions after seq `kept`, its feed back to `pos`. */
    const restore = async (kept: number, pos: number) => {
      const c = await bed.central.db.connect();
      try {
        await c.query('SET session_replication_role = replica');
        await c.query('DELETE FROM applied_transaction WHERE site = $1 AND seq > $2', [site, kept]);
        await c.query('DELETE FROM executed_obs_unit WHERE id = ANY($1::uuid[])', [ids.slice(kept)]);
      } finally {
        await c.query('RESET session_replication_role');
        c.release();
      }
      await bed.central.db.query('DELETE FROM feed_tx WHERE pos > $1', [pos]);
      await bed.central.db.query('UPDATE feed_position SET pos = $1 WHERE id = 1', [pos]);
    };
    try {
      engine.start();
      await until('all synced and compacted', async () => {
        const st = await buffer.stats();
        return st.applied_total === 300 && st.synced === 0;
      }, 20_000);
      const positionOf = async (seq: number) => ((await buffer.receipt(txs[seq - 1]!.transaction_id))!.central_result as { position: number }).position;
      slowPosts = true;
      await restore(150, (await positionOf(151)) - 1);
      await until('the replay to have sent seqs 1–200', async () => (engine.centralReplay()?.after_seq ?? 0) >= 200, 20_000);
      const { rows: [head] } = await bed.central.db.query<{ pos: string }>('SELECT pos FROM feed_position WHERE id = 1');
      // Restored again, to a backup taken after the replay's first batch: seqs 151–200 sent again are lost again.
      await restore(150, Number(head!.pos) - 1);
      await until('the replay to end', async () => engine.centralReplay() === null && (await bed.central.db.query(
        'SELECT 1 FROM applied_transaction WHERE site = $1', [site])).rowCount === 300, 30_000);
      const { rows } = await bed.central.db.query<{ seq: string; n: number }>(
        'SELECT seq, count(*)::int AS n FROM applied_transaction WHERE site = $1 GROUP BY seq ORDER BY seq', [site]);
      assert.deepEqual(rows.map((r) => Number(r.seq)), Array.from({ length: 300 }, (_, i) => i + 1), 'every one at central, once');
    } finally {
      await close();
    }
  });
});
