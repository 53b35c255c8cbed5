/** `opsdb serve` as a real child process, for tests that kill, restart or watch it. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { OPSDB_BIN } from './cli.js';

export interface DaemonProcess {
  url: string;
  port: number;
  pid: number;
  child: ChildProcess;
  /** JSON lines it logged. */
  lines: string[];
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `opsdb serve` for a site type and waits for its "<edge|central> listening" log line. */
export function spawnDaemon(siteType: 'main' | 'secondary', env: Record<string, string>, timeoutMs = 20_000): Promise<DaemonProcess> {
  const name = siteType === 'main' ? 'central' : 'edge';
  const child = spawn(process.execPath, [OPSDB_BIN, 'serve'], {
    env: {
      PATH: process.env.PATH ?? '', SITE_TYPE: siteType, PORT: '0', ...(siteType === 'main' ? { SITE_NAME: 'main' } : {}),
      ...env, LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code, sig) => resolve(code ?? (sig ? 128 : null))));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not start in ${timeoutMs} ms:\n${lines.join('\n')}\n${stderr}`));
    }, timeoutMs);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before listening:\n${lines.join('\n')}\n${stderr}`));
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line);
      if (!line.includes(`"${name} listening"`)) return;
      clearTimeout(timer);
      const url = (JSON.parse(line) as { url: string }).url;
      resolve({
        url, port: Number(new URL(url).port), pid: child.pid!, child, lines, exited,
        kill: (signal = 'SIGKILL') => {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          return exited;
        },
      });
    });
  });
}

/** Polls `check` until it returns something truthy; fails with `what` after `timeoutMs`. */
export async function until<T>(what: string, check: () => Promise<T | null | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
