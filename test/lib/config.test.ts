import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { ConfigError, loadConfig, readEnvFile } from '../../src/lib/config.js';
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

  it('says what a number counts and that it takes no unit; a URL with credentials is refused', () => {
    const problems = (env: Record<string, string>) => {
      try {
        loadConfig({ env });
        return [];
      } catch (err) {
        return (err as ConfigError).problems;
      }
    };
    assert.deepEqual(problems({ BUFFER_MAX_BYTES: '1GB' }), ['BUFFER_MAX_BYTES: must be a whole number of bytes, with no unit after it (got "1GB")']);
    assert.deepEqual(problems({ RETRY_MAX_MS: '5m' }), ['RETRY_MAX_MS: must be a whole number of milliseconds, with no unit after it (got "5m")']);
    assert.deepEqual(problems({ BUFFER_MAX_BYTES: '10' }), ['BUFFER_MAX_BYTES: must be at least 1024 bytes (got "10")']);
    assert.deepEqual(problems({ PORT: '70000' }), ['PORT: must be at most 65535 (got "70000")']);
    // Only digits are a number: these were taken for 0 (a random port, no disk watermark), 1, 8080 and 10^9.
    for (const v of [' ', '0x1F90', '1e9']) assert.deepEqual(problems({ PORT: v }), [`PORT: must be a whole number (got ${JSON.stringify(v)})`]);
    assert.deepEqual(problems({ MIN_FREE_DISK_BYTES: ' ' }), ['MIN_FREE_DISK_BYTES: must be a whole number of bytes, with no unit after it (got " ")']);
    for (const toml of ['port = ""', 'port = true', 'port = []']) {
      assert.throws(() => loadConfig({ file: file('odd.toml', `${toml}\n`), env: {} }), /PORT: must be a whole number/, toml);
    }
    assert.equal(loadConfig({ env: { PORT: ' 8080 ' } }).port, 8080);
    assert.deepEqual(problems({ CENTRAL_URL: 'central.example.org', SITE_TOKEN: 't' }), ['CENTRAL_URL: must be an http:// or https:// URL, like https://ops-db.example.org']);
    // fetch cannot send credentials in a URL: every exchange failed as a "network" error, retried for ever.
    const creds = problems({ CENTRAL_URL: 'http://u:hunter2@127.0.0.1:1', SITE_TOKEN: 't' });
    assert.deepEqual(creds, ['CENTRAL_URL: must not hold a user name or password: the edge authenticates with SITE_TOKEN']);
  });

  it('needs SITE_TOKEN only for the daemon: the other edge commands work on DATA_DIR alone', () => {
    const env = { CENTRAL_URL: 'https://central.example' };
    assert.throws(() => loadConfig({ env }), /SITE_TOKEN: required/);
    assert.equal(loadConfig({ env, serving: false }).centralUrl, 'https://central.example');
  });

  it('reads an environment file as systemd does: KEY=VALUE, comments, quotes, escapes, continued lines', () => {
    const problems: string[] = [];
    const text = [
      '# the site token', 'SITE_TOKEN=ops_api_token_x', '', '; old', 'DATABASE_URL="postgresql://u:p\\"w@db/ops"',
      'LOG_LEVEL = warn', "REDIS_URL='redis://h:6379/\\0'", 'not a setting', 'SITE_NAME=north\\', '-site',
    ].join('\n');
    const vars = readEnvFile(file('unit.env', `${text}\n`), problems);
    assert.deepEqual(vars, {
      SITE_TOKEN: 'ops_api_token_x', DATABASE_URL: 'postgresql://u:p"w@db/ops', LOG_LEVEL: 'warn',
      REDIS_URL: 'redis://h:6379/\\0', SITE_NAME: 'north-site',
    });
    assert.deepEqual(problems, []);
    assert.equal(readEnvFile(join(dir, 'none.env'), problems), null);
    assert.match(problems[0]!, /none\.env: ENOENT/);
  });

  it('opsdb takes --environment-file, and points to it when a required setting is missing', async () => {
    const toml = file('central.toml', 'site_type = "main"\n');
    const missing = await runCli(['migrate', '--config', toml]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /DATABASE_URL: required when SITE_TYPE=main/);
    assert.match(missing.stderr, /--environment-file/);
    // A database URL from the file reaches the command (here a port nobody listens on: exit 1, not 2).
    const env = file('central.env', `DATABASE_URL=postgresql://opsdb@127.0.0.1:${await freePort()}/opsdb\n`);
    const given = await runCli(['migrate', '--config', toml, '--environment-file', env]);
    assert.equal(given.code, 1, given.stderr);
    assert.match(given.stderr, /ECONNREFUSED/);
    const absent = await runCli(['migrate', '--config', toml, '--environment-file', join(dir, 'absent.env')]);
    assert.equal(absent.code, 2);
    assert.match(absent.stderr, /environment file .*absent\.env: ENOENT/);
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
