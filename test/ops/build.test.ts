// The production form: `npm run build` compiles to dist/ for the systemd units
// (plain node: no TypeScript loader at run time). Build into a scratch folder
// inside the checkout (so node_modules resolve) and run the result for real.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestDatabase } from '../support/services.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

describe('npm run build (dist/, what the systemd units run)', () => {
  mkdirSync(join(ROOT, '.tmp'), { recursive: true });
  const out = mkdtempSync(join(ROOT, '.tmp', 'build-'));
  after(() => rmSync(out, { recursive: true, force: true }));

  it('type-checks everything, tests and benchmarks included (tsx runs them without checking)', () => {
    const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.json')], { encoding: 'utf8' });
    assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
  });

  it('compiles, carries the migrations, and the built CLI migrates a real database', async () => {
    const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', out], { encoding: 'utf8' });
    assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
    cpSync(join(ROOT, 'src/central/migrations'), join(out, 'central/migrations'), { recursive: true, filter: (f) => !f.endsWith('.ts') });
    assert.ok(readdirSync(join(out, 'central/migrations')).some((f) => f.endsWith('.sql')));
    const help = spawnSync(process.execPath, [join(out, 'cli/main.js'), '--help'], { encoding: 'utf8' });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /buffer wait-empty/);
    const db = await createTestDatabase('build');
    try {
      const migrate = spawnSync(process.execPath, [join(out, 'cli/main.js'), 'migrate'], { encoding: 'utf8', env: { PATH: process.env.PATH, DATABASE_URL: db.url } });
      assert.equal(migrate.status, 0, migrate.stderr);
      assert.match(migrate.stdout, /applied: 001_initial/);
    } finally {
      await db.drop();
    }
  });
});
