// Found in review: a token made at the edge took its negative id (one below the lowest) in one statement
// and was inserted in another, so `opsdb token create` and the running daemon, two connections to
// local.db, could take the same id; the loser got a primary-key error (a 500 at the HTTP API). The id is
// now picked and inserted in one write transaction. Four threads, each with its own connection to one
// real local.db, as the CLI and the daemon are, make tokens as fast as they can.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { LocalStore } from '../../src/edge/local-store.js';
import { LocalAccounts } from '../../src/edge/local-accounts.js';

const THREADS = 4;
const EACH = 300;

// Each thread: its own connection; a token a turn for the same user; the errors it met.
const WORKER = `
const { workerData, parentPort } = require('node:worker_threads');
(async () => {
(await import(workerData.tsx)).register();
const { LocalStore } = await import(workerData.localStore);
const { LocalAccounts } = await import(workerData.localAccounts);
const local = new LocalStore(workerData.path);
const accounts = new LocalAccounts(local.db);
const errors = [];
const ids = [];
for (let i = 0; i < workerData.each; i++) {
  try {
    ids.push((await accounts.createToken(workerData.userId, { name: 't' + i, scopes: [] })).id);
  } catch (err) {
    errors.push(String(err.code ?? '') + ' ' + err.message);
  }
}
local.close();
parentPort.postMessage({ ids, errors });
})();
`;

describe('tokens made at once over several connections to local.db', () => {
  it('each gets an id of its own: no primary-key error, no token lost', async () => {
    const dir = mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), 'opsdb-token-race-'));
    try {
      const path = join(dir, 'local.db');
      const local = new LocalStore(path);
      const userId = new LocalAccounts(local.db).createUser('racer', ['observer']);
      local.close();
      const data = {
        path, userId, each: EACH, tsx: import.meta.resolve('tsx/esm/api'),
        localStore: new URL('../../src/edge/local-store.ts', import.meta.url).href,
        localAccounts: new URL('../../src/edge/local-accounts.ts', import.meta.url).href,
      };
      const results = await Promise.all(Array.from({ length: THREADS }, () => new Promise<{ ids: number[]; errors: string[] }>((resolve, reject) => {
        const w = new Worker(WORKER, { eval: true, workerData: data });
        w.once('message', resolve);
        w.once('error', reject);
      })));
      const errors = results.flatMap((r) => r.errors);
      assert.deepEqual(errors.slice(0, 3), [], `${errors.length} token(s) refused`);
      const ids = results.flatMap((r) => r.ids);
      assert.equal(ids.length, THREADS * EACH);
      assert.equal(new Set(ids).size, ids.length, 'every id distinct');
      assert.ok(ids.every((id) => id < 0), 'local ids are negative');
      const check = new LocalStore(path);
      const { n } = check.db.prepare('SELECT count(*) AS n FROM api_token WHERE user_id = ?').get(userId) as { n: number };
      check.close();
      assert.equal(n, THREADS * EACH, 'every token is stored');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
