/**
 * The edge's local SQLite store: a replica of what central sends in its
 * change feed (reference data, accounts, this site's rows) with the rows of
 * buffered transactions applied on top. `origin_seq` names the last local
 * transaction that wrote a row (NULL: the row is as central has it), and
 * `created_seq` the local transaction that created it (NULL: created at
 * central); a row's sync_status is that of its creation.
 * Everything here can be rebuilt from central plus the buffer, so it commits
 * with synchronous=NORMAL; the buffer is what must be durable.
 */
export const LOCAL_SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS instrument (id INTEGER PRIMARY KEY, name TEXT NOT NULL, description TEXT, is_active INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS instrument_module (id INTEGER PRIMARY KEY, instrument_id INTEGER NOT NULL, name TEXT NOT NULL, description TEXT);
CREATE TABLE IF NOT EXISTS instrument_module_configuration (
  id INTEGER PRIMARY KEY, instrument_module_id INTEGER NOT NULL, name TEXT NOT NULL, description TEXT, parameters TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS observing_program (id INTEGER PRIMARY KEY, name TEXT NOT NULL, description TEXT, is_active INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS obs_unit (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, observing_program_id INTEGER NOT NULL,
  instrument_module_configuration_id INTEGER, description TEXT, is_active INTEGER NOT NULL DEFAULT 1);

CREATE TABLE IF NOT EXISTS user (
  id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, email TEXT, full_name TEXT,
  is_active INTEGER NOT NULL DEFAULT 1, site_name TEXT, created_at TEXT NOT NULL, local INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS user_role (user_id INTEGER NOT NULL, role TEXT NOT NULL, PRIMARY KEY (user_id, role));
CREATE TABLE IF NOT EXISTS api_token (
  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL,
  scopes TEXT NOT NULL DEFAULT '[]', expires_at TEXT, last_used_at TEXT, usage_count INTEGER NOT NULL DEFAULT 0,
  is_active INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL, local INTEGER NOT NULL DEFAULT 0);

CREATE TABLE IF NOT EXISTS executed_obs_unit (
  id TEXT PRIMARY KEY, obs_unit_id INTEGER NOT NULL, site TEXT NOT NULL, status TEXT NOT NULL, start_time TEXT NOT NULL,
  end_time TEXT, mean_pwv REAL, mean_elevation REAL, instrument_module_configuration_id INTEGER,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL, origin_seq INTEGER, created_seq INTEGER);
CREATE INDEX IF NOT EXISTS executed_obs_unit_start ON executed_obs_unit (start_time DESC, id DESC);
CREATE TABLE IF NOT EXISTS raw_data_package (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, executed_obs_unit_id TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'open',
  size INTEGER, checksum TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, origin_seq INTEGER, created_seq INTEGER);
CREATE INDEX IF NOT EXISTS raw_data_package_obs ON raw_data_package (executed_obs_unit_id);
CREATE TABLE IF NOT EXISTS raw_data_file (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, checksum TEXT NOT NULL,
  file_type TEXT NOT NULL, executed_obs_unit_id TEXT NOT NULL, raw_data_package_id TEXT, created_at TEXT NOT NULL,
  origin_seq INTEGER, created_seq INTEGER);
CREATE INDEX IF NOT EXISTS raw_data_file_obs ON raw_data_file (executed_obs_unit_id);
CREATE INDEX IF NOT EXISTS raw_data_file_pkg ON raw_data_file (raw_data_package_id);
CREATE TABLE IF NOT EXISTS user_preference (
  user_id INTEGER PRIMARY KEY, preferences TEXT NOT NULL, updated_at TEXT NOT NULL, origin_seq INTEGER, created_seq INTEGER);
-- A buffered update of a row this store did not hold yet (an edge rebuilt on an empty disk, a row of
-- central's not pulled yet): applied on top of the row when the replica brings it.
CREATE TABLE IF NOT EXISTS deferred_update (
  table_name TEXT NOT NULL, row_key TEXT NOT NULL, seq INTEGER NOT NULL, step TEXT NOT NULL, at TEXT NOT NULL,
  PRIMARY KEY (table_name, row_key, seq));
-- Central's newest change of a row (its copy, or null: deleted there) that a pull held back because a
-- local change of the row stood (origin_seq: the earliest such change): put in place once no local
-- change of the row stands (sync engine, settleHeld); gone when a later change of the row is applied.
CREATE TABLE IF NOT EXISTS held_change (
  table_name TEXT NOT NULL, row_key TEXT NOT NULL, origin_seq INTEGER NOT NULL, change TEXT NOT NULL,
  PRIMARY KEY (table_name, row_key));
CREATE TABLE IF NOT EXISTS data_transfer (
  id TEXT PRIMARY KEY, raw_data_package_id TEXT NOT NULL, source TEXT NOT NULL, destination TEXT NOT NULL,
  status TEXT NOT NULL, bytes_transferred INTEGER NOT NULL DEFAULT 0, started_at TEXT, finished_at TEXT, created_at TEXT NOT NULL);
`;

/** Columns a local entity table stores, besides origin_seq and created_seq; in the order of its CREATE. */
export const ENTITY_COLUMNS: Record<string, readonly string[]> = {
  executed_obs_unit: ['id', 'obs_unit_id', 'site', 'status', 'start_time', 'end_time', 'mean_pwv', 'mean_elevation',
    'instrument_module_configuration_id', 'created_at', 'updated_at'],
  raw_data_package: ['id', 'name', 'executed_obs_unit_id', 'state', 'size', 'checksum', 'created_at', 'updated_at'],
  raw_data_file: ['id', 'name', 'path', 'size', 'checksum', 'file_type', 'executed_obs_unit_id', 'raw_data_package_id', 'created_at'],
  user_preference: ['user_id', 'preferences', 'updated_at'],
};
export const ENTITY_KEY: Record<string, string> = {
  executed_obs_unit: 'id', raw_data_package: 'id', raw_data_file: 'id', user_preference: 'user_id',
};
