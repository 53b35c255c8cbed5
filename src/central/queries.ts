/** Read side of central: plain SQL over the schema, shaped as the wire schemas. */
import type { Pool } from './db.js';
import type { Page } from '../lib/api/backend.js';
import type { ExecutedObsUnitFilter } from '../lib/api/schemas.js';
import { decodeCursor, encodeCursor } from '../lib/cursor.js';

type Row = Record<string, unknown>;
/** Dates become ISO strings, as on the wire. */
const wire = <T extends Row>(r: T): T =>
  Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v])) as T;

const OBS_COLS = `id, obs_unit_id, site, status, start_time, end_time, mean_pwv, mean_elevation,
  instrument_module_configuration_id, created_at, updated_at`;
const PKG_COLS = `id, name, executed_obs_unit_id, state, size, checksum, created_at, updated_at`;
const FILE_COLS = `id, name, path, size, checksum, file_type, executed_obs_unit_id, raw_data_package_id, created_at`;

export class CentralQueries {
  constructor(private readonly pool: Pool) {}

  private async all(sql: string, params: unknown[] = []): Promise<Row[]> {
    return (await this.pool.query(sql, params)).rows.map(wire);
  }

  listInstruments() {
    return this.all('SELECT id, name, description, is_active FROM instrument ORDER BY id') as Promise<never[]>;
  }

  async getInstrument(id: number) {
    const [inst] = await this.all('SELECT id, name, description, is_active FROM instrument WHERE id = $1', [id]);
    if (!inst) return null;
    const modules = await this.all(
      'SELECT id, instrument_id, name, description FROM instrument_module WHERE instrument_id = $1 ORDER BY id',
      [id],
    );
    const configs = await this.all(
      `SELECT c.id, c.instrument_module_id, c.name, c.description, c.parameters
         FROM instrument_module_configuration c JOIN instrument_module m ON m.id = c.instrument_module_id
        WHERE m.instrument_id = $1 ORDER BY c.id`,
      [id],
    );
    return {
      ...inst,
      modules: modules.map((m) => ({ ...m, configurations: configs.filter((c) => c.instrument_module_id === m.id) })),
    } as never;
  }

  listObservingPrograms() {
    return this.all('SELECT id, name, description, is_active FROM observing_program ORDER BY id') as Promise<never[]>;
  }

  listObsUnits(q: { observing_program_id?: number | undefined; limit: number }) {
    return this.all(
      `SELECT id, name, observing_program_id, instrument_module_configuration_id, description, is_active
         FROM obs_unit WHERE $1::int IS NULL OR observing_program_id = $1 ORDER BY id LIMIT $2`,
      [q.observing_program_id ?? null, q.limit],
    ) as Promise<never[]>;
  }

  async listExecutedObsUnits(q: ExecutedObsUnitFilter): Promise<Page<never>> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, v: unknown) => {
      params.push(v);
      where.push(sql.replace('?', `$${params.length}`));
    };
    if (q.obs_unit_id !== undefined) add('obs_unit_id = ?', q.obs_unit_id);
    if (q.status !== undefined) add('status = ?', q.status);
    if (q.site !== undefined) add('site = ?', q.site);
    if (q.start_after !== undefined) add('start_time > ?', q.start_after);
    if (q.start_before !== undefined) add('start_time < ?', q.start_before);
    if (q.cursor !== undefined) {
      const k = decodeCursor(q.cursor);
      params.push(k.t, k.id);
      where.push(`(start_time, id) < ($${params.length - 1}::timestamptz, $${params.length}::uuid)`);
    }
    params.push(q.limit + 1);
    const rows = await this.all(
      `SELECT ${OBS_COLS} FROM executed_obs_unit ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
        ORDER BY start_time DESC, id DESC LIMIT $${params.length}`,
      params,
    );
    const more = rows.length > q.limit;
    const items = rows.slice(0, q.limit);
    const last = items.at(-1);
    return {
      items: items as never[],
      nextCursor: more && last ? encodeCursor({ t: last.start_time as string, id: last.id as string }) : null,
    };
  }

  async getExecutedObsUnit(id: string) {
    const [obs] = await this.all(`SELECT ${OBS_COLS} FROM executed_obs_unit WHERE id = $1`, [id]);
    if (!obs) return null;
    const raw_data_packages = await this.all(
      `SELECT ${PKG_COLS} FROM raw_data_package WHERE executed_obs_unit_id = $1 ORDER BY created_at, id`,
      [id],
    );
    const raw_data_files = await this.all(
      `SELECT ${FILE_COLS} FROM raw_data_file WHERE executed_obs_unit_id = $1 ORDER BY created_at, id`,
      [id],
    );
    return { ...obs, raw_data_packages, raw_data_files } as never;
  }

  async getRawDataFile(id: string) {
    const [f] = await this.all(`SELECT ${FILE_COLS} FROM raw_data_file WHERE id = $1`, [id]);
    return (f ?? null) as never;
  }

  async getRawDataPackage(id: string) {
    const [p] = await this.all(`SELECT ${PKG_COLS} FROM raw_data_package WHERE id = $1`, [id]);
    if (!p) return null;
    const raw_data_files = await this.all(
      `SELECT ${FILE_COLS} FROM raw_data_file WHERE raw_data_package_id = $1 ORDER BY created_at, id`,
      [id],
    );
    return { ...p, raw_data_files } as never;
  }

  async transferOverview() {
    const { rows } = await this.pool.query(
      `SELECT (SELECT count(*) FROM raw_data_package)::int AS total_packages,
              count(*) FILTER (WHERE status = 'pending')::int AS pending_transfers,
              count(*) FILTER (WHERE status = 'active')::int AS active_transfers,
              count(*) FILTER (WHERE status = 'completed')::int AS completed_transfers,
              count(*) FILTER (WHERE status = 'failed')::int AS failed_transfers,
              round(((SELECT coalesce(sum(size), 0) FROM raw_data_package) / 1e9)::numeric, 3)::float8 AS total_data_size_gb
         FROM data_transfer`,
    );
    return rows[0];
  }

  async getTransaction(id: string) {
    const [t] = await this.all(
      `SELECT transaction_id, site, seq, endpoint, created_at, applied_at FROM applied_transaction WHERE transaction_id = $1
        ORDER BY applied_at LIMIT 1`,
      [id],
    );
    if (!t) return null;
    return {
      ...t,
      state: 'applied',
      attempts: 1,
      last_error: null,
      updated_at: t.applied_at,
      central_result: { result: 'applied', applied_at: t.applied_at },
    } as never;
  }
}
