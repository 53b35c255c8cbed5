import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from './support/cli.js';
import { startTestCentral, type TestCentral } from './support/central.js';
import { client } from './support/http.js';
import { COMMANDS } from '../src/cli/commands.js';

describe('opsdb CLI', () => {
  let c: TestCentral;
  let env: Record<string, string>;
  before(async () => {
    c = await startTestCentral('cli');
    env = { SITE_TYPE: 'main', DATABASE_URL: c.databaseUrl };
  });
  after(() => c.stop());

  it('prints help for itself and for every command', async () => {
    const top = await runCli(['--help']);
    assert.equal(top.code, 0);
    for (const name of Object.keys(COMMANDS)) assert.ok(top.stdout.includes(name), `help lists ${name}`);
    for (const name of Object.keys(COMMANDS)) {
      const r = await runCli([...name.split(' '), '--help']);
      assert.equal(r.code, 0, name);
      assert.match(r.stdout, new RegExp(`opsdb ${name}`));
    }
  });

  it('lists a group of commands: `opsdb buffer --help` (exit 0), `opsdb buffer` alone (exit 2)', async () => {
    const groups = [...new Set(Object.keys(COMMANDS).filter((n) => n.includes(' ')).map((n) => n.split(' ')[0]!))];
    assert.ok(groups.includes('buffer'));
    for (const group of groups) {
      const members = Object.keys(COMMANDS).filter((n) => n.startsWith(`${group} `));
      const help = await runCli([group, '--help']);
      assert.equal(help.code, 0, group);
      for (const m of members) assert.ok(help.stdout.includes(m), `${group} --help lists ${m}`);
      const bare = await runCli([group]);
      assert.equal(bare.code, 2, group);
      assert.match(bare.stderr, new RegExp(`"${group}" needs a command`));
    }
  });

  it('exits 2 on an unknown command or option', async () => {
    assert.equal((await runCli(['frobnicate'])).code, 2);
    assert.equal((await runCli(['migrate', '--no-such-flag'])).code, 2);
    const port = await runCli(['demo', '--port', 'abc']);
    assert.equal(port.code, 2);
    assert.match(port.stderr, /--port must be a port number, 0 to 65535 \(got "abc"\)/);
    const extra = await runCli(['migrate', 'extra', 'words'], env);
    assert.equal(extra.code, 2);
    assert.match(extra.stderr, /^opsdb migrate: takes no arguments, got "extra words"/);
    const spaced = await runCli(['user', 'add', 'Bad Name', '--role', 'viewer'], env);
    assert.equal(spaced.code, 2);
    assert.match(spaced.stderr, /"Bad Name" is not a user name/);
    const bogus = await runCli(['buffer', 'bogus']);
    assert.equal(bogus.code, 2);
    assert.match(bogus.stderr, /^opsdb: unknown buffer command "bogus"\n\nUsage: opsdb buffer <command>/);
    assert.match(bogus.stderr, /buffer wait-empty/);
    assert.doesNotMatch(bogus.stderr, /opsdb serve/, 'the group\'s commands, not the whole help');
    const noRole = await runCli(['user', 'add', 'x'], env);
    assert.equal(noRole.code, 2);
    assert.match(noRole.stderr, /--role is required/);
  });

  it('user add + token create give a working token, printed once on stdout', async () => {
    const add = await runCli(['user', 'add', 'carol', '--role', 'observer', '--email', 'carol@example.org'], env);
    assert.equal(add.code, 0, add.stderr);
    const again = await runCli(['user', 'add', 'carol', '--role', 'observer'], env);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists/);

    const tok = await runCli(['token', 'create', '--user', 'carol', '--expires-days', '30'], env);
    assert.equal(tok.code, 0, tok.stderr);
    const token = tok.stdout.trim();
    assert.match(token, /^ops_api_token_[A-Za-z0-9_-]{43}$/);
    assert.doesNotMatch(tok.stderr, new RegExp(token));
    const me = await client(c.url, token).get('/auth/me');
    assert.equal(me.status, 200);
    assert.equal(me.body.username, 'carol');
    assert.deepEqual(me.body.roles, ['observer']);

    const missing = await runCli(['token', 'create', '--user', 'nobody'], env);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no user "nobody"/);
  });

  it('rejects an unknown role', async () => {
    const r = await runCli(['user', 'add', 'dave', '--role', 'wizard'], env);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown role/);
  });

  it('seed is idempotent', async () => {
    const before = (await c.admin.get('/instruments/')).body;
    const seq = async () => Number((await c.db.query(`SELECT last_value FROM user_id_seq`)).rows[0].last_value);
    const users = await seq();
    const r = await runCli(['seed'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^already seeded \(2 instruments, 5 obs units\): nothing added/);
    assert.deepEqual((await c.admin.get('/instruments/')).body, before);
    // Seeding again takes no id: the next account gets the id it would have got without it.
    assert.equal(await seq(), users);
  });
});
