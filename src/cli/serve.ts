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

/**
 * The longest a stop may take before the process exits anyway, below the systemd unit's TimeoutStopSec=30
 * (after which systemd sends SIGKILL): each of its steps is bounded (open requests 5 s, the batch in flight
 * 5 s, a storage call its own timeout), but a storage that stops answering (a Redis stopped, a disk hung)
 * makes them add up.
 */
export const STOP_DEADLINE_MS = 20_000;

/**
 * SIGHUP is not a stop: the daemon has no reload (settings are read at start), and a `kill -HUP` from a
 * log rotation script, or the terminal of a foreground run closing when the link drops, must not end it
 * (by default it would die at once, and systemd does not restart a unit that a SIGHUP ended).
 */
function ignoreHangups(log: ReturnType<typeof createLogger>): void {
  process.on('SIGHUP', () =>
    log.warn({ signal: 'SIGHUP' }, 'SIGHUP ignored: settings are read at start, so restart the daemon to apply changed ones (systemctl restart); SIGTERM stops it'));
}

/** A port already taken: `advice` says what moves it (the error alone names only the address). Other errors as they are. */
export function portHint(err: unknown, advice: string): unknown {
  if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') return err;
  return new Error(`${(err as Error).message}: ${advice}`);
}

export const serveCommand: Command = {
  summary: 'run the daemon for the configured site type (SITE_TYPE=main: central; secondary: edge)',
  usage: 'opsdb serve [--config FILE]',
  async run({ config }) {
    const log = createLogger(config.logLevel);
    // Listening for the stop signal from the start: one that came before the daemon was ready would end it
    // at once, with Node's default handling, and a start is then stopped as soon as it is done.
    const signals = stopSignals();
    ignoreHangups(log);
    signals.onAgain((signal) =>
      log.warn({ signal }, `already stopping: the requests in progress are answered and the batch in flight gets up to 5 s; the daemon exits by itself within ${STOP_DEADLINE_MS / 1000} s of the first signal`));
    const start = config.siteType === 'main' ? startCentral(config, log) : startEdge(config, log);
    const running = await start.catch((e: Error) => {
      const err = portHint(e, 'another opsdb serve, or another program, listens there. Stop it, or set PORT (and HOST) to a free one') as Error;
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
    setTimeout(() => {
      log.fatal({ deadline_ms: STOP_DEADLINE_MS },
        'the stop did not finish in time (a storage or a connection stopped answering): exiting now. Nothing acknowledged is lost: a write not yet answered was not acknowledged, and transactions in flight are sent again at the next start');
      process.exit(1);
    }, STOP_DEADLINE_MS).unref();
    await sd.stopping();
    await running.stop();
    log.info('stopped');
  },
};
