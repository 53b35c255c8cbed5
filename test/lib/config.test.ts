import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { ConfigError, loadConfig } from '../../src/lib/config.js';
import { runCli } from '../support/cli.js';
import { freePort } from '../support/ports.js';

const dir = mkdtempSync(join(tmpdir(), 'opsdb-config-'));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

describe('config', () => {
  it('has working defaults for an edge', () => {
    const c = loadConfig({ env: {} });
    assert.equal(c.siteType, 'secondary');
    assert.equal(c.port, 8000);
    assert.equal(c.bufferBackend, 'sqlite');
    assert.equal(c.demoMode, false);
    assert.ok(Object.isFrozen(c));
  });

  it('reads a TOML file and lets environment variables override it', () => {
    const p = file('a.toml', 'site_type = "main"\nsite_name = "central"\ndatabase_url = "postgres://u:pw@db/ops"\nport = 9001\nsync_batch_size = 50\n');
    const c = loadConfig({ file: p, env: { PORT: '9100', DEMO_MODE: 'true' } });
    assert.equal(c.siteType, 'main');
    assert.equal(c.siteName, 'central');
    assert.equal(c.port, 9100);
    assert.equal(c.syncBatchSize, 50);
    assert.equal(c.demoMode, true);
  });

  it('lists every problem at once', () => {
    const p = file('bad.toml', 'site_type = "moon"\nport = 70000\nretry_base_ms = -1\nbogus_key = 1\n');
    try {
      loadConfig({ file: p, env: { LOG_LEVEL: 'loud' } });
      assert.fail('expected a ConfigError');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      const text = err.problems.join('\n');
      for (const key of ['SITE_TYPE', 'PORT', 'RETRY_BASE_MS', 'LOG_LEVEL', 'BOGUS_KEY']) assert.match(text, new RegExp(key));
      assert.ok(err.problems.length >= 5);
    }
  });

  it('asks for what a site type needs', () => {
    assert.throws(() => loadConfig({ env: { SITE_TYPE: 'main' } }), /DATABASE_URL: required when SITE_TYPE=main/);
    assert.throws(() => loadConfig({ env: { CENTRAL_URL: 'https://central.example' } }), /SITE_TOKEN: required/);
  });

  it('never shows secrets when printed or logged', () => {
    const c = loadConfig({ env: { SITE_TYPE: 'main', DATABASE_URL: 'postgres://u:hunter2@db/ops', SITE_TOKEN: 'ops_api_token_secret' } });
    assert.equal(c.databaseUrl, 'postgres://u:hunter2@db/ops');
    assert.doesNotMatch(JSON.stringify(c), /hunter2|secret/);
    assert.doesNotMatch(inspect(c), /hunter2|secret/);
    try {
      loadConfig({ env: { SITE_TYPE: 'main', DATABASE_URL: 'mysql://u:hunter2@db' } });
      assert.fail('expected a ConfigError');
    } catch (err) {
      assert.match((err as Error).message, /DATABASE_URL/);
      assert.doesNotMatch((err as Error).message, /hunter2/);
    }
  });

  it('reports an unreadable or malformed file', () => {
    assert.throws(() => loadConfig({ file: join(dir, 'missing.toml'), env: {} }), /ENOENT/);
    assert.throws(() => loadConfig({ file: file('broken.toml', 'site_type = \n'), env: {} }), /not valid TOML/);
  });

  it('opsdb serve exits 2 with every problem before opening its port', async () => {
    const port = await freePort();
    const r = await runCli(['serve'], { SITE_TYPE: 'main', PORT: String(port), SYNC_BATCH_SIZE: '0', LOG_LEVEL: 'nope' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /DATABASE_URL/);
    assert.match(r.stderr, /SYNC_BATCH_SIZE/);
    assert.match(r.stderr, /LOG_LEVEL/);
  });
});
