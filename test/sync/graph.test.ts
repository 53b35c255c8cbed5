// Property-style: random graphs of dependent writes, some poisoned, pushed by
// the real engine to a real central. Poisoned ones fail with central's
// reason, their dependents are held (never sent), everything else applies in
// seq order; after the cause is fixed, a retry releases every chain in order.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral } from '../support/central.js';
import { startTestEdge, type TestEdge } from '../support/edge.js';

const FILE = { name: 'f.fits', path: '/d/f.fits', size: 1, checksum: 'c', file_type: 'fits' };

function rng(seed: number) {
  // High bits: an LCG's low bits repeat with a short period.
  return (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), Math.floor((seed / 2 ** 31) * n));
}

interface Op { tx: string; parents: string[]; poison: boolean }

async function writeGraph(edge: TestEdge, seed: number, n: number): Promise<Op[]> {
  const rand = rng(seed);
  const ops: Op[] = [];
  const obs: { id: string; tx: string; pkg?: { id: string; tx: string } }[] = [];
  const lastWriter = new Map<string, string>();
  for (let i = 0; i < n; i++) {
    const kind = obs.length === 0 ? 0 : rand(4);
    if (kind === 0) {
      const poison = rand(6) === 0;
      const r = await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: poison ? 999 : 1 + rand(3) } });
      assert.equal(r.status, 201, r.text);
      obs.push({ id: r.body.id, tx: r.body.transaction_id });
      lastWriter.set(r.body.id, r.body.transaction_id);
      ops.push({ tx: r.body.transaction_id, parents: [], poison });
      continue;
    }
    const o = obs[rand(obs.length)]!;
    if (kind === 1) {
      const r = await edge.admin.put(`/executed_obs_units/${o.id}/finish`, { body: { status: 'success' } });
      assert.equal(r.status, 202, r.text);
      ops.push({ tx: r.body.transaction_id, parents: [lastWriter.get(o.id)!], poison: false });
      lastWriter.set(o.id, r.body.transaction_id);
    } else if (kind === 2 && !o.pkg) {
      const r = await edge.admin.post('/raw_data_package/', { body: { name: `p${i}`, executed_obs_unit_id: o.id } });
      assert.equal(r.status, 201, r.text);
      o.pkg = { id: r.body.id, tx: r.body.transaction_id };
      lastWriter.set(r.body.id, r.body.transaction_id);
      ops.push({ tx: r.body.transaction_id, parents: [lastWriter.get(o.id)!], poison: false });
    } else {
      const body = { executed_obs_unit_id: o.id, ...(o.pkg ? { raw_data_package_id: o.pkg.id } : {}), files: [FILE, FILE] };
      const r = await edge.admin.post('/raw_data_files/bulk', { body });
      assert.equal(r.status, 201, r.text);
      ops.push({ tx: r.body.transaction_id, parents: [lastWriter.get(o.id)!, ...(o.pkg ? [lastWriter.get(o.pkg.id)!] : [])], poison: false });
    }
  }
  return ops;
}

async function drained(edge: TestEdge, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = (await edge.anonymous.get('/buffer-stats')).body;
    if (s.pending_transactions === 0 && s.in_flight_transactions === 0) return s;
    if (Date.now() > deadline) assert.fail(`not drained: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('sync over random dependency graphs (real engine, real central)', { timeout: 180_000 }, () => {
  for (const seed of [11, 23, 37]) {
    it(`seed ${seed}: poison fails, dependents wait, the rest applies in order; retry releases in order`, async () => {
      const central = await startTestCentral(`graph${seed}`);
      const site = `graph${seed}`;
      const token = (await central.admin.post('/api/sites/', { body: { name: site } })).body.token;
      const offline = await startTestEdge(site, { seed: false, overrides: { SITE_NAME: site } });
      const ops = await writeGraph(offline, seed, 80);
      await offline.stop();

      const edge = await startTestEdge(site, {
        dataDir: offline.dataDir, seed: false,
        overrides: { SITE_NAME: site, CENTRAL_URL: central.url, SITE_TOKEN: token, SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 200, SYNC_BATCH_SIZE: 7 },
      });
      try {
        const s = await drained(edge);
        const tainted = new Set(ops.filter((o) => o.poison).map((o) => o.tx));
        for (const o of ops) if (o.parents.some((p) => tainted.has(p))) tainted.add(o.tx);
        assert.ok(ops.some((o) => o.poison) && tainted.size > ops.filter((o) => o.poison).length, 'the graph has poison with dependents');
        /** Held or already compacted (then from its receipt), every transaction still answers. */
        const stateOf = async (tx: string) => {
          const r = await edge.admin.get(`/api/transactions/${tx}`);
          assert.equal(r.status, 200, `GET /api/transactions/${tx}: ${r.text}`);
          return r.body;
        };
        const applied = await central.db.query(`SELECT transaction_id::text AS id, seq FROM applied_transaction WHERE site = $1 ORDER BY applied_at, seq`, [site]);
        const atCentral = new Set(applied.rows.map((r) => r.id));
        for (const o of ops) {
          const t = await stateOf(o.tx);
          if (o.poison) {
            assert.equal(t.state, 'failed', `poisoned ${o.tx}`);
            assert.equal(t.last_error.code, 'reference_not_found');
          } else if (tainted.has(o.tx)) {
            assert.equal(t.state, 'blocked', `dependent of a poisoned write ${o.tx}`);
          } else {
            assert.equal(t.state, 'synced', `unrelated ${o.tx} is synced`);
            assert.ok(atCentral.has(o.tx), `unrelated ${o.tx} is at central`);
          }
          if (tainted.has(o.tx)) assert.ok(!atCentral.has(o.tx), `${o.tx} never reached central`);
        }
        const seqs = applied.rows.map((r) => Number(r.seq));
        assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'applied in seq order');
        assert.equal(s.failed_transactions, ops.filter((o) => o.poison).length);
        assert.equal(s.accepted_total, s.applied_total + s.pending_transactions + s.in_flight_transactions + s.blocked_transactions + s.failed_transactions + s.discarded_total);

        // Fix the cause at central, then retry: each chain applies, parents first.
        await central.db.query(`INSERT INTO obs_unit (id, name, observing_program_id) VALUES (999, 'late unit', 1)`);
        assert.equal((await edge.admin.post('/api/buffer/retry-failed')).status, 200);
        const after = await drained(edge);
        assert.equal(after.failed_transactions + after.blocked_transactions, 0, JSON.stringify(after));
        const final = await central.db.query(`SELECT transaction_id::text AS id FROM applied_transaction WHERE site = $1 ORDER BY applied_at, seq`, [site]);
        const position = new Map(final.rows.map((r, i) => [r.id as string, i]));
        assert.equal(position.size, ops.length, 'every write is at central exactly once');
        for (const o of ops) for (const p of o.parents) assert.ok(position.get(p)! < position.get(o.tx)!, `${p} before ${o.tx}`);
        const dup = await central.db.query(`SELECT count(*)::int AS n FROM executed_obs_unit WHERE site = $1`, [site]);
        assert.equal(dup.rows[0].n, ops.filter((o) => o.parents.length === 0).length);
      } finally {
        await edge.stop();
        await central.stop();
      }
    });
  }
});
