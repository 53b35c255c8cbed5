/**
 * Bad input that every site must refuse with a clear 4xx (SPEC §2.8, §4):
 * the same table is run against central now and against the edge later.
 *
 * How a runner uses it:
 *  - Authenticate every request with an **admin** token (cases assume the
 *    caller may write and may update user 1's preferences).
 *  - Before the cases, create once, at the site under test:
 *      `{obs}` an executed_obs_unit started with `START_TIME_OF_OBS`
 *              (POST /executed_obs_units/start `{obs_unit_id:1,start_time:START_TIME_OF_OBS}`),
 *      `{pkg}` a raw_data_package of `{obs}` (POST /raw_data_package/).
 *    `{missing}` is a random UUID that exists nowhere.
 *  - Substitute placeholders with `fillPlaceholders` in `path`, `body` and `raw`.
 *  - Start the site with `MAX_BODY_BYTES` = `BAD_INPUT_MAX_BODY_BYTES`.
 *  - Expect exactly `expectStatus` (always 4xx), the error shape
 *    `{"error":{"code","message","details"}}` with a non-empty message, the
 *    code `expectCode` when given, and no row written anywhere.
 *  - `centralOnly` cases need data only central is sure to have (references
 *    to rows the edge may never have seen): an edge runner skips them or
 *    checks instead that the transaction ends up `failed` with that reason.
 */

export interface BadInputCase {
  name: string;
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** May contain `{obs}`, `{pkg}`, `{missing}`. */
  path: string;
  /** Sent as JSON; string values may contain placeholders. */
  body?: unknown;
  /** Sent byte for byte (malformed JSON, bytes that are not UTF-8, wrong media types, oversized bodies). */
  raw?: string | Buffer;
  headers?: Record<string, string>;
  expectStatus: number;
  expectCode?: string;
  /** The expectation holds at central; an edge may accept and let central decide. */
  centralOnly?: true;
}

/** The body limit the runner must configure (MAX_BODY_BYTES). */
export const BAD_INPUT_MAX_BODY_BYTES = 65_536;
/** When `{obs}` started: `end_time`s before it are invalid. */
export const START_TIME_OF_OBS = '2025-06-01T12:00:00.000Z';

export interface Placeholders {
  obs: string;
  pkg: string;
  missing: string;
}

/** Replaces `{obs}`, `{pkg}`, `{missing}` in a string or, deeply, in a JSON value. */
export function fillPlaceholders<T>(value: T, p: Placeholders): T {
  if (Buffer.isBuffer(value)) return value;
  if (typeof value === 'string') {
    return value.replace(/\{(obs|pkg|missing)\}/g, (_, k: keyof Placeholders) => p[k]) as T;
  }
  if (Array.isArray(value)) return value.map((v) => fillPlaceholders(v, p)) as T;
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fillPlaceholders(v, p)])) as T;
  }
  return value;
}

const file = (over: Record<string, unknown> = {}) => ({
  name: 'scan_0001.fits',
  path: '/data/raw/scan_0001.fits',
  size: 1024,
  checksum: 'sha256:abc',
  file_type: 'fits',
  ...over,
});

/** One valid request per write endpoint: the generic cases break it in one way each. */
const WRITES: { label: string; method: 'POST' | 'PUT'; path: string; valid: Record<string, unknown> }[] = [
  { label: 'start', method: 'POST', path: '/executed_obs_units/start', valid: { obs_unit_id: 1 } },
  {
    label: 'finish',
    method: 'PUT',
    path: '/executed_obs_units/{obs}/finish',
    valid: { status: 'success', end_time: '2025-06-01T13:00:00Z' },
  },
  { label: 'file', method: 'POST', path: '/raw_data_files/', valid: { ...file(), executed_obs_unit_id: '{obs}' } },
  { label: 'bulk', method: 'POST', path: '/raw_data_files/bulk', valid: { executed_obs_unit_id: '{obs}', files: [file()] } },
  { label: 'package', method: 'POST', path: '/raw_data_package/', valid: { name: 'pkg-1', executed_obs_unit_id: '{obs}' } },
  { label: 'finalize', method: 'PUT', path: '/raw_data_package/{pkg}/finalize', valid: { size: 10, checksum: 'sha256:def' } },
  {
    label: 'create-observation',
    method: 'POST',
    path: '/api/demo/create-observation',
    valid: {
      obs_data: { obs_unit_id: 1, start_time: '2025-06-02T00:00:00Z', end_time: '2025-06-02T01:00:00Z', package_name: 'p' },
      raw_files: [file()],
    },
  },
  { label: 'preferences', method: 'POST', path: '/api/demo/update-user-preferences', valid: { user_id: 1, preferences: { theme: 'dark' } } },
];

const oversized = (valid: Record<string, unknown>) =>
  JSON.stringify({ ...valid, padding: 'x'.repeat(BAD_INPUT_MAX_BODY_BYTES + 1024) });

const generic: BadInputCase[] = WRITES.flatMap(({ label, method, path, valid }) => [
  { name: `${label}: malformed JSON`, method, path, raw: '{"obs_unit_id": 1,', expectStatus: 400, expectCode: 'invalid_json' },
  { name: `${label}: empty body`, method, path, raw: '', expectStatus: 400, expectCode: 'empty_body' },
  {
    // Latin-1 text where UTF-8 is due: decoding it would store U+FFFD in place of each such letter.
    name: `${label}: body not valid UTF-8`,
    method,
    path,
    raw: Buffer.from(`{"caf\xe9":1,${JSON.stringify(valid).slice(1)}`, 'latin1'),
    expectStatus: 400,
    expectCode: 'invalid_json',
  },
  { name: `${label}: whitespace-only body`, method, path, raw: ' \n\t ', expectStatus: 400, expectCode: 'empty_body' },
  { name: `${label}: JSON array instead of object`, method, path, body: [valid], expectStatus: 422, expectCode: 'validation_error' },
  { name: `${label}: JSON string instead of object`, method, path, body: 'hello', expectStatus: 422, expectCode: 'validation_error' },
  { name: `${label}: JSON null`, method, path, raw: 'null', expectStatus: 422, expectCode: 'validation_error' },
  { name: `${label}: empty object (required fields missing)`, method, path, body: {}, expectStatus: 422, expectCode: 'validation_error' },
  {
    name: `${label}: unknown extra field`,
    method,
    path,
    body: { ...valid, surprise: true },
    expectStatus: 422,
    expectCode: 'validation_error',
  },
  {
    name: `${label}: wrong content-type (text/plain)`,
    method,
    path,
    raw: JSON.stringify(valid),
    headers: { 'content-type': 'text/plain' },
    expectStatus: 415,
    expectCode: 'unsupported_media_type',
  },
  {
    name: `${label}: form-encoded body`,
    method,
    path,
    raw: 'obs_unit_id=1',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    expectStatus: 415,
    expectCode: 'unsupported_media_type',
  },
  { name: `${label}: oversized body`, method, path, raw: oversized(valid), expectStatus: 413, expectCode: 'payload_too_large' },
]);

const V = { expectStatus: 422, expectCode: 'validation_error' } as const;
const REF = { expectStatus: 422, expectCode: 'reference_not_found', centralOnly: true } as const;
const long = (n: number) => 'a'.repeat(n);

const START = { method: 'POST', path: '/executed_obs_units/start' } as const;
const FINISH = { method: 'PUT', path: '/executed_obs_units/{obs}/finish' } as const;
const FILE = { method: 'POST', path: '/raw_data_files/' } as const;
const BULK = { method: 'POST', path: '/raw_data_files/bulk' } as const;
const PKG = { method: 'POST', path: '/raw_data_package/' } as const;
const FINALIZE = { method: 'PUT', path: '/raw_data_package/{pkg}/finalize' } as const;
const DEMO_OBS = { method: 'POST', path: '/api/demo/create-observation' } as const;
const PREFS = { method: 'POST', path: '/api/demo/update-user-preferences' } as const;
const obsData = (over: Record<string, unknown>) => ({
  obs_data: { obs_unit_id: 1, start_time: '2025-06-02T00:00:00Z', package_name: 'p', ...over },
  raw_files: [],
});
const oneFile = (over: Record<string, unknown>) => ({ ...file(over), executed_obs_unit_id: '{obs}' });

const specific: BadInputCase[] = [
  // POST /executed_obs_units/start
  { name: 'start: obs_unit_id as string', ...START, body: { obs_unit_id: '1' }, ...V },
  { name: 'start: obs_unit_id negative', ...START, body: { obs_unit_id: -1 }, ...V },
  { name: 'start: obs_unit_id fractional', ...START, body: { obs_unit_id: 1.5 }, ...V },
  { name: 'start: status other than running', ...START, body: { obs_unit_id: 1, status: 'exploded' }, ...V },
  { name: 'start: start_time not a date', ...START, body: { obs_unit_id: 1, start_time: 'yesterday' }, ...V },
  { name: 'start: start_time impossible date', ...START, body: { obs_unit_id: 1, start_time: '2025-02-30T00:00:00Z' }, ...V },
  { name: 'start: start_time as number', ...START, body: { obs_unit_id: 1, start_time: 1735689600 }, ...V },
  { name: 'start: mean_elevation above 90', ...START, body: { obs_unit_id: 1, mean_elevation: 90.5 }, ...V },
  { name: 'start: mean_elevation below -90', ...START, body: { obs_unit_id: 1, mean_elevation: -91 }, ...V },
  { name: 'start: mean_pwv negative', ...START, body: { obs_unit_id: 1, mean_pwv: -0.1 }, ...V },
  { name: 'start: mean_pwv "NaN"', ...START, body: { obs_unit_id: 1, mean_pwv: 'NaN' }, ...V },
  { name: 'start: mean_pwv overflowing to Infinity', ...START, raw: '{"obs_unit_id":1,"mean_pwv":1e999}', ...V },
  { name: 'start: instrument_module_configuration_id as string', ...START, body: { obs_unit_id: 1, instrument_module_configuration_id: 'x' }, ...V },
  { name: 'start: obs_unit_id 999999 does not exist', ...START, body: { obs_unit_id: 999999 }, ...REF },
  {
    name: 'start: instrument_module_configuration_id 999999 does not exist',
    ...START,
    body: { obs_unit_id: 1, instrument_module_configuration_id: 999999 },
    ...REF,
  },

  // PUT /executed_obs_units/{id}/finish
  { name: 'finish: unknown status "exploded"', ...FINISH, body: { status: 'exploded' }, ...V },
  { name: 'finish: status "running" is not an end state', ...FINISH, body: { status: 'running' }, ...V },
  { name: 'finish: status as number', ...FINISH, body: { status: 1 }, ...V },
  { name: 'finish: end_time not a date', ...FINISH, body: { status: 'success', end_time: 'soon' }, ...V },
  { name: 'finish: end_time before start_time', ...FINISH, body: { status: 'success', end_time: '2025-06-01T11:00:00Z' }, ...V },
  { name: 'finish: mean_elevation 180', ...FINISH, body: { status: 'success', mean_elevation: 180 }, ...V },
  { name: 'finish: path id not a UUID', method: 'PUT', path: '/executed_obs_units/not-a-uuid/finish', body: { status: 'success' }, ...V },
  { name: 'finish: path id is an integer', method: 'PUT', path: '/executed_obs_units/1/finish', body: { status: 'success' }, ...V },
  {
    name: 'finish: observation that does not exist',
    method: 'PUT',
    path: '/executed_obs_units/{missing}/finish',
    body: { status: 'success' },
    expectStatus: 404,
    expectCode: 'not_found',
    centralOnly: true,
  },

  // POST /raw_data_files/
  { name: 'file: executed_obs_unit_id not a UUID', ...FILE, body: { ...file(), executed_obs_unit_id: 'obs-1' }, ...V },
  { name: 'file: raw_data_package_id not a UUID', ...FILE, body: { ...oneFile({}), raw_data_package_id: 42 }, ...V },
  { name: 'file: negative size', ...FILE, body: oneFile({ size: -1 }), ...V },
  { name: 'file: fractional size', ...FILE, body: oneFile({ size: 1.5 }), ...V },
  { name: 'file: size as string', ...FILE, body: oneFile({ size: '1024' }), ...V },
  { name: 'file: size beyond 2^53', ...FILE, raw: JSON.stringify(oneFile({ size: 0 })).replace('"size":0', '"size":18014398509481984'), ...V },
  { name: 'file: name as number', ...FILE, body: oneFile({ name: 123 }), ...V },
  { name: 'file: empty name', ...FILE, body: oneFile({ name: '' }), ...V },
  { name: 'file: blank name', ...FILE, body: oneFile({ name: '   ' }), ...V },
  { name: 'file: name longer than 255', ...FILE, body: oneFile({ name: long(256) }), ...V },
  { name: 'file: path longer than 4096', ...FILE, body: oneFile({ path: long(4097) }), ...V },
  { name: 'file: file_type longer than 50', ...FILE, body: oneFile({ file_type: long(51) }), ...V },
  { name: 'file: checksum missing', ...FILE, body: { ...oneFile({}), checksum: undefined }, ...V },
  { name: 'file: executed_obs_unit_id that does not exist', ...FILE, body: { ...file(), executed_obs_unit_id: '{missing}' }, ...REF },
  { name: 'file: raw_data_package_id that does not exist', ...FILE, body: { ...oneFile({}), raw_data_package_id: '{missing}' }, ...REF },

  // POST /raw_data_files/bulk
  { name: 'bulk: no files', ...BULK, body: { executed_obs_unit_id: '{obs}', files: [] }, ...V },
  { name: 'bulk: files is an object', ...BULK, body: { executed_obs_unit_id: '{obs}', files: file() }, ...V },
  { name: 'bulk: one bad file among good ones', ...BULK, body: { executed_obs_unit_id: '{obs}', files: [file(), file({ size: -5 })] }, ...V },
  { name: 'bulk: unknown field inside a file', ...BULK, body: { executed_obs_unit_id: '{obs}', files: [file({ owner: 'me' })] }, ...V },
  { name: 'bulk: executed_obs_unit_id not a UUID', ...BULK, body: { executed_obs_unit_id: 12, files: [file()] }, ...V },
  { name: 'bulk: executed_obs_unit_id that does not exist', ...BULK, body: { executed_obs_unit_id: '{missing}', files: [file()] }, ...REF },

  // POST /raw_data_package/
  { name: 'package: name longer than 255', ...PKG, body: { name: long(256), executed_obs_unit_id: '{obs}' }, ...V },
  { name: 'package: name as number', ...PKG, body: { name: 7, executed_obs_unit_id: '{obs}' }, ...V },
  { name: 'package: executed_obs_unit_id not a UUID', ...PKG, body: { name: 'p', executed_obs_unit_id: 'zzz' }, ...V },
  { name: 'package: executed_obs_unit_id that does not exist', ...PKG, body: { name: 'p', executed_obs_unit_id: '{missing}' }, ...REF },

  // PUT /raw_data_package/{id}/finalize
  { name: 'finalize: negative size', ...FINALIZE, body: { size: -1, checksum: 'c' }, ...V },
  { name: 'finalize: size as string', ...FINALIZE, body: { size: '10', checksum: 'c' }, ...V },
  { name: 'finalize: empty checksum', ...FINALIZE, body: { size: 10, checksum: '' }, ...V },
  { name: 'finalize: path id not a UUID', method: 'PUT', path: '/raw_data_package/pkg-1/finalize', body: { size: 1, checksum: 'c' }, ...V },
  {
    name: 'finalize: package that does not exist',
    method: 'PUT',
    path: '/raw_data_package/{missing}/finalize',
    body: { size: 1, checksum: 'c' },
    expectStatus: 404,
    expectCode: 'not_found',
    centralOnly: true,
  },

  // POST /api/demo/create-observation
  { name: 'create-observation: obs_data missing', ...DEMO_OBS, body: { raw_files: [] }, ...V },
  { name: 'create-observation: start_time not a date', ...DEMO_OBS, body: obsData({ start_time: '01/06/2025' }), ...V },
  {
    name: 'create-observation: end_time before start_time',
    ...DEMO_OBS,
    body: obsData({ end_time: '2025-06-01T23:00:00Z' }),
    ...V,
  },
  { name: 'create-observation: mean_elevation 91', ...DEMO_OBS, body: obsData({ mean_elevation: 91 }), ...V },
  { name: 'create-observation: package_name too long', ...DEMO_OBS, body: obsData({ package_name: long(256) }), ...V },
  { name: 'create-observation: raw_files not an array', ...DEMO_OBS, body: { ...obsData({}), raw_files: 'a.fits' }, ...V },
  { name: 'create-observation: a raw file with negative size', ...DEMO_OBS, body: { ...obsData({}), raw_files: [file({ size: -1 })] }, ...V },
  { name: 'create-observation: obs_unit_id 999999 does not exist', ...DEMO_OBS, body: obsData({ obs_unit_id: 999999 }), ...REF },
  {
    name: 'create-observation: instrument_module_configuration_id 999999 does not exist',
    ...DEMO_OBS,
    body: obsData({ instrument_module_configuration_id: 999999 }),
    ...REF,
  },

  // POST /api/demo/update-user-preferences
  { name: 'preferences: user_id as string', ...PREFS, body: { user_id: '1', preferences: {} }, ...V },
  { name: 'preferences: user_id zero', ...PREFS, body: { user_id: 0, preferences: {} }, ...V },
  { name: 'preferences: user_id beyond the integer range', ...PREFS, body: { user_id: -99999999999, preferences: {} }, ...V },
  { name: 'preferences: preferences is an array', ...PREFS, body: { user_id: 1, preferences: ['dark'] }, ...V },
  { name: 'preferences: preferences is a string', ...PREFS, body: { user_id: 1, preferences: 'dark' }, ...V },
  // Free-form JSON passes the schema, so only the body's own text checks stand in the way of NUL and lone
  // surrogates. (Nesting is refused twice over: by the body's 64 levels and by the preferences' own 16.)
  { name: 'preferences: NUL character in a free-form value', ...PREFS, body: { user_id: 1, preferences: { note: 'a\u0000b' } }, ...V },
  { name: 'preferences: NUL character in a free-form key', ...PREFS, body: { user_id: 1, preferences: { 'a\u0000b': 1 } }, ...V },
  { name: 'preferences: lone UTF-16 surrogate in a free-form value', ...PREFS, raw: '{"user_id":1,"preferences":{"note":"a\\ud800b"}}', ...V },
  { name: 'package: lone UTF-16 surrogate in its name', ...PKG, raw: '{"name":"pkg-\\udfff","executed_obs_unit_id":"{obs}"}', ...V },
  { name: 'preferences: body nested 65 levels deep', ...PREFS, raw: `{"user_id":1,"preferences":{"x":${'['.repeat(63)}${']'.repeat(63)}}}`, ...V },
  { name: 'preferences: user 999999 does not exist', ...PREFS, body: { user_id: 999999, preferences: {} }, ...REF },

  // Reads: query strings and path ids
  { name: 'list: limit=0', method: 'GET', path: '/executed_obs_units/?limit=0', ...V },
  { name: 'list: limit=abc', method: 'GET', path: '/executed_obs_units/?limit=abc', ...V },
  { name: 'list: limit given twice', method: 'GET', path: '/executed_obs_units/?limit=1&limit=2', ...V },
  { name: 'list: limit=100000', method: 'GET', path: '/executed_obs_units/?limit=100000', ...V },
  { name: 'list: status=bogus', method: 'GET', path: '/executed_obs_units/?status=bogus', ...V },
  { name: 'list: cursor=garbage', method: 'GET', path: '/executed_obs_units/?cursor=garbage', ...V },
  {
    name: 'list: cursor that decodes but names no UUID',
    method: 'GET',
    path: `/executed_obs_units/?cursor=${Buffer.from(JSON.stringify({ t: '2025-01-01T00:00:00Z', id: 'x' })).toString('base64url')}`,
    ...V,
  },
  { name: 'list: start_after=notadate', method: 'GET', path: '/executed_obs_units/?start_after=notadate', ...V },
  { name: 'list: obs_unit_id=abc', method: 'GET', path: '/executed_obs_units/?obs_unit_id=abc', ...V },
  { name: 'list: unknown parameter', method: 'GET', path: '/executed_obs_units/?colour=red', ...V },
  { name: 'obs units: limit=0', method: 'GET', path: '/obs_units/?limit=0', ...V },
  { name: 'get observation: id not a UUID', method: 'GET', path: '/executed_obs_units/not-a-uuid', ...V },
  { name: 'get observation: missing', method: 'GET', path: '/executed_obs_units/{missing}', expectStatus: 404, expectCode: 'not_found' },
  { name: 'get file: id not a UUID', method: 'GET', path: '/raw_data_files/123', ...V },
  { name: 'get file: missing', method: 'GET', path: '/raw_data_files/{missing}', expectStatus: 404, expectCode: 'not_found' },
  { name: 'get package: id not a UUID', method: 'GET', path: '/raw_data_package/xyz', ...V },
  { name: 'get package: missing', method: 'GET', path: '/raw_data_package/{missing}', expectStatus: 404, expectCode: 'not_found' },
  { name: 'get transaction: id not a UUID', method: 'GET', path: '/api/transactions/42', ...V },
  { name: 'get transaction: missing', method: 'GET', path: '/api/transactions/{missing}', expectStatus: 404, expectCode: 'not_found' },
  { name: 'get instrument: id not a number', method: 'GET', path: '/instruments/chai', ...V },
  { name: 'get instrument: id zero', method: 'GET', path: '/instruments/0', ...V },
  { name: 'get instrument: missing', method: 'GET', path: '/instruments/999999', expectStatus: 404, expectCode: 'not_found' },
  // Values the schema lets through but the database cannot hold: still the client's fault, so 422.
  { name: 'get instrument: id beyond the integer range', method: 'GET', path: '/instruments/99999999999', ...V },
  { name: 'list: obs_unit_id beyond the integer range', method: 'GET', path: '/executed_obs_units/?obs_unit_id=99999999999', ...V },
  { name: 'list: start_after in year 0000', method: 'GET', path: '/executed_obs_units/?start_after=0000-01-01T00:00:00Z', ...V },
  { name: 'list: site with a NUL byte', method: 'GET', path: '/executed_obs_units/?site=%00', ...V },
  {
    name: 'list: cursor whose time is not a timestamp',
    method: 'GET',
    path: `/executed_obs_units/?cursor=${Buffer.from(JSON.stringify({ t: '0', id: '00000000-0000-4000-8000-000000000000' })).toString('base64url')}`,
    ...V,
  },
  { name: 'obs units: observing_program_id beyond the integer range', method: 'GET', path: '/obs_units/?observing_program_id=99999999999', ...V },

  // API tokens (served by every site)
  { name: 'tokens: name missing', method: 'POST', path: '/api/tokens/', body: { scopes: [] }, ...V },
  { name: 'tokens: unknown scope', method: 'POST', path: '/api/tokens/', body: { name: 't', scopes: ['root'] }, ...V },
  { name: 'tokens: expires_at not a date', method: 'POST', path: '/api/tokens/', body: { name: 't', expires_at: 'never' }, ...V },
  { name: 'tokens: expires_at already past (a token that could never be used)', method: 'POST', path: '/api/tokens/', body: { name: 't', expires_at: '2000-01-01T00:00:00Z' }, ...V },
  { name: 'tokens: expires_at in year 0000', method: 'POST', path: '/api/tokens/', body: { name: 't', expires_at: '0000-01-01T00:00:00Z' }, ...V },
  { name: 'tokens: user_id beyond the integer range', method: 'POST', path: '/api/tokens/', body: { name: 't', user_id: 99999999999 }, ...V },
  { name: 'tokens: list with user_id beyond the integer range', method: 'GET', path: '/api/tokens/?user_id=99999999999', ...V },
  { name: 'tokens: list with unknown parameter', method: 'GET', path: '/api/tokens/?mine=1', ...V },
  { name: 'tokens: revoke id not a number', method: 'DELETE', path: '/api/tokens/abc', ...V },
  { name: 'tokens: revoke id beyond the integer range', method: 'DELETE', path: '/api/tokens/99999999999', ...V },
  { name: 'tokens: revoke a token that does not exist', method: 'DELETE', path: '/api/tokens/999999', expectStatus: 404, expectCode: 'not_found' },
];

/** Every case, writes first then reads. Names are unique. */
export const BAD_INPUT_CASES: readonly BadInputCase[] = [...generic, ...specific];
