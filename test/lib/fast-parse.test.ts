// Each fast path (src/lib/api/fast-parse.ts) against its zod schema, over valid bodies and thousands of
// mutations of them: whatever the fast path returns, zod returns the same (values, key order); whatever zod
// accepts, the fast path takes (so the fast path is really the one that runs); the rest is left to zod.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ZodType } from 'zod';
import * as S from '../../src/lib/api/schemas.js';
import { FAST_SCHEMAS, fastPathOf } from '../../src/lib/api/fast-parse.js';

const V7 = '01936a2e-7b4c-7d3e-9a1b-2c3d4e5f6a7b';
const V4 = 'f47ac10b-58cc-4372-a567-0e02b2c3d479';
const FILE = { name: 'a.fits', path: '/data/a.fits', size: 1_024_000, checksum: 'sha:a', file_type: 'fits' };

const VALID: [string, ZodType, unknown[]][] = [
  ['UuidParams', S.UuidParams, [{ id: V7 }, { id: V4.toUpperCase() }]],
  ['StartObservation', S.StartObservation, [
    { obs_unit_id: 1 },
    { obs_unit_id: 7, start_time: '2025-01-01T00:00:00Z', status: 'running', mean_pwv: 2.5, mean_elevation: 45, instrument_module_configuration_id: 3 },
    { obs_unit_id: 7, mean_pwv: null, mean_elevation: null, instrument_module_configuration_id: null },
  ]],
  ['FinishObservation', S.FinishObservation, [
    { status: 'success' },
    { status: 'failed', end_time: '2025-01-01T01:00:00.5+02:00', mean_pwv: 0, mean_elevation: -90 },
  ]],
  ['CreateRawDataFile', S.CreateRawDataFile, [
    { ...FILE, executed_obs_unit_id: V7 },
    { ...FILE, executed_obs_unit_id: V7, raw_data_package_id: V4 },
    { ...FILE, executed_obs_unit_id: V7, raw_data_package_id: null },
  ]],
  ['BulkRawDataFiles', S.BulkRawDataFiles, [
    { executed_obs_unit_id: V7, files: [FILE] },
    { executed_obs_unit_id: V7, raw_data_package_id: V4, files: [FILE, { ...FILE, name: ' b.fits ' }] },
  ]],
  ['CreateRawDataPackage', S.CreateRawDataPackage, [{ name: 'pkg', executed_obs_unit_id: V7 }]],
  ['FinalizeRawDataPackage', S.FinalizeRawDataPackage, [{ size: 0, checksum: 'sha256:00' }]],
  ['CreateObservation', S.CreateObservation, [
    { obs_data: { obs_unit_id: 1, start_time: '2025-01-01T00:00:00Z', package_name: 'p' } },
    {
      obs_data: {
        obs_unit_id: 1, start_time: '2025-01-01T00:00:00Z', end_time: '2025-01-01T01:00:00Z', mean_pwv: 2.5, mean_elevation: 45,
        package_name: 'bench_package', instrument_module_configuration_id: 1,
      },
      raw_files: [FILE, { ...FILE, name: 'b.fits' }, { ...FILE, name: 'c.fits' }],
    },
    { obs_data: { obs_unit_id: 1, start_time: '2025-01-01T00:00:00Z', end_time: null, package_name: 'p' }, raw_files: [] },
  ]],
];

/** Values put in place of each value of a valid body: edges of every rule the schemas have. */
const SWAPS: unknown[] = [
  undefined, null, true, false, 0, -0, 1, -1, 1.5, 45, 2_147_483_647, 2_147_483_648, Number.MAX_SAFE_INTEGER,
  Number.MAX_SAFE_INTEGER + 1, 1e308, -1e308, -90, 90, 90.0001, -90.5, '', ' ', '\t', ' a ', 'a', '1',
  'x'.repeat(50), 'x'.repeat(51), ` ${'x'.repeat(50)} `, 'x'.repeat(255), 'x'.repeat(256), ` ${'x'.repeat(255)}\n`,
  'x'.repeat(4096), 'x'.repeat(4097),
  'running', 'success', 'failed', 'aborted', 'interrupted', 'RUNNING', 'open',
  V7, V4, V4.toUpperCase(), '00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '01936a2e-7b4c-9d3e-9a1b-2c3d4e5f6a7b', '01936a2e-7b4c-7d3e-7a1b-2c3d4e5f6a7b', '01936a2e7b4c7d3e9a1b2c3d4e5f6a7b', ` ${V7}`,
  '2025-01-01T00:00:00Z', '2025-01-01T00:00:00.123456Z', '2025-01-01T00:00:00+05:30', '2025-01-01T00:00:00-00:00',
  '2025-02-29T00:00:00Z', '2024-02-29T00:00:00Z', '2025-04-31T00:00:00Z', '2025-01-01T24:00:00Z', '2025-01-01T00:00Z',
  '2025-01-01', '2025-01-01T00:00:00', '0000-01-01T00:00:00Z', '0001-01-01T00:30:00+01:00', '9999-12-31T23:59:59Z',
  '9999-12-31T23:59:59-01:00', '2025-01-01t00:00:00z',
  [], {}, [FILE], [{ ...FILE, extra: 1 }], [null], { id: V7 },
];

/** Every way of changing one place in `value`: each swap at each path, a key removed, an unknown key added. */
function* mutants(value: unknown): Generator<unknown> {
  for (const s of SWAPS) if (s !== undefined) yield s;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      for (const m of mutants(value[i])) yield value.map((v, j) => (j === i ? m : v));
      yield value.filter((_, j) => j !== i);
    }
    yield [...value, value[0]];
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  const o = value as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    for (const m of mutants(o[k])) yield m === undefined ? without(o, k) : { ...o, [k]: m };
    yield without(o, k);
  }
  yield { ...o, unexpected: 1 };
  if (Object.keys(o).length > 0) yield JSON.parse(`{"__proto__": {"x": 1}, ${JSON.stringify(o).slice(1)}`);
  yield Object.assign(Object.create(null), o);
}

function without(o: Record<string, unknown>, key: string) {
  const { [key]: _, ...rest } = o;
  return rest;
}

/** A fixed pseudo-random sequence (so a failure repeats): which pairs of changes are tried. */
let seed = 42;
const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);

/** The valid bodies, each of their mutants, and a sample of mutants of mutants. */
function* bodies(valid: unknown[]): Generator<unknown> {
  for (const v of valid) {
    yield v;
    for (const m of mutants(v)) {
      yield m;
      // Two changes at once, at a few places: most bugs of a validator sit where rules meet.
      if (typeof m === 'object' && m !== null && !Array.isArray(m)) for (const n of mutants(m)) if (random() < 0.01) yield n;
    }
  }
}

describe('fast paths agree with their zod schemas', () => {
  it('every schema with a fast path is checked here', () => {
    assert.deepEqual(new Set(VALID.map(([, s]) => s)), new Set(FAST_SCHEMAS.keys()));
  });

  for (const [name, schema, valid] of VALID) {
    it(name, () => {
      const fast = fastPathOf(schema)!;
      let tried = 0;
      let accepted = 0;
      let refused = 0;
      for (const body of bodies(valid)) {
        tried += 1;
        const expected = schema.safeParse(body);
        const got = fast(body);
        const shown = () => JSON.stringify(body)?.slice(0, 300);
        if (expected.success) {
          accepted += 1;
          assert.notEqual(got, undefined, `${name}: zod accepts but the fast path left it to zod: ${shown()}`);
          assert.deepStrictEqual(got, expected.data, `${name}: different value for ${shown()}`);
          assert.deepEqual(Object.keys(got as object), Object.keys(expected.data as object), `${name}: key order for ${shown()}`);
          assert.equal(JSON.stringify(got), JSON.stringify(expected.data));
        } else {
          refused += 1;
          assert.equal(got, undefined, `${name}: the fast path accepted what zod refuses (${expected.error.issues[0]?.message}): ${shown()}`);
        }
      }
      // The generator must reach both sides of the schema, or this test proves nothing.
      assert.ok(accepted >= valid.length && refused > tried / 4, `${name}: ${accepted} accepted, ${refused} refused of ${tried}`);
    });
  }

  it('a body the fast path takes is not the caller’s object (defaults and trimmed text are fresh)', () => {
    const body = { obs_data: { obs_unit_id: 1, start_time: '2025-01-01T00:00:00Z', package_name: ' p ' } };
    const out = fastPathOf(S.CreateObservation)!(body) as { obs_data: unknown; raw_files: unknown[] };
    assert.notEqual(out.obs_data, body.obs_data);
    assert.deepEqual(out.raw_files, []);
    assert.equal((out.obs_data as { package_name: string }).package_name, 'p');
  });
});
