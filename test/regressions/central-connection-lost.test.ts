// Found by an adversarial review: central exited ("Unhandled 'error' event … Connection terminated
// unexpectedly") when PostgreSQL dropped a connection that a request had checked out — a restart, a
// failover, pg_terminate_backend. Only idle connections had an error handler. Every central on the
// database died at once, and writes in flight got a connection reset instead of an answer.
// Central runs as a real `opsdb serve` process, so a crash shows as its exit.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pgLib, { type Pool } from 'pg';
import { createPool } from '../../src/central/db.js';
import { migrate } from '../../src/central/migrate.js';
import { seed } from '../../src/central/seed.js';
import { PgAccounts } from '../../src/central/accounts.js';
import { createTestDatabase, type TestDatabase } from '../support/services.js';
import { spawnCentral } from '../support/processes.js';
import type { DaemonProcess } from '../support/daemon.js';
import { client, type Client } from '../support/http.js';

describe('central when PostgreSQL drops its connections mid-request', () => {
  let database: TestDatabase;
  let db: Pool;
  let central: DaemonProcess;
  let admin: Client;
  before(async () => {
    database = await createTestDatabase('connection-lost');
    db = createPool(database.url, 2);
    await migrate(db);
    await seed(db);
    const accounts = new PgAccounts(db);
    const token = (await accounts.createToken(await accounts.ensureUser('admin-lost', ['admin']), { name: 't', scopes: [] })).token;
    central = await spawnCentral({ DATABASE_URL: database.url });
    admin = client(central.url, token);
  });
  after(async () => {
    await central?.kill('SIGKILL');
    await db?.end();
    await database?.drop();
  });

  it('answers every request (never a reset), keeps running, and works again afterwards', { timeout: 60_000 }, async () => {
    const dbName = new URL(database.url).pathname.slice(1);
    let stop = false;
    let terminated = 0;
    const killer = (async () => {
      while (!stop) {
        const r = await db.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = $2',
          [dbName, 'client backend'],
        );
        terminated += r.rowCount ?? 0;
        // Gaps of 15–120 ms: short enough to cut requests mid-way, long enough now and then for a write to
        // connect and commit, even on a slow machine (CI once saw all 300 writes cut with a fixed 15 ms).
        await new Promise((res) => setTimeout(res, 15 + Math.floor(Math.random() * 105)));
      }
    })();
    const statuses = new Map<number, number>();
    const write = async () => {
      const r = await admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      if (r.status >= 500) {
        assert.equal(r.status, 503, r.text);
        assert.equal(r.body.error.code, 'service_unavailable');
        assert.match(r.body.error.message, /connection to it was lost during this request/);
      } else assert.equal(r.status, 201, r.text);
    };
    try {
      // 15 rounds of 20, and more (up to 60) until at least one write has gone through between the cuts.
      for (let round = 0; round < 60 && (round < 15 || !statuses.has(201)); round++) {
        await Promise.all(Array.from({ length: 20 }, write));
      }
    } finally {
      stop = true;
      await killer;
    }
    assert.ok(terminated > 0, 'connections were dropped during the run');
    assert.ok((statuses.get(201) ?? 0) > 0, `some writes went through: ${JSON.stringify([...statuses])}`);
    assert.equal(central.child.exitCode, null, `central is still running:\n${central.lines.slice(-5).join('\n')}`);
    // Afterwards: healthy and writing, on fresh connections.
    assert.equal((await fetch(`${central.url}/health`)).status, 200);
    assert.equal((await admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).status, 201);
  });

  // Found in session 12's list of leftovers: a database that refuses new connections (ALTER DATABASE …
  // ALLOW_CONNECTIONS false, a dropped database, a changed password) failed with PostgreSQL's own SQLSTATE
  // (55000 here), which is none of the lost-connection codes, so central answered 500 internal_error.
  it('answers 503, writes nothing and logs why while the database refuses connections; works again after', { timeout: 60_000 }, async () => {
    const dbName = new URL(database.url).pathname.slice(1);
    const adminUrl = new URL(database.url);
    adminUrl.pathname = '/postgres';
    const superuser = new pgLib.Client({ connectionString: adminUrl.toString() });
    await superuser.connect();
    const count = async () => Number((await db.query('SELECT count(*) AS n FROM executed_obs_unit')).rows[0].n);
    const before = await count();
    try {
      await superuser.query(`ALTER DATABASE "${dbName}" ALLOW_CONNECTIONS false`);
      // Central's pooled connections were made before: cut them, so each request has to connect anew.
      await superuser.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [dbName]);
      const logged = central.lines.length;
      for (const call of [
        () => admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } }),
        () => admin.get('/executed_obs_units/'),
        () => admin.get('/executed_obs_units/' + '0190f5c2-0000-7000-8000-000000000000'),
      ]) {
        // A request on a connection cut just now is "lost during this request"; the next ones are refused.
        let r = await call();
        for (let i = 0; i < 3 && r.status === 503 && /lost during this request/.test(r.body.error.message); i++) r = await call();
        assert.equal(r.status, 503, r.text);
        assert.equal(r.body.error.code, 'service_unavailable');
        assert.match(r.body.error.message, /refused a connection; nothing was written/);
        assert.doesNotMatch(r.text, new RegExp(dbName), 'what PostgreSQL said stays in the log');
      }
      const health = await fetch(`${central.url}/health`);
      assert.equal(health.status, 503);
      assert.equal(((await health.json()) as { status: string }).status, 'unhealthy');
      const warned = central.lines.slice(logged).map((l) => JSON.parse(l)).filter((l) => l.status === 503 && l.level === 40);
      assert.ok(warned.length >= 3, `one warning per refused request:\n${central.lines.slice(logged).join('\n')}`);
      // (A request on a connection cut by the terminate above is logged as lost, 57P01; the refusals follow.)
      assert.ok(warned.some((l) => /not currently accepting connections/.test(JSON.stringify(l.err))), `the log says why:\n${JSON.stringify(warned)}`);
    } finally {
      await superuser.query(`ALTER DATABASE "${dbName}" ALLOW_CONNECTIONS true`);
      await superuser.end();
    }
    assert.equal(await count(), before, 'nothing was written');
    assert.equal((await admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).status, 201);
  });
});
