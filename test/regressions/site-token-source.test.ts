// Found by the docs audit: a site token set with PUT /api/sync/site-token is kept in local.db and wins
// over SITE_TOKEN. When central refused it, the edge logged "set a valid SITE_TOKEN"; the operator did,
// restarted, and the edge stayed paused on the stored token, with nothing to clear it. Now the message
// names the token's source and the fix, DELETE /api/sync/site-token forgets the stored one, and a
// SITE_TOKEN changed since the PUT is the newer of the two and is used. A real central, real edge processes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral } from '../support/central.js';
import { edgeDataDir, localClient, spawnEdge, type EdgeProcess } from '../support/edge.js';
import { client } from '../support/http.js';
import { until } from '../support/daemon.js';

describe('the site token the edge uses', () => {
  it('says where a refused token came from; DELETE forgets a PUT one; a changed SITE_TOKEN wins', { timeout: 90_000 }, async () => {
    const central = await startTestCentral('token-source');
    const first = (await central.admin.post('/api/sites/', { body: { name: 'toksrc' } })).body.token as string;
    const userId = (await central.accounts.userIdByName('site-toksrc'))!;
    const second = (await central.accounts.createToken(userId, { name: 'rotated', scopes: [] })).token;
    const dataDir = edgeDataDir('token-source');
    const admin = (await localClient(dataDir, 'http://unused', ['admin'], 'tok-admin')).token!;
    const env = (token: string) => ({ DATA_DIR: dataDir, SITE_NAME: 'toksrc', CENTRAL_URL: central.url, SITE_TOKEN: token, SYNC_INTERVAL_MS: '50', RETRY_BASE_MS: '20', RETRY_MAX_MS: '200' });
    const stats = async (e: EdgeProcess) => (await client(e.url).get('/buffer-stats')).body;
    const logs = (e: EdgeProcess) => e.lines.map((l) => JSON.parse(l) as { msg: string; level: number; token_source?: string });
    let edge = await spawnEdge(env(first));
    try {
      await until('the engine running', async () => (await stats(edge)).last_sync_at !== null, 10_000);
      const api = client(edge.url, admin);
      assert.equal((await api.put('/api/sync/site-token', { body: { token: 'ops_api_token_' + 'x'.repeat(43) } })).status, 204);
      await until('paused on the stored token', async () => (await stats(edge)).background_processor === 'paused', 10_000);
      const paused = logs(edge).find((l) => l.msg.startsWith('sync paused'));
      assert.ok(paused);
      assert.equal(paused.msg, 'sync paused: central refused the site token (the token set with PUT /api/sync/site-token, kept in local.db); PUT a valid one to /api/sync/site-token, or set a new SITE_TOKEN and restart');
      // A refused token is a failed exchange in /metrics too (it was not counted at all).
      const metrics = (await api.get('/metrics')).text;
      assert.match(metrics, /^opsdb_sync_errors_total\{kind="http_401"\} 1$/m);

      // Forget it: SITE_TOKEN (still valid) is used again, at once.
      assert.equal((await api.del('/api/sync/site-token')).status, 204);
      await until('running again on SITE_TOKEN', async () => (await stats(edge)).background_processor === 'running', 10_000);

      // The stored one wins while SITE_TOKEN is unchanged; once SITE_TOKEN changes, the new SITE_TOKEN wins.
      assert.equal((await api.put('/api/sync/site-token', { body: { token: 'ops_api_token_' + 'y'.repeat(43) } })).status, 204);
      await until('paused again', async () => (await stats(edge)).background_processor === 'paused', 10_000);
      await edge.kill('SIGTERM');
      edge = await spawnEdge(env(first));
      await until('paused: SITE_TOKEN did not change', async () => (await stats(edge)).background_processor === 'paused', 10_000);
      await edge.kill('SIGTERM');
      // A start without SITE_TOKEN (standalone, during an outage) keeps the stored token: nothing newer came.
      edge = await spawnEdge({ DATA_DIR: dataDir, SITE_NAME: 'toksrc' });
      await edge.kill('SIGTERM');
      assert.ok(!logs(edge).some((l) => l.msg.startsWith('SITE_TOKEN changed')));
      edge = await spawnEdge(env(first));
      await until('still paused on the stored token', async () => (await stats(edge)).background_processor === 'paused', 10_000);
      await edge.kill('SIGTERM');
      edge = await spawnEdge(env(second));
      assert.ok(logs(edge).some((l) => l.level === 40 && l.msg.startsWith('SITE_TOKEN changed since a site token was set with PUT')));
      const w = await client(edge.url, admin).post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
      assert.equal(w.status, 201, w.text);
      await until('the write at central, sent with the new SITE_TOKEN', async () =>
        (await central.db.query('SELECT 1 FROM applied_transaction WHERE transaction_id = $1', [w.body.transaction_id])).rowCount === 1, 15_000);
      assert.equal((await stats(edge)).background_processor, 'running');
    } finally {
      await edge.kill('SIGTERM');
      await central.stop();
    }
  });
});
