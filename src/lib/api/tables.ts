/**
 * The tables a transaction may write, with the columns each accepts. Central
 * validates every step against these before touching PostgreSQL, so a step
 * from an edge can never name a column or table outside this list.
 */
import { z } from './zod.js';
import { OBS_STATUSES, PACKAGE_STATES, Preferences } from './schemas.js';

const uuid = z.uuid();
const time = z.iso.datetime({ offset: true });
const size = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const site = z.string().min(1).max(63);

export const WRITABLE_TABLES = ['executed_obs_unit', 'raw_data_package', 'raw_data_file', 'user_preference'] as const;
export type WritableTable = (typeof WRITABLE_TABLES)[number];

interface TableSpec {
  /** Primary key column. */
  key: string;
  /** Columns a create/upsert must or may set (the key included). */
  create: z.ZodObject;
  /** Columns an update may set. */
  update: z.ZodObject;
  /** Columns that hold the site a row came from; a site may only write its own name there. */
  siteColumn?: string;
}

const executedObsUnit = z
  .object({
    id: uuid,
    obs_unit_id: z.number().int().positive(),
    site,
    status: z.enum(OBS_STATUSES),
    start_time: time,
    end_time: time.nullable().optional(),
    mean_pwv: z.number().nullable().optional(),
    mean_elevation: z.number().nullable().optional(),
    instrument_module_configuration_id: z.number().int().positive().nullable().optional(),
  })
  .strict();

const rawDataPackage = z
  .object({
    id: uuid,
    name: z.string().min(1).max(255),
    executed_obs_unit_id: uuid,
    state: z.enum(PACKAGE_STATES).default('open'),
    size: size.nullable().optional(),
    checksum: z.string().max(255).nullable().optional(),
  })
  .strict();

const rawDataFile = z
  .object({
    id: uuid,
    name: z.string().min(1).max(255),
    path: z.string().min(1).max(4096),
    size,
    checksum: z.string().min(1).max(255),
    file_type: z.string().min(1).max(50),
    executed_obs_unit_id: uuid,
    raw_data_package_id: uuid.nullable().optional(),
  })
  .strict();

const userPreference = z
  .object({ user_id: z.number().int().positive(), preferences: Preferences })
  .strict();

export const TABLES: Record<WritableTable, TableSpec> = {
  executed_obs_unit: {
    key: 'id',
    create: executedObsUnit,
    update: executedObsUnit.pick({ status: true, end_time: true, mean_pwv: true, mean_elevation: true }).partial(),
    siteColumn: 'site',
  },
  raw_data_package: {
    key: 'id',
    create: rawDataPackage,
    update: rawDataPackage.pick({ state: true, size: true, checksum: true, name: true }).partial(),
  },
  raw_data_file: {
    key: 'id',
    create: rawDataFile,
    update: rawDataFile.pick({ raw_data_package_id: true, checksum: true, size: true, path: true }).partial(),
  },
  user_preference: {
    key: 'user_id',
    create: userPreference,
    update: userPreference.pick({ preferences: true }),
  },
};
