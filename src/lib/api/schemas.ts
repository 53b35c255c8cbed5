/**
 * Wire schemas: the zod schemas that validate requests are the ones the
 * OpenAPI document and the TypeScript types come from.
 */
import { z } from './zod.js';
import { jsonDepth } from '../http/body.js';

export const ROLES = ['admin', 'observer', 'viewer', 'service', 'site'] as const;
export type Role = (typeof ROLES)[number];

export const OBS_STATUSES = ['running', 'success', 'failed', 'aborted', 'interrupted'] as const;
export const SYNC_STATUSES = ['pending', 'in_flight', 'blocked', 'failed', 'synced'] as const;

// Normalised to millisecond UTC ISO strings, so every site stores and pages on the same value.
const isoTime = z.iso
  .datetime({ offset: true, message: 'Invalid time: expected ISO 8601 with a time zone, e.g. 2025-06-01T12:00:00Z' })
  .refine((s) => {
    const t = new Date(s);
    // Not a time at all: the format check above has said so; one message is enough.
    if (Number.isNaN(t.getTime())) return true;
    const y = t.getUTCFullYear();
    return y >= 1 && y <= 9999;
  }, 'year must be between 0001 and 9999')
  .transform((s) => new Date(s).toISOString())
  .openapi({ type: 'string', format: 'date-time', example: '2025-01-01T00:00:00Z' });
/**
 * UUIDs are case-insensitive, and PostgreSQL's uuid type makes them so at central; the edge's SQLite
 * compares text. So an id given in upper case is taken in its canonical lower-case form, and names the
 * same row at both sites.
 */
const uuid = z.uuid().transform((s) => s.toLowerCase()).openapi({ type: 'string', format: 'uuid', example: '01936a2e-7b4c-7d3e-9a1b-2c3d4e5f6a7b' });
/**
 * An integer in a path or a query string, in decimal digits. z.coerce.number() alone also took `0x10`
 * (16), `1e1`, ` 5` and `+5`, and an empty value as 0: `DELETE /api/tokens/0x10` revoked token 16.
 */
export const decimal = <T extends z.ZodType<number, number>>(n: T) =>
  z.string().regex(/^-?[0-9]{1,16}$/, 'must be an integer written in decimal digits').transform(Number).pipe(n);
/** PostgreSQL `integer` ids: bounded so an out-of-range id is a 422, not a database error. */
const intId = decimal(z.number().int().positive().max(2_147_483_647));
const intRef = z.number().int().positive().max(2_147_483_647);
const sizeBytes = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const text = (max: number) => z.string().trim().min(1).max(max);

export const UuidParams = z.object({ id: uuid });
export const IntIdParams = z.object({ id: intId });
/** Token and user ids of accounts in a path or query: central's are positive, those made at an edge negative (never 0). */
const accountIdParam = decimal(z.number().int().min(-2_147_483_648).max(2_147_483_647).refine((n) => n !== 0, 'must not be 0'));
/** A page size in a query string. */
export const limitParam = decimal(z.number().int().min(1).max(1000)).default(100);
export const TokenIdParams = z.object({ id: accountIdParam });

export const ErrorBody = z
  .object({ error: z.object({ code: z.string(), message: z.string(), details: z.unknown() }) })
  .openapi('Error');

// ---- reference data -------------------------------------------------------
export const Instrument = z
  .object({ id: z.number().int(), name: z.string(), description: z.string().nullable(), is_active: z.boolean() })
  .openapi('Instrument');
export const InstrumentModuleConfiguration = z
  .object({
    id: z.number().int(),
    instrument_module_id: z.number().int(),
    name: z.string(),
    description: z.string().nullable(),
    parameters: z.record(z.string(), z.unknown()),
  })
  .openapi('InstrumentModuleConfiguration');
export const InstrumentModule = z
  .object({
    id: z.number().int(),
    instrument_id: z.number().int(),
    name: z.string(),
    description: z.string().nullable(),
    configurations: z.array(InstrumentModuleConfiguration),
  })
  .openapi('InstrumentModule');
export const InstrumentDetail = Instrument.extend({ modules: z.array(InstrumentModule) }).openapi('InstrumentDetail');
export const ObservingProgram = z
  .object({ id: z.number().int(), name: z.string(), description: z.string().nullable(), is_active: z.boolean() })
  .openapi('ObservingProgram');
export const ObsUnit = z
  .object({
    id: z.number().int(),
    name: z.string(),
    observing_program_id: z.number().int(),
    instrument_module_configuration_id: z.number().int().nullable(),
    description: z.string().nullable(),
    is_active: z.boolean(),
  })
  .openapi('ObsUnit');
export const ObsUnitQuery = z
  .object({ observing_program_id: intId.optional(), limit: limitParam })
  .strict();

// ---- observations, packages, files ----------------------------------------
export const StartObservation = z
  .object({
    obs_unit_id: intRef,
    start_time: isoTime.optional(),
    status: z.literal('running').default('running'),
    mean_pwv: z.number().finite().nonnegative().nullable().optional(),
    mean_elevation: z.number().min(-90).max(90).nullable().optional(),
    instrument_module_configuration_id: intRef.nullable().optional(),
  })
  .strict()
  .openapi('StartObservation');
export const FinishObservation = z
  .object({
    status: z.enum(OBS_STATUSES).exclude(['running']),
    end_time: isoTime.optional(),
    mean_pwv: z.number().finite().nonnegative().nullable().optional(),
    mean_elevation: z.number().min(-90).max(90).nullable().optional(),
  })
  .strict()
  .openapi('FinishObservation');

export const ExecutedObsUnit = z
  .object({
    id: uuid,
    obs_unit_id: z.number().int(),
    site: z.string(),
    status: z.enum(OBS_STATUSES),
    start_time: z.string(),
    end_time: z.string().nullable(),
    mean_pwv: z.number().nullable(),
    mean_elevation: z.number().nullable(),
    instrument_module_configuration_id: z.number().int().nullable(),
    created_at: z.string(),
    updated_at: z.string(),
    sync_status: z.enum(SYNC_STATUSES).optional().openapi({ description: 'edge only' }),
  })
  .openapi('ExecutedObsUnit');

export const ExecutedObsUnitQuery = z
  .object({
    obs_unit_id: intId.optional(),
    status: z.enum(OBS_STATUSES).optional(),
    site: z.string().max(63).optional(),
    start_after: isoTime.optional(),
    start_before: isoTime.optional(),
    limit: limitParam,
    cursor: z.string().max(500).optional(),
  })
  .strict();

export const RawDataFileInput = z
  .object({
    name: text(255),
    path: text(4096),
    size: sizeBytes,
    checksum: text(255),
    file_type: text(50),
  })
  .strict()
  .openapi('RawDataFileInput');
export const CreateRawDataFile = RawDataFileInput.extend({
  executed_obs_unit_id: uuid,
  raw_data_package_id: uuid.nullable().optional(),
})
  .strict()
  .openapi('CreateRawDataFile');
export const BulkRawDataFiles = z
  .object({
    executed_obs_unit_id: uuid,
    raw_data_package_id: uuid.nullable().optional(),
    files: z.array(RawDataFileInput).min(1).max(10_000),
  })
  .strict()
  .openapi('BulkRawDataFiles');
export const RawDataFile = RawDataFileInput.extend({
  id: uuid,
  executed_obs_unit_id: uuid,
  raw_data_package_id: uuid.nullable(),
  created_at: z.string(),
  sync_status: z.enum(SYNC_STATUSES).optional(),
}).openapi('RawDataFile');

export const PACKAGE_STATES = ['open', 'finalized'] as const;
export const CreateRawDataPackage = z
  .object({ name: text(255), executed_obs_unit_id: uuid })
  .strict()
  .openapi('CreateRawDataPackage');
export const FinalizeRawDataPackage = z
  .object({ size: sizeBytes, checksum: text(255) })
  .strict()
  .openapi('FinalizeRawDataPackage');
export const RawDataPackage = z
  .object({
    id: uuid,
    name: z.string(),
    executed_obs_unit_id: uuid,
    state: z.enum(PACKAGE_STATES),
    size: z.number().nullable(),
    checksum: z.string().nullable(),
    created_at: z.string(),
    updated_at: z.string(),
    sync_status: z.enum(SYNC_STATUSES).optional(),
  })
  .openapi('RawDataPackage');
export const RawDataPackageDetail = RawDataPackage.extend({ raw_data_files: z.array(RawDataFile) }).openapi(
  'RawDataPackageDetail',
);
export const ExecutedObsUnitDetail = ExecutedObsUnit.extend({
  raw_data_packages: z.array(RawDataPackage),
  raw_data_files: z.array(RawDataFile),
}).openapi('ExecutedObsUnitDetail');

export const WriteResult = z
  .object({ id: uuid, status: z.enum(['buffered', 'committed']), transaction_id: uuid })
  .openapi('WriteResult');
export const BulkWriteResult = z
  .object({ count: z.number().int(), status: z.enum(['buffered', 'committed']), transaction_id: uuid, ids: z.array(uuid) })
  .openapi('BulkWriteResult');

export const TransferOverview = z
  .object({
    total_packages: z.number().int(),
    pending_transfers: z.number().int(),
    active_transfers: z.number().int(),
    completed_transfers: z.number().int(),
    failed_transfers: z.number().int(),
    total_data_size_gb: z.number(),
  })
  .openapi('TransferOverview');

// ---- the seed tutorial's demo endpoints -------------------------------------
/** Free-form JSON a user may store: an object, at most 16 levels deep. */
export const Preferences = z
  .record(z.string(), z.unknown())
  .refine((v) => jsonDepth(v) <= 16, 'preferences may nest at most 16 levels deep');

/** A user id: positive for central's accounts, negative for accounts made at an edge (which the edge then names). */
const accountId = z.number().int().min(-2_147_483_648).max(2_147_483_647).refine((v) => v !== 0, 'Must not be 0: user ids start at 1 (at an edge, accounts made there have ids from -1 down)');
export const UpdatePreferences = z
  .object({ user_id: accountId, preferences: Preferences })
  .strict()
  .openapi('UpdateUserPreferences');
export const UpdatePreferencesResult = z
  .object({ status: z.literal('success'), message: z.string(), transaction_id: uuid })
  .openapi('UpdateUserPreferencesResult');
export const CreateObservation = z
  .object({
    obs_data: z
      .object({
        obs_unit_id: intRef,
        start_time: isoTime,
        end_time: isoTime.nullable().optional(),
        mean_pwv: z.number().finite().nonnegative().nullable().optional(),
        mean_elevation: z.number().min(-90).max(90).nullable().optional(),
        package_name: text(255),
        instrument_module_configuration_id: intRef.nullable().optional(),
      })
      .strict(),
    raw_files: z.array(RawDataFileInput).max(10_000).default([]),
  })
  .strict()
  .openapi('CreateObservation');
export const CreateObservationResult = z
  .object({
    status: z.enum(['buffered', 'committed']),
    transaction_id: uuid,
    executed_obs_unit_id: uuid,
    raw_data_package_id: uuid,
    raw_data_file_ids: z.array(uuid),
  })
  .openapi('CreateObservationResult');

// ---- auth -------------------------------------------------------------------
export const DemoToken = z
  .object({ token: z.string(), user_id: z.number().int(), role: z.literal('admin') })
  .openapi('DemoToken');
export const Me = z
  .object({
    id: z.number().int(),
    username: z.string(),
    email: z.string().nullable(),
    full_name: z.string().nullable(),
    roles: z.array(z.enum(ROLES)),
    is_active: z.boolean(),
    created_at: z.string(),
  })
  .openapi('CurrentUser');
export const CreateToken = z
  .object({
    name: text(100),
    scopes: z.array(z.enum(ROLES)).max(ROLES.length).default([]),
    expires_at: isoTime.nullable().optional(),
    user_id: accountId.optional().openapi({ description: 'admin only: mint for another user (at an edge, a local user has a negative id)' }),
  })
  .strict()
  // A token that has expired before it is made can never be used: say so rather than hand it out.
  .refine((v) => v.expires_at == null || Date.parse(v.expires_at) > Date.now(), { path: ['expires_at'], message: 'Must be in the future' })
  .openapi('CreateToken');
export const TokenInfo = z
  .object({
    id: z.number().int(),
    user_id: z.number().int(),
    name: z.string(),
    prefix: z.string(),
    scopes: z.array(z.enum(ROLES)),
    expires_at: z.string().nullable(),
    last_used_at: z.string().nullable(),
    usage_count: z.number().int(),
    is_active: z.boolean(),
    created_at: z.string(),
  })
  .openapi('TokenInfo');
export const CreatedToken = TokenInfo.extend({ token: z.string().openapi({ description: 'shown once' }) }).openapi(
  'CreatedToken',
);
export const TokenListQuery = z.object({ user_id: accountIdParam.optional(), all: z.enum(['true', 'false']).optional() }).strict();

export const Health = z
  .object({
    status: z.enum(['healthy', 'degraded', 'unhealthy']),
    site: z.object({ name: z.string(), type: z.enum(['main', 'secondary']) }),
    database: z.string(),
    redis: z.string(),
    transaction_buffer: z.object({ size: z.number().int().nullable(), failed: z.number().int().nullable() }),
    background_processor: z.enum(['running', 'paused', 'stopped', 'disabled']),
  })
  .passthrough()
  .openapi('Health');

export const TransactionState = z
  .object({
    transaction_id: uuid,
    site: z.string(),
    seq: z.number().int().nullable(),
    endpoint: z.string(),
    state: z.enum(['pending', 'in_flight', 'blocked', 'failed', 'synced', 'applied', 'discarded']),
    attempts: z.number().int(),
    last_error: z.unknown().nullable(),
    created_at: z.string(),
    updated_at: z.string().nullable(),
    applied_at: z.string().nullable(),
    central_result: z.unknown().nullable(),
    compacted_at: z.string().nullable().optional().openapi({ description: 'edge: when the buffer dropped its steps (the record is then kept for 7 days)' }),
  })
  .passthrough()
  .openapi('TransactionState');

export type StartObservationInput = z.infer<typeof StartObservation>;
export type FinishObservationInput = z.infer<typeof FinishObservation>;
export type ExecutedObsUnitFilter = z.infer<typeof ExecutedObsUnitQuery>;
export type CreateObservationInput = z.infer<typeof CreateObservation>;
export type CreateTokenInput = z.infer<typeof CreateToken>;
