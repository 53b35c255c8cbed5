// What an operator gets from the CLI when the host is set up wrong: a DATA_DIR this user cannot write (the
// units run as opsdb; an operator runs commands as root or as themself), and a port already taken. Found by
// an operator walkthrough of the docs: SQLite said only "unable to open database file", and serve only
// "listen EADDRINUSE". Real processes; the unwritable DATA_DIR is a read-only tmpfs (the tests run as root,
// like CI, and root writes wherever permissions alone forbid it; without root the mount fails, saying so).
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../support/cli.js';
import { freePort } from '../support/ports.js';

const dir = mkdtempSync(join(tmpdir(), 'opsdb-operator-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('operator messages for a host set up wrong', () => {
  it('a DATA_DIR this user cannot write: the file, the directory, the user and the fix', async () => {
    const dataDir = mkdtempSync(join(dir, 'read-only-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', dataDir]);
    try {
      const env = { SITE_TYPE: 'secondary', DATA_DIR: dataDir, PORT: String(await freePort()), LOG_LEVEL: 'silent' };
      for (const args of [['serve'], ['user', 'add', 'night-operator', '--role', 'observer']]) {
        const r = await runCli(args, env);
        assert.equal(r.code, 1, `${args[0]}: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, new RegExp(`cannot open ${dataDir}/(daemon\\.lock|local\\.db): unable to open database file\\. Its directory ${dataDir} must exist, and it and the file be writable by user \\w+`));
        assert.match(r.stderr, /run opsdb commands on its DATA_DIR as that user \(sudo -u opsdb opsdb …\)/);
      }
    } finally {
      execFileSync('umount', [dataDir]);
    }
  });

  it('a port already taken: which settings move it', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (taken.address() as { port: number }).port;
      const r = await runCli(['serve'], { SITE_TYPE: 'secondary', DATA_DIR: mkdtempSync(join(dir, 'port-')), PORT: String(port), LOG_LEVEL: 'silent' });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /EADDRINUSE.*: another opsdb serve, or another program, listens there\. Stop it, or set PORT \(and HOST\) to a free one/);
    } finally {
      taken.close();
    }
  });
});
