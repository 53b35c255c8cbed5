// The daemon's log on stdout (src/lib/logger.ts) in a real child process whose stdout nobody reads for a
// while, as when journald stalls: the event loop keeps running, lines past the backlog limit are dropped
// rather than held, and once stdout is read again a warning says how many were lost.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type StdioOptions } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const LOGGER = new URL('../../src/lib/logger.ts', import.meta.url).href;

/** Runs `body` in a child process after `log = createLogger('info')` and `lines` lines of 1,000 bytes logged at once. */
function childLogging(lines: number, body: string, stdio: StdioOptions) {
  const script = join(mkdtempSync(join(process.env.OPSDB_TEST_TMP ?? tmpdir(), 'opsdb-logger-')), 'child.mts');
  writeFileSync(script, `
    import { createLogger } from ${JSON.stringify(LOGGER)};
    const log = createLogger('info');
    const line = 'x'.repeat(1000);
    for (let i = 0; i < ${lines}; i++) log.info({ i, line }, 'fill');
    ${body}
  `);
  return spawn(process.execPath, ['--import', 'tsx', script], { stdio });
}

it('a stalled stdout neither stops the event loop nor grows the backlog past its limit', { timeout: 60_000 }, async () => {
  // 40 MB, far past the 16 MB backlog; the timer runs only if those writes did not block the event loop.
  const child = childLogging(40_000, `
    setTimeout(() => process.stderr.write(JSON.stringify({ responsive: true }) + '\\n'), 50);
    process.stdin.once('data', () => process.exit(0));
  `, ['pipe', 'pipe', 'pipe']);
  try {
    // stdout is not read until the child says it is still responsive.
    const said = await new Promise<{ responsive: boolean }>((resolve, reject) => {
      let err = '';
      child.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        const line = err.split('\n').find((l) => l.startsWith('{'));
        if (line) resolve(JSON.parse(line));
      });
      child.once('exit', (code) => reject(new Error(`child exited (${code}) before it said it was responsive: ${err}`)));
    });
    assert.equal(said.responsive, true);

    const lines: string[] = [];
    let rest = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        const parts = (rest + d.toString()).split('\n');
        rest = parts.pop()!;
        for (const p of parts) {
          lines.push(p);
          if (p.includes('log lines were dropped')) resolve();
        }
      });
      child.once('exit', () => reject(new Error(`no drop warning in ${lines.length} lines`)));
    });
    child.stdin!.write('go\n');
    const parsed = lines.map((l) => JSON.parse(l) as { msg: string; i?: number; dropped_lines?: number });
    const fills = parsed.filter((p) => p.msg === 'fill');
    const warning = parsed.find((p) => p.msg === 'stdout did not keep up; log lines were dropped')!;
    assert.ok(fills.length > 1000 && fills.length < 40_000, `${fills.length} fill lines came out`);
    assert.ok(warning.dropped_lines! > 0);
    assert.equal(fills.length + warning.dropped_lines!, 40_000, 'every line is either written or counted as dropped');
    // Whole lines in order: a line is dropped entirely, never cut.
    for (let k = 1; k < fills.length; k++) assert.ok(fills[k]!.i! > fills[k - 1]!.i!);
  } finally {
    child.kill('SIGKILL');
  }
});

it('a process whose stdout has stalled still exits when it calls process.exit', { timeout: 60_000 }, async () => {
  // As the daemon's watchdog does when its storage thread has died: process.exit, with lines still waiting.
  const child = childLogging(4000, 'setTimeout(() => process.exit(3), 1500);', ['ignore', 'pipe', 'inherit']);
  try {
    child.stdout!.pause(); // never read
    const code = await new Promise<number | string>((resolve) => {
      child.once('exit', (c) => resolve(c ?? 'signal'));
      setTimeout(() => resolve('still running 20 s later'), 20_000);
    });
    assert.equal(code, 3);
  } finally {
    child.kill('SIGKILL');
  }
});
