/**
 * Schema migrations: plain .sql files applied in name order, each in its own
 * transaction, recorded with a checksum. A session-level advisory lock makes
 * two processes starting at once take turns: the second finds nothing to do.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Pool } from './db.js';

const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'migrations');
const LOCK_KEY = 0x6f707364; // "opsd"

export interface MigrationResult {
  applied: string[];
  alreadyApplied: string[];
  /** Applied in an earlier text (a build on main before the file was edited), brought to this one. */
  updated: string[];
}

/**
 * Migrations whose file was edited after a build on main had applied it: for
 * each text it had then (its checksum), what brings a database migrated with
 * it to what the file makes now. `rerun`: then apply the file itself again.
 * Never edit a migration a build has applied: add one. These three were
 * edited before that rule was kept, and databases migrated by those builds
 * must still upgrade.
 */
const SUPERSEDED: Record<string, Record<string, { sql: string; rerun?: boolean }>> = {
  '008_set_based_inserts': {
    // Only a comment differs.
    '739da3a07315d80f048fb734c2387d865af86725bae2fe2573c5081334a3f7a8': { sql: '' },
  },
  '010_edge_identity': {
    // other_edge_id and edge_seen_at are no longer read; left in place (a central still running the old
    // build while the new one migrates keeps working).
    'a537e2c4c7463fb28efce7ea5889a0941b528f27ea85a6532ba6f93e8fbab3f9': { sql: 'ALTER TABLE site ADD COLUMN IF NOT EXISTS recent_edges jsonb' },
    '74039ff6f313f4a60b07c4c7a435be378fde2ef58c05c46b93cc032d52b068f1': { sql: '' },
  },
  '012_file_package_observation': {
    // A foreign key on the pair then; the trigger now.
    '0545c27046384a553807f930b88ba4d87e664f12cfa8207b3ba062b9cc1fcf77': {
      sql: `ALTER TABLE raw_data_file DROP CONSTRAINT IF EXISTS raw_data_file_package_observation;
            ALTER TABLE raw_data_package DROP CONSTRAINT IF EXISTS raw_data_package_id_observation;`,
      rerun: true,
    },
  },
};

/** A database whose migration `version` has a text this build does not know: what to say. */
function unknownText(version: string, checksum: string): Error {
  return new Error(
    `Migration ${version} in this database is not the one this release has (checksum ${checksum.slice(0, 12)}…): ` +
      'it was migrated by a build this release does not know how to upgrade. Nothing was changed. ' +
      'Run the release that migrated it, or restore the database from before that migration; ' +
      'schema_migration lists what was applied and when',
  );
}

export function migrationFiles(): { version: string; sql: string; checksum: string }[] {
  return readdirSync(MIGRATIONS_DIR)
    .filter((f) => /^\d{3}_[\w-]+\.sql$/.test(f))
    .sort()
    .map((f) => {
      const sql = readFileSync(join(MIGRATIONS_DIR, f), 'utf8');
      return { version: f.replace(/\.sql$/, ''), sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}

export async function migrate(pool: Pool): Promise<MigrationResult> {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migration (
      version text PRIMARY KEY, checksum char(64) NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ version: string; checksum: string }>('SELECT version, checksum FROM schema_migration');
    const done = new Map(rows.map((r) => [r.version, r.checksum]));
    const result: MigrationResult = { applied: [], alreadyApplied: [], updated: [] };
    const files = migrationFiles();
    // Every text checked before anything is written: a database this release cannot upgrade is left as it was.
    for (const m of files) {
      const prior = done.get(m.version);
      if (prior && prior !== m.checksum && !SUPERSEDED[m.version]?.[prior]) throw unknownText(m.version, prior);
    }
    const run = async (m: (typeof files)[number], sql: string, record: string) => {
      await client.query('BEGIN');
      try {
        await client.query(sql);
        await client.query(record, [m.version, m.checksum]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw new Error(`Migration ${m.version} failed: ${(err as Error).message}`, { cause: err });
      }
    };
    for (const m of files) {
      const prior = done.get(m.version);
      if (prior === m.checksum) {
        result.alreadyApplied.push(m.version);
      } else if (prior) {
        const fix = SUPERSEDED[m.version]![prior]!;
        await run(m, `${fix.sql};\n${fix.rerun ? m.sql : ''}`, 'UPDATE schema_migration SET checksum = $2 WHERE version = $1');
        result.updated.push(m.version);
      } else {
        await run(m, m.sql, 'INSERT INTO schema_migration (version, checksum) VALUES ($1, $2)');
        result.applied.push(m.version);
      }
    }
    return result;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => {});
    client.release();
  }
}

/**
 * Versions not yet applied, or applied in an earlier text that `migrate` brings up to date (named with
 * "(earlier text)"); central refuses to serve a database that is behind.
 */
export async function pendingMigrations(pool: Pool): Promise<string[]> {
  const { rows } = await pool.query<{ version: string; checksum: string }>('SELECT version, checksum FROM schema_migration').catch((err: { code?: string }) => {
    // No migrations table yet: nothing applied. Anything else (unreachable, auth) is reported as it is.
    if (err.code === '42P01') return { rows: [] as { version: string; checksum: string }[] };
    throw err;
  });
  const done = new Map(rows.map((r) => [r.version, r.checksum]));
  return migrationFiles().flatMap((m) => {
    const prior = done.get(m.version);
    if (prior === undefined) return [m.version];
    if (prior === m.checksum) return [];
    if (SUPERSEDED[m.version]?.[prior]) return [`${m.version} (earlier text)`];
    throw unknownText(m.version, prior);
  });
}
