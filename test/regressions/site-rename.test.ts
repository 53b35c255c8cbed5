// Found by an adversarial review: an edge holding unsynced writes, restarted on the same DATA_DIR
// under another SITE_NAME, hid them. On Redis its buffer (keys named after the site) looked empty:
// /buffer-stats said 0 of everything, /health said healthy, and the offline writes read as `synced`
// though central never got them. On SQLite they stayed visible but central refused them (another
// site's transactions), and the engine blamed the site token. Now the DATA_DIR records its site at
// the first start; `opsdb serve` refuses another name, and so does `opsdb buffer` on Redis, where the
// name selects the buffer (SPEC §2.5, §2.7).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnEdge, edgeDataDir, localClient } from '../support/edge.js';
import { runCli } from '../support/cli.js';
import { redisUrl } from '../support/services.js';

for (const backend of ['sqlite', 'redis'] as const) {
  describe(`an edge restarted under another SITE_NAME (${backend} buffer)`, () => {
    it('refuses to start, says why, and loses nothing', async () => {
      const site = `old-${randomBytes(4).toString('hex')}`;
      const dataDir = edgeDataDir(`rename-${backend}`);
      const env = { DATA_DIR: dataDir, SITE_NAME: site, ...(backend === 'redis' ? { BUFFER_BACKEND: 'redis', REDIS_URL: redisUrl() } : {}) };
      const token = (await localClient(dataDir, 'http://unused', ['observer'], 'w')).token!;
      const first = await spawnEdge(env);
      const write = async (url: string) => {
        const r = await fetch(`${url}/executed_obs_units/start`, {
          method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ obs_unit_id: 1 }),
        });
        assert.equal(r.status, 201);
        return ((await r.json()) as { id: string }).id;
      };
      const ids = [await write(first.url), await write(first.url)];
      assert.equal(await first.kill('SIGTERM'), 0);

      const renamed = { ...env, SITE_NAME: 'new-name' };
      const attempt = await spawnEdge(renamed).then((e) => e, (err: Error) => err);
      if (!(attempt instanceof Error)) {
        await attempt.kill('SIGKILL');
        assert.fail('the edge started under another SITE_NAME');
      }
      assert.match(attempt.message, /exited with 1 before listening/);
      assert.match(attempt.message, new RegExp(`DATA_DIR \\S+ belongs to site \\\\?"${site}\\\\?".*SITE_NAME is \\\\?"new-name\\\\?"`));
      const cli = await runCli(['buffer', 'stats'], { SITE_TYPE: 'secondary', ...renamed });
      if (backend === 'redis') {
        // Its keys are found by the name: under another one the buffer would look empty.
        assert.equal(cli.code, 1, cli.stdout + cli.stderr);
        assert.match(cli.stderr, new RegExp(`belongs to site "${site}"`));
      } else {
        // The SQLite buffer is its file: the CLI shows it whatever SITE_NAME says.
        assert.equal(cli.code, 0, cli.stdout + cli.stderr);
        assert.equal(JSON.parse(cli.stdout).pending_transactions, 2);
      }

      // Under its own name again: both writes still pending and readable as such.
      const again = await spawnEdge(env);
      try {
        const stats = (await (await fetch(`${again.url}/buffer-stats`)).json()) as { pending_transactions: number; accepted_total: number };
        assert.equal(stats.pending_transactions, 2);
        assert.equal(stats.accepted_total, 2);
        for (const id of ids) {
          const r = await fetch(`${again.url}/executed_obs_units/${id}`, { headers: { authorization: `Bearer ${token}` } });
          assert.equal(((await r.json()) as { sync_status: string }).sync_status, 'pending');
        }
      } finally {
        await again.kill('SIGTERM');
      }
    });
  });
}
