import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
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
    assert.match(r.stderr, /Migration 001_initial in this database is not the one this release has \(checksum 000000000000…\).*Nothing was changed/);
    const serve = await runCli(['serve'], { SITE_TYPE: 'main', DATABASE_URL: db.url, PORT: '0', LOG_LEVEL: 'silent' });
    assert.equal(serve.code, 1);
    assert.match(serve.stderr, /001_initial in this database is not the one this release has/);
  });

  // Found in review: three migrations were edited after builds on main had applied them (a comment in 008,
  // columns of 010, a foreign key that became a trigger in 012). A database migrated by one of those builds
  // could not be upgraded: `migrate` refused it, and `serve` refused to start on it, for good.
  it('brings a database migrated with earlier texts of 008, 010 and 012 to what a new one has', async () => {
    const earlierDir = new URL('../fixtures/earlier-migrations/', import.meta.url);
    const earlier = new Map(readdirSync(earlierDir).map((f) => [f.replace(/\.sql$/, ''), readFileSync(new URL(f, earlierDir), 'utf8')]));
    assert.equal(earlier.size, 3);
    const old = await createTestDatabase('migrate_earlier');
    const fresh = await createTestDatabase('migrate_fresh');
    dbs.push(old, fresh);
    const pool = createPool(old.url, 1);
    try {
      // As those builds left it: each migration in the text it had then, with that text's checksum.
      await pool.query(`CREATE TABLE schema_migration (version text PRIMARY KEY, checksum char(64) NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      for (const m of migrationFiles()) {
        const sql = earlier.get(m.version) ?? m.sql;
        await pool.query(sql);
        await pool.query('INSERT INTO schema_migration (version, checksum) VALUES ($1, $2)', [m.version, createHash('sha256').update(sql).digest('hex')]);
      }
      const serve = await runCli(['serve'], { SITE_TYPE: 'main', DATABASE_URL: old.url, PORT: '0', LOG_LEVEL: 'silent' });
      assert.equal(serve.code, 1);
      assert.match(serve.stderr, /Database schema is behind \(008_set_based_inserts \(earlier text\), 010_edge_identity \(earlier text\), 012_file_package_observation \(earlier text\) not applied\); run "opsdb migrate" first/);

      const r = await runCli(['migrate'], { DATABASE_URL: old.url });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), 'brought up to date (migrated by an earlier build): 008_set_based_inserts, 010_edge_identity, 012_file_package_observation');
      assert.equal((await runCli(['migrate'], { DATABASE_URL: old.url })).stdout.trim(), 'schema is up to date');
      assert.equal((await runCli(['migrate'], { DATABASE_URL: fresh.url })).code, 0);

      const shape = async (url: string) => {
        const p = createPool(url, 1);
        try {
          const q = async (sql: string) => (await p.query(sql)).rows.map((x) => Object.values(x).join(' ')).sort();
          return {
            // Columns 010 made then and no longer reads are left in place.
            columns: await q(`SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'public'
                                AND NOT (table_name = 'site' AND column_name IN ('other_edge_id', 'edge_seen_at'))`),
            constraints: await q(`SELECT conrelid::regclass::text, conname, contype FROM pg_constraint WHERE connamespace = 'public'::regnamespace`),
            triggers: await q(`SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal`),
            functions: await q(`SELECT proname, md5(prosrc) FROM pg_proc WHERE pronamespace = 'public'::regnamespace`),
            checksums: await q('SELECT version, checksum FROM schema_migration'),
          };
        } finally {
          await p.end();
        }
      };
      assert.deepEqual(await shape(old.url), await shape(fresh.url));
    } finally {
      await pool.end();
    }
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
