// Found in review: a central token revoked at the edge (what docs/edge.md tells an operator to do with
// a token thought stolen while the link is down) was revoked in the same row the change feed writes:
// the next copy of that row from central (or the whole feed, read again after central went back to a
// backup) made it work again. A revoked token now stays revoked at the edge.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCentralAndEdge } from '../support/edge.js';
import { client } from '../support/http.js';
import { until } from '../support/daemon.js';

describe('a central token revoked at the edge', () => {
  const stops: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
  });

  it('stays revoked when the edge reads central\'s feed again', { timeout: 60_000 }, async () => {
    const { central, edge, stop } = await startCentralAndEdge('revoked-stays', 'rvs');
    stops.push(stop);
    const leaked = await central.as(['admin'], 'leaked');
    const atEdge = client(edge.url, leaked.token);
    await until('the token works at the edge', async () => (await atEdge.get('/auth/me')).status === 200, 20_000);
    const { rows } = await central.db.query('SELECT id FROM api_token WHERE user_id = $1', [leaked.userId]);
    assert.equal((await edge.admin.del(`/api/tokens/${rows[0].id}`)).status, 200);
    assert.equal((await atEdge.get('/auth/me')).status, 401);

    // Central went back to a backup: the edge reads the whole feed again, this token's row included.
    const before = (await edge.anonymous.get('/buffer-stats')).body.last_sync_at;
    await central.db.query('UPDATE feed_position SET pos = 1');
    await until('the feed read again', async () => {
      const s = (await edge.anonymous.get('/buffer-stats')).body;
      return s.last_sync_at !== before && edge.running.local.position() > 1 ? s : null;
    }, 20_000);
    assert.equal((edge.running.local.db.prepare('SELECT is_active FROM api_token WHERE id = ?').get(rows[0].id) as { is_active: number }).is_active, 0);
    assert.equal((await atEdge.get('/auth/me')).status, 401, 'still revoked');
    assert.equal((await edge.admin.get('/auth/me')).status, 200, 'the others as they were');
  });
});
