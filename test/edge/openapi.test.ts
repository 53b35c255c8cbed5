// The OpenAPI document lists what each call can answer, so a generated client knows its errors:
// every status the bad-input table expects of a call (at the edge and at central) is documented
// for that call, and so are the buffered writes' 503/507 and /health's 503.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startTestEdge, type TestEdge } from '../support/edge.js';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { BAD_INPUT_CASES, fillPlaceholders } from '../support/bad-input-cases.js';

type Spec = { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };

/** The spec path (`/executed_obs_units/{id}/finish`) that a concrete path matches. */
function specPath(spec: Spec, path: string): string | undefined {
  const bare = path.split('?')[0]!;
  return Object.keys(spec.paths).find((p) => new RegExp(`^${p.replace(/\{\w+\}/g, '[^/]+')}$`).test(bare));
}

describe('/openapi.json lists the answers', () => {
  let edge: TestEdge;
  let central: TestCentral;
  const specs: Record<string, Spec> = {};
  before(async () => {
    edge = await startTestEdge('openapi');
    central = await startTestCentral('openapi', { LOG_LEVEL: 'silent' });
    specs.edge = (await edge.anonymous.get('/openapi.json')).body;
    specs.central = (await fetch(`${central.url}/openapi.json`).then((r) => r.json())) as Spec;
  });
  after(async () => {
    await edge?.stop();
    await central?.stop();
  });

  for (const site of ['edge', 'central'] as const) {
    it(`${site}: every status of the bad-input table is documented for its call`, () => {
      const spec = specs[site]!;
      const missing: string[] = [];
      for (const c of BAD_INPUT_CASES) {
        if (site === 'edge' && c.centralOnly) continue;
        const path = fillPlaceholders(c.path, { obs: randomUUID(), pkg: randomUUID(), missing: randomUUID() });
        const p = specPath(spec, path);
        if (!p) {
          missing.push(`${c.method} ${c.path}: no such path`);
          continue;
        }
        const responses = spec.paths[p]![c.method.toLowerCase()]?.responses ?? {};
        if (!(String(c.expectStatus) in responses)) missing.push(`${c.method} ${p}: ${c.expectStatus} (${c.name})`);
      }
      assert.deepEqual([...new Set(missing)], []);
    });
  }

  it('edge: buffered writes list 503 and 507, /health its 503 with the health body', () => {
    const spec = specs.edge!;
    for (const [path, method] of [['/executed_obs_units/start', 'post'], ['/executed_obs_units/{id}/finish', 'put'], ['/api/demo/create-observation', 'post'], ['/api/demo/update-user-preferences', 'post']] as const) {
      const r = spec.paths[path]![method]!.responses;
      assert.ok('503' in r && '507' in r, `${method} ${path}: ${Object.keys(r).join(', ')}`);
    }
    const health = spec.paths['/health']!.get!.responses['503'] as { content: { 'application/json': { schema: { $ref?: string } } } };
    assert.match(health.content['application/json'].schema.$ref ?? '', /Health/);
    assert.ok(!('507' in specs.central!.paths['/executed_obs_units/start']!.post!.responses), 'central buffers nothing');
  });
});
