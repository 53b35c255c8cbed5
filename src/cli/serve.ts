import { createLogger } from '../lib/logger.js';
import { startCentral } from '../central/server.js';
import { startEdge } from '../edge/server.js';
import type { Command } from './command.js';
import { SdNotify } from '../lib/sd-notify.js';
import { systemdEnv } from '../lib/config.js';

/**
 * SIGTERM and SIGINT, listened to for the rest of the process: `first`
 * resolves with the first one; later ones go to `onAgain`. The listeners are
 * never removed: with none left, Node restores the default action, and a
 * second signal would end the process in the middle of its stop.
 */
export function stopSignals(): { first: Promise<NodeJS.Signals>; onAgain(fn: (signal: NodeJS.Signals) => void): void } {
  let resolve!: (signal: NodeJS.Signals) => void;
  const first = new Promise<NodeJS.Signals>((r) => (resolve = r));
  let seen = false;
  let again: (signal: NodeJS.Signals) => void = () => {};
  const handler = (signal: NodeJS.Signals) => {
    if (seen) again(signal);
    else {
      seen = true;
      resolve(signal);
    }
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  return { first, onAgain: (fn) => (again = fn) };
}

export const serveCommand: Command = {
  summary: 'run the daemon for the configured site type (SITE_TYPE=main: central; secondary: edge)',
  usage: 'opsdb serve [--config FILE]',
  async run({ config }) {
    const log = createLogger(config.logLevel);
    // Listening for the stop signal from the start: one that came before the daemon was ready would end it
    // at once, with Node's default handling, and a start is then stopped as soon as it is done.
    const signals = stopSignals();
    signals.onAgain((signal) =>
      log.warn({ signal }, 'already stopping: requests still open get up to 5 s, then the batch in flight up to 5 s; the daemon then exits by itself'));
    const start = config.siteType === 'main' ? startCentral(config, log) : startEdge(config, log);
    const running = await start.catch((err: Error) => {
      log.fatal({ err: { message: err.message } }, `${config.siteType === 'main' ? 'central' : 'edge'} failed to start`);
      throw err;
    });
    const sd = new SdNotify(systemdEnv(), log);
    await sd.ready(running.status, running.healthy);
    const failed = 'failed' in running ? running.failed : new Promise<never>(() => {});
    const outcome = await Promise.race([signals.first, failed]);
    if (outcome instanceof Error) {
      // Writes cannot be stored: stop serving and exit non-zero, so systemd restarts the daemon; if stopping
      // hangs on something the dead thread held, exit anyway.
      setTimeout(() => process.exit(1), 15_000).unref();
      await sd.stopping();
      await running.stop().catch(() => {});
      throw new Error(`stopped: ${outcome.message}`);
    }
    log.info({ signal: outcome }, 'stopping');
    await sd.stopping();
    await running.stop();
    log.info('stopped');
  },
};
