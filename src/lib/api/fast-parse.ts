/**
 * Fast paths for the bodies the telescope sends most (starting and finishing
 * observations, files, packages): plain functions that accept only the
 * well-formed case and return exactly what the zod schema would return for
 * it (the same values, keys in the schema's order, times normalised, text
 * trimmed, defaults filled). Anything else, including every body with a
 * mistake, gives `undefined`, and the zod schema then decides: it stays the
 * one definition of what is valid and the only source of error messages.
 *
 * They exist for speed: zod took about a tenth of the HTTP thread's time per
 * durable write. test/lib/fast-parse.test.ts holds each of them to its schema
 * over thousands of generated bodies, valid and not.
 */
import type { ZodType } from 'zod';
import { z } from './zod.js';
import * as S from './schemas.js';

type Fast = (value: unknown) => unknown;
type Obj = Record<string, unknown>;
/** "Not sure": the zod schema decides. */
const NO = undefined;

// The patterns zod itself uses, so a string the fast path takes is one zod takes.
const UUID = (z.uuid() as unknown as { _zod: { def: { pattern: RegExp } } })._zod.def.pattern;
const ISO_TIME = (z.iso.datetime({ offset: true }) as unknown as { _zod: { def: { pattern: RegExp } } })._zod.def.pattern;
const INT_MAX = 2_147_483_647;

const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Every own key of `o` is one of `keys` (a strict object). */
function onlyKeys(o: Obj, keys: ReadonlySet<string>): boolean {
  for (const k in o) if (!keys.has(k)) return false;
  return true;
}

const intRef = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0 && v <= INT_MAX;
const size = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const uuid = (v: unknown): v is string => typeof v === 'string' && UUID.test(v);
/** Ids are taken in their canonical, lower-case form, as the schemas' `uuid` does. */
const lower = (v: unknown): string => (v as string).toLowerCase();

/** `text(max)`: the trimmed string, or NO. */
function text(v: unknown, max: number): string | undefined {
  if (typeof v !== 'string') return NO;
  const t = v.trim();
  return t.length >= 1 && t.length <= max ? t : NO;
}

/** `isoTime`: the time as a millisecond UTC ISO string, or NO. */
function isoTime(v: unknown): string | undefined {
  if (typeof v !== 'string' || !ISO_TIME.test(v)) return NO;
  const d = new Date(v);
  const y = d.getUTCFullYear();
  return y >= 1 && y <= 9999 ? d.toISOString() : NO;
}

/**
 * Copies an optional (and maybe nullable) key: absent stays absent, null stays
 * null when allowed, any other value goes through `check`. False: not sure.
 */
function optional(from: Obj, to: Obj, key: string, check: (v: unknown) => unknown, nullable: boolean): boolean {
  if (!(key in from)) return true;
  const v = from[key];
  if (v === null) {
    if (!nullable) return false;
    to[key] = null;
    return true;
  }
  const out = check(v);
  if (out === NO) return false;
  to[key] = out;
  return true;
}

const pwv = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : NO);
const elevation = (v: unknown) => (typeof v === 'number' && v >= -90 && v <= 90 ? v : NO);
const ref = (v: unknown) => (intRef(v) ? v : NO);
const uuidOrNo = (v: unknown) => (uuid(v) ? lower(v) : NO);

const START_KEYS = new Set(['obs_unit_id', 'start_time', 'status', 'mean_pwv', 'mean_elevation', 'instrument_module_configuration_id']);
function startObservation(b: unknown): Obj | undefined {
  if (!isObject(b) || !onlyKeys(b, START_KEYS) || !intRef(b.obs_unit_id)) return NO;
  const out: Obj = { obs_unit_id: b.obs_unit_id };
  if (!optional(b, out, 'start_time', isoTime, false)) return NO;
  if ('status' in b && b.status !== 'running') return NO;
  out.status = 'running';
  if (!optional(b, out, 'mean_pwv', pwv, true)) return NO;
  if (!optional(b, out, 'mean_elevation', elevation, true)) return NO;
  if (!optional(b, out, 'instrument_module_configuration_id', ref, true)) return NO;
  return out;
}

const FINISH_KEYS = new Set(['status', 'end_time', 'mean_pwv', 'mean_elevation']);
const FINISHED = new Set(['success', 'failed', 'aborted', 'interrupted']);
function finishObservation(b: unknown): Obj | undefined {
  if (!isObject(b) || !onlyKeys(b, FINISH_KEYS) || typeof b.status !== 'string' || !FINISHED.has(b.status)) return NO;
  const out: Obj = { status: b.status };
  if (!optional(b, out, 'end_time', isoTime, false)) return NO;
  if (!optional(b, out, 'mean_pwv', pwv, true)) return NO;
  if (!optional(b, out, 'mean_elevation', elevation, true)) return NO;
  return out;
}

const FILE_KEYS = new Set(['name', 'path', 'size', 'checksum', 'file_type']);
/** The fields of `RawDataFileInput` from `b` into `out`; false when not sure. */
function fileFields(b: Obj, out: Obj): boolean {
  const name = text(b.name, 255);
  const path = text(b.path, 4096);
  const checksum = text(b.checksum, 255);
  const fileType = text(b.file_type, 50);
  if (name === NO || path === NO || !size(b.size) || checksum === NO || fileType === NO) return false;
  out.name = name;
  out.path = path;
  out.size = b.size;
  out.checksum = checksum;
  out.file_type = fileType;
  return true;
}

function fileInput(b: unknown): Obj | undefined {
  if (!isObject(b) || !onlyKeys(b, FILE_KEYS)) return NO;
  const out: Obj = {};
  return fileFields(b, out) ? out : NO;
}

/** An array of `RawDataFileInput` of at most `max` files (at least `min`), or NO. */
function files(v: unknown, min: number, max: number): Obj[] | undefined {
  if (!Array.isArray(v) || v.length < min || v.length > max) return NO;
  const out: Obj[] = new Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const f = fileInput(v[i]);
    if (f === NO) return NO;
    out[i] = f;
  }
  return out;
}

const CREATE_FILE_KEYS = new Set([...FILE_KEYS, 'executed_obs_unit_id', 'raw_data_package_id']);
function createRawDataFile(b: unknown): Obj | undefined {
  if (!isObject(b) || !onlyKeys(b, CREATE_FILE_KEYS) || !uuid(b.executed_obs_unit_id)) return NO;
  const out: Obj = {};
  if (!fileFields(b, out)) return NO;
  out.executed_obs_unit_id = lower(b.executed_obs_unit_id);
  return optional(b, out, 'raw_data_package_id', uuidOrNo, true) ? out : NO;
}

const BULK_KEYS = new Set(['executed_obs_unit_id', 'raw_data_package_id', 'files']);
function bulkRawDataFiles(b: unknown): Obj | undefined {
  if (!isObject(b) || !onlyKeys(b, BULK_KEYS) || !uuid(b.executed_obs_unit_id)) return NO;
  const out: Obj = { executed_obs_unit_id: lower(b.executed_obs_unit_id) };
  if (!optional(b, out, 'raw_data_package_id', uuidOrNo, true)) return NO;
  const list = files(b.files, 1, 10_000);
  if (list === NO) return NO;
  out.files = list;
  return out;
}

const PACKAGE_KEYS = new Set(['name', 'executed_obs_unit_id']);
function createRawDataPackage(b: unknown): Obj | undefined {
  if (!isObject(b) || !onlyKeys(b, PACKAGE_KEYS) || !uuid(b.executed_obs_unit_id)) return NO;
  const name = text(b.name, 255);
  return name === NO ? NO : { name, executed_obs_unit_id: lower(b.executed_obs_unit_id) };
}

const FINALIZE_KEYS = new Set(['size', 'checksum']);
function finalizeRawDataPackage(b: unknown): Obj | undefined {
  if (!isObject(b) || !onlyKeys(b, FINALIZE_KEYS) || !size(b.size)) return NO;
  const checksum = text(b.checksum, 255);
  return checksum === NO ? NO : { size: b.size, checksum };
}

const OBS_DATA_KEYS = new Set([
  'obs_unit_id', 'start_time', 'end_time', 'mean_pwv', 'mean_elevation', 'package_name', 'instrument_module_configuration_id',
]);
const CREATE_OBSERVATION_KEYS = new Set(['obs_data', 'raw_files']);
function createObservation(b: unknown): Obj | undefined {
  if (!isObject(b) || !onlyKeys(b, CREATE_OBSERVATION_KEYS)) return NO;
  const o = b.obs_data;
  if (!isObject(o) || !onlyKeys(o, OBS_DATA_KEYS) || !intRef(o.obs_unit_id)) return NO;
  const start = isoTime(o.start_time);
  if (start === NO) return NO;
  const obs: Obj = { obs_unit_id: o.obs_unit_id, start_time: start };
  if (!optional(o, obs, 'end_time', isoTime, true)) return NO;
  if (!optional(o, obs, 'mean_pwv', pwv, true)) return NO;
  if (!optional(o, obs, 'mean_elevation', elevation, true)) return NO;
  const packageName = text(o.package_name, 255);
  if (packageName === NO) return NO;
  obs.package_name = packageName;
  if (!optional(o, obs, 'instrument_module_configuration_id', ref, true)) return NO;
  const list = 'raw_files' in b ? files(b.raw_files, 0, 10_000) : [];
  return list === NO ? NO : { obs_data: obs, raw_files: list };
}

/** Path parameters `{id}` (not strict: zod drops other keys). */
const uuidParams = (p: unknown) => (isObject(p) && uuid(p.id) ? { id: lower(p.id) } : NO);

const FAST = new Map<ZodType, Fast>([
  [S.UuidParams, uuidParams],
  [S.StartObservation, startObservation],
  [S.FinishObservation, finishObservation],
  [S.CreateRawDataFile, createRawDataFile],
  [S.BulkRawDataFiles, bulkRawDataFiles],
  [S.CreateRawDataPackage, createRawDataPackage],
  [S.FinalizeRawDataPackage, finalizeRawDataPackage],
  [S.CreateObservation, createObservation],
]);

/** The fast path of a request schema, if it has one. */
export function fastPathOf(schema: ZodType): Fast | undefined {
  return FAST.get(schema);
}

/** The schemas with a fast path (for the tests that hold each to its schema). */
export const FAST_SCHEMAS: ReadonlyMap<ZodType, Fast> = FAST;
