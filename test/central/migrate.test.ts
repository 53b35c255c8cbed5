import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/services.js';
import { runCli } from '../support/cli.js';
import { createPool } from '../../src/central/db.js';
import { migrationFiles } from '../../src/central/migrate.js';

describe('opsdb migrate', () => {
  const dbs: TestDatabase[] = [];
  after(async () => {
    for (const d of dbs) await d.drop();
  });

  it('is safe when several processes migrate the same database at once', async () => {
    const db = await createTestDatabase('migrate_race');
    dbs.push(db);
    const env = { DATABASE_URL: db.url };
    const results = await Promise.all([1, 2, 3].map(() => runCli(['migrate'], env)));
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const applied = results.filter((r) => r.stdout.includes('applied: 001_initial'));
    assert.equal(applied.length, 1, 'exactly one process applied the schema; the others found it up to date');
    const pool = createPool(db.url, 1);
    try {
      const { rows } = await pool.query('SELECT version FROM schema_migration ORDER BY version');
      assert.deepEqual(
        rows.map((r) => r.version),
        migrationFiles().map((m) => m.version),
      );
    } finally {
      await pool.end();
    }
  });

  it('refuses a database whose applied migration was edited afterwards', async () => {
    const db = await createTestDatabase('migrate_edit');
    dbs.push(db);
    assert.equal((await runCli(['migrate'], { DATABASE_URL: db.url })).code, 0);
    const pool = createPool(db.url, 1);
    await pool.query(`UPDATE schema_migration SET checksum = repeat('0', 64) WHERE version = '001_initial'`);
    await pool.end();
    const r = await runCli(['migrate'], { DATABASE_URL: db.url });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /001_initial was changed after it was applied/);
  });

  it('central will not serve a database that is not migrated', async () => {
    const db = await createTestDatabase('migrate_behind');
    dbs.push(db);
    const r = await runCli(['serve'], { SITE_TYPE: 'main', DATABASE_URL: db.url, PORT: '0', LOG_LEVEL: 'silent' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /run "opsdb migrate" first/);
  });

  it('says what is missing when DATABASE_URL is not set', async () => {
    const r = await runCli(['migrate'], {});
    assert.equal(r.code, 2);
    assert.match(r.stderr, /DATABASE_URL/);
  });
});
