import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readdirSync } from 'node:fs';
import Database from 'better-sqlite3';
import { startTestEdge, edgeDataDir } from '../support/edge.js';
import { runCli } from '../support/cli.js';
import { client } from '../support/http.js';

const err = (message: string) => ({ code: 'validation_error', message, at: new Date().toISOString() });

describe('opsdb buffer … on a stopped edge (SQLite)', () => {
  let env: Record<string, string>;
  let ids: { parent: string; child: string; other: string };

  before(async () => {
    const e = await startTestEdge('cli-buffer');
    env = { SITE_TYPE: 'secondary', DATA_DIR: e.dataDir };
    const obs = (await e.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).body;
    const fin = (await e.admin.put(`/executed_obs_units/${obs.id}/finish`, { body: { status: 'success' } })).body;
    const other = (await e.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 2 } })).body;
    ids = { parent: obs.transaction_id, child: fin.transaction_id, other: other.transaction_id };
    const batch = await e.running.buffer.claim(1, 1e9);
    await e.running.buffer.settle([{ seq: batch[0]!.seq, outcome: 'rejected', error: err('obs_unit 1 is retired') }]);
    await e.stop();
  });

  it('stats prints the ledger as JSON', async () => {
    const r = await runCli(['buffer', 'stats'], env);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.accepted_total, 3);
    assert.equal(s.failed_transactions, 1);
    assert.equal(s.blocked_transactions, 1);
    assert.equal(s.pending_transactions, 1);
    assert.equal(s.backend, 'sqlite');
  });

  it('ls lists by state; show prints one transaction with its steps and error', async () => {
    const failed = await runCli(['buffer', 'ls', '--state', 'failed'], env);
    assert.equal(failed.code, 0, failed.stderr);
    assert.match(failed.stdout, new RegExp(ids.parent));
    assert.match(failed.stdout, /obs_unit 1 is retired/);
    assert.doesNotMatch(failed.stdout, new RegExp(ids.other));
    const all = JSON.parse((await runCli(['buffer', 'ls', '--json'], env)).stdout);
    assert.deepEqual(all.map((t: { transaction_id: string }) => t.transaction_id), [ids.parent, ids.child, ids.other]);
    const show = await runCli(['buffer', 'show', ids.child], env);
    const t = JSON.parse(show.stdout);
    assert.equal(t.state, 'blocked');
    assert.equal(t.steps[0].op, 'update');
    assert.equal((await runCli(['buffer', 'ls', '--state', 'bogus'], env)).code, 2);
    assert.equal((await runCli(['buffer', 'show', '00000000-0000-4000-8000-000000000000'], env)).code, 1);
  });

  it('retry releases the failed one and its blocked chain; discard needs a reason and keeps an audit', async () => {
    const retry = await runCli(['buffer', 'retry', ids.parent], env);
    assert.equal(retry.code, 0, retry.stderr);
    assert.match(retry.stdout, /released 2 transaction/);
    const again = await runCli(['buffer', 'retry', ids.parent], env);
    assert.equal(again.code, 1, 'nothing to retry now');
    assert.match(again.stderr, /is pending; only failed or blocked ones can be retried or discarded/);
    const unknown = await runCli(['buffer', 'retry', '01a21840-0000-7001-acea-c85553b543e9'], env);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no transaction 01a21840-0000-7001-acea-c85553b543e9 in the buffer/);
    const junk = await runCli(['buffer', 'discard', 'not-an-id'], env);
    assert.equal(junk.code, 2);
    assert.match(junk.stderr, /"not-an-id" is not a transaction id/);
    assert.equal((await runCli(['buffer', 'discard', ids.other], env)).code, 1, 'a pending one cannot be discarded, reason or not');
    const d = await runCli(['buffer', 'discard', ids.other, '--reason', 'pending ones cannot be discarded'], env);
    assert.equal(d.code, 1);
    const rf = await runCli(['buffer', 'retry-failed'], env);
    assert.equal(rf.code, 0);
    assert.match(rf.stdout, /released 0/);
    const audit = await runCli(['buffer', 'audit'], env);
    assert.equal(audit.code, 0, audit.stderr);
    assert.match(audit.stdout, new RegExp(`retry\\s+${ids.parent}\\s+by cli:`));
  });

  it('verify passes on a sound buffer and fails, naming the problem, on a broken ledger', async () => {
    const ok = await runCli(['buffer', 'verify'], env);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /accepted 3 = applied 0 \+ pending 3/);
    const db = new Database(join(env.DATA_DIR!, 'buffer.db'));
    db.prepare(`UPDATE counter SET value = value + 1 WHERE name = 'accepted_total'`).run();
    db.close();
    const bad = await runCli(['buffer', 'verify'], env);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /PROBLEM: ledger/);
  });

  it('refuses a DATA_DIR where no edge has run, and creates nothing there', async () => {
    const empty = edgeDataDir('cli-buffer-none');
    for (const verb of [['wait-empty'], ['stats'], ['verify'], ['ls']]) {
      const r = await runCli(['buffer', ...verb], { SITE_TYPE: 'secondary', DATA_DIR: empty });
      assert.equal(r.code, 1, `${verb.join(' ')}: ${r.stdout}`);
      assert.match(r.stderr, new RegExp(`no edge has run with DATA_DIR=${empty.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      assert.doesNotMatch(r.stdout, /empty: everything accepted/);
    }
    assert.deepEqual(readdirSync(empty), [], 'no buffer was made');
  });

  it('refuses at a central (there is no buffer there)', async () => {
    const r = await runCli(['buffer', 'stats'], { SITE_TYPE: 'main', DATABASE_URL: 'postgres://x@127.0.0.1:1/x' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /only at an edge/);
  });
});

describe('opsdb buffer wait-empty with only blocked transactions left', () => {
  it('points to the list that holds them; retry and retry-failed say why they stay blocked', async () => {
    const e = await startTestEdge('cli-wait-blocked');
    const obs = (await e.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).body;
    const fin = (await e.admin.put(`/executed_obs_units/${obs.id}/finish`, { body: { status: 'success' } })).body;
    const [parent] = await e.running.buffer.claim(1, 1e9);
    await e.running.buffer.settle([{ seq: parent!.seq, outcome: 'rejected', error: err('obs_unit 1 is retired') }]);
    await e.running.buffer.discard(obs.transaction_id, 'test', 'the finish stays blocked');
    await e.stop();
    const r = await runCli(['buffer', 'wait-empty', '--timeout', '5'], { SITE_TYPE: 'secondary', DATA_DIR: e.dataDir });
    assert.equal(r.code, 1);
    assert.match(r.stdout, /drained, but 0 failed and 1 blocked transaction\(s\) need an operator: opsdb buffer ls --state blocked$/m);
    const env = { SITE_TYPE: 'secondary', DATA_DIR: e.dataDir };
    const retry = await runCli(['buffer', 'retry', fin.transaction_id], env);
    assert.equal(retry.code, 1, retry.stdout);
    assert.match(retry.stderr, new RegExp(`needs transaction ${obs.transaction_id} \\(seq 1\\), which was discarded: .*discard it too`));
    const all = await runCli(['buffer', 'retry-failed'], env);
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /^released 0 transaction\(s\) for sending\nleft 1 blocked: each needs a discarded transaction/);
    assert.match(all.stdout, new RegExp(`seq 2  ${fin.transaction_id}  needs seq 1 \\(${obs.transaction_id}\\), discarded`));
    const ls = await runCli(['buffer', 'ls', '--state', 'blocked', '--json'], env);
    assert.deepEqual(JSON.parse(ls.stdout).map((t: { transaction_id: string }) => t.transaction_id), [fin.transaction_id], 'still blocked');
  });
});

describe('accounts made at an edge with the CLI', () => {
  it('work with no central at all', async () => {
    const dataDir = edgeDataDir('cli-accounts');
    const env = { SITE_TYPE: 'secondary', DATA_DIR: dataDir };
    const add = await runCli(['user', 'add', 'night-operator', '--role', 'observer'], env);
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /local user night-operator \(id -1\)/);
    assert.ok(add.stdout.includes(`in ${join(dataDir, 'local.db')}`), `names where the user is: ${add.stdout}`);
    const site = await runCli(['user', 'add', 'fake-site', '--role', 'site'], env);
    assert.equal(site.code, 2);
    assert.match(site.stderr, /a local user at an edge cannot have it/);
    const siteName = await runCli(['user', 'add', 'Site-observatory', '--role', 'admin'], env);
    assert.equal(siteName.code, 2, 'a site account\'s name is kept at an edge too: central\'s would arrive with the feed');
    assert.match(siteName.stderr, /user names starting with "site-" are kept for site accounts/);
    const tok = await runCli(['token', 'create', '--user', 'night-operator'], env);
    assert.equal(tok.code, 0, tok.stderr);
    const e = await startTestEdge('cli-accounts', { dataDir, seed: false });
    try {
      const c = client(e.url, tok.stdout.trim());
      const me = await c.get('/auth/me');
      assert.equal(me.status, 200);
      assert.equal(me.body.username, 'night-operator');
      const w = await c.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
      assert.equal(w.status, 201);
      assert.equal((await c.get('/api/buffer/failed')).status, 403, 'an observer is not an admin');
    } finally {
      await e.stop();
    }
  });
});
