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
    const result: MigrationResult = { applied: [], alreadyApplied: [] };
    for (const m of migrationFiles()) {
      const prior = done.get(m.version);
      if (prior) {
        if (prior !== m.checksum) {
          throw new Error(`Migration ${m.version} was changed after it was applied (checksum differs); add a new migration instead`);
        }
        result.alreadyApplied.push(m.version);
        continue;
      }
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migration (version, checksum) VALUES ($1, $2)', [m.version, m.checksum]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw new Error(`Migration ${m.version} failed: ${(err as Error).message}`, { cause: err });
      }
      result.applied.push(m.version);
    }
    return result;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => {});
    client.release();
  }
}

/** Versions not yet applied; central refuses to serve a database that is behind. */
export async function pendingMigrations(pool: Pool): Promise<string[]> {
  const { rows } = await pool.query<{ version: string }>('SELECT version FROM schema_migration').catch((err: { code?: string }) => {
    // No migrations table yet: nothing applied. Anything else (unreachable, auth) is reported as it is.
    if (err.code === '42P01') return { rows: [] as { version: string }[] };
    throw err;
  });
  const done = new Set(rows.map((r) => r.version));
  return migrationFiles().map((m) => m.version).filter((v) => !done.has(v));
}
