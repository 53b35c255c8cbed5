// SPEC §2.1 proven on a real process: an edge under concurrent load is
// SIGKILLed at random moments and restarted on the same data; every write it
// acknowledged is still there, and the buffer's ledger verifies.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { edgeDataDir, localClient, spawnEdge } from '../support/edge.js';
import { runCli } from '../support/cli.js';
import { until } from '../support/daemon.js';
import { redisUrl } from '../support/services.js';
import { openBuffer } from '../../src/edge/buffer/open.js';
import { loadConfig } from '../../src/lib/config.js';

const ROUNDS = 20;
const CLIENTS = 32;
const BODY = JSON.stringify({
  obs_data: { obs_unit_id: 1, start_time: '2025-01-01T00:00:00Z', package_name: 'kill-test', instrument_module_configuration_id: 1 },
  raw_files: ['a', 'b', 'c'].map((n) => ({ name: `${n}.fits`, path: `/data/${n}.fits`, size: 1000, checksum: n, file_type: 'fits' })),
});

/** Deterministic pseudo-random delays, so a failure can be replayed. */
function rng(seed: number) {
  return () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
}

async function loadUntilKilled(url: string, token: string, acked: Set<string>, stop: { v: boolean }) {
  const one = async () => {
    while (!stop.v) {
      try {
        const res = await fetch(`${url}/api/demo/create-observation`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: BODY,
        });
        const body = (await res.json()) as { transaction_id?: string };
        if (res.status === 201 && body.transaction_id) acked.add(body.transaction_id);
        else if (res.status >= 500) throw new Error(`unexpected ${res.status}`);
      } catch {
        return; // the daemon died under us: this request was never acknowledged
      }
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, one));
}

function killScenario(name: string, env: () => Record<string, string>, cleanup: () => Promise<void>) {
  it(`${name}: ${ROUNDS} SIGKILLs under ${CLIENTS} concurrent clients lose no acknowledged write`, async (t) => {
    const dataDir = edgeDataDir('kill');
    const base = { DATA_DIR: dataDir, ...env() };
    const admin = await localClient(dataDir, 'http://unused', ['admin'], 'kill-admin');
    const acked = new Set<string>();
    const random = rng(7);
    let ackedBeforeLastKill = 0;
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const edge = await spawnEdge(base);
        // What the previous incarnation acknowledged is readable after the restart.
        if (round > 0) {
          const sample = [...acked].slice(-5);
          for (const id of sample) {
            const r = await fetch(`${edge.url}/api/transactions/${id}`, { headers: { authorization: `Bearer ${admin.token}` } });
            assert.equal(r.status, 200, `transaction ${id} acknowledged before kill ${round} is still there`);
          }
        }
        const stop = { v: false };
        const load = loadUntilKilled(edge.url, admin.token!, acked, stop);
        // Killed at a random moment once it is taking writes (on a loaded machine the first can take longer
        // than the random delay), so every round has acknowledged writes to lose.
        await until(`round ${round}: a first write acknowledged`, async () => acked.size > ackedBeforeLastKill, 20_000);
        await new Promise((r) => setTimeout(r, 150 + random() * 450));
        await edge.kill('SIGKILL');
        stop.v = true;
        await load;
        assert.ok(acked.size > ackedBeforeLastKill, `round ${round} acknowledged some writes before the kill`);
        ackedBeforeLastKill = acked.size;
      }

      const verify = await runCli(['buffer', 'verify'], { SITE_TYPE: 'secondary', ...base });
      assert.equal(verify.code, 0, `opsdb buffer verify: ${verify.stdout}${verify.stderr}`);
      const { buffer } = await openBuffer(loadConfig({ env: {}, overrides: { SITE_TYPE: 'secondary', ...base } }));
      try {
        const missing: string[] = [];
        for (const id of acked) if (!(await buffer.get(id))) missing.push(id);
        assert.deepEqual(missing, [], `${missing.length} of ${acked.size} acknowledged transactions were lost`);
        const s = await buffer.stats();
        assert.ok(s.accepted_total >= acked.size, 'the buffer holds at least every acknowledged transaction');
        assert.equal(s.in_flight, 0);
        t.diagnostic(`${acked.size} acknowledged, ${s.accepted_total} accepted, none lost over ${ROUNDS} kills`);
      } finally {
        await buffer.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      await cleanup();
    }
  });
}

describe('edge crash safety (real processes, SIGKILL)', { timeout: 600_000 }, () => {
  killScenario('SQLite buffer', () => ({ BUFFER_BACKEND: 'sqlite' }), async () => {});

  const site = `kill-${randomBytes(4).toString('hex')}`;
  killScenario(
    'Redis buffer (Redis stays up)',
    () => ({ BUFFER_BACKEND: 'redis', REDIS_URL: redisUrl(), SITE_NAME: site }),
    async () => {
      const { Redis } = await import('ioredis');
      const r = new Redis(redisUrl());
      const keys = await r.keys(`opsdb:${site}:*`);
      if (keys.length) await r.del(...keys);
      r.disconnect();
    },
  );
});
