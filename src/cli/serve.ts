import { createLogger } from '../lib/logger.js';
import { startCentral } from '../central/server.js';
import { startEdge } from '../edge/server.js';
import type { Command } from './command.js';
import { SdNotify } from '../lib/sd-notify.js';
import { systemdEnv } from '../lib/config.js';

/** Resolves when SIGTERM or SIGINT arrives. */
export const untilSignal = () =>
  new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });

export const serveCommand: Command = {
  summary: 'run the daemon for the configured site type (SITE_TYPE=main: central; secondary: edge)',
  usage: 'opsdb serve [--config FILE]',
  async run({ config }) {
    const log = createLogger(config.logLevel);
    const start = config.siteType === 'main' ? startCentral(config, log) : startEdge(config, log);
    const running = await start.catch((err: Error) => {
      log.fatal({ err: { message: err.message } }, `${config.siteType === 'main' ? 'central' : 'edge'} failed to start`);
      throw err;
    });
    const sd = new SdNotify(systemdEnv(), log);
    await sd.ready(running.status, running.healthy);
    const failed = 'failed' in running ? running.failed : new Promise<never>(() => {});
    const outcome = await Promise.race([untilSignal(), failed]);
    if (outcome instanceof Error) {
      // Writes cannot be stored: stop serving and exit non-zero, so systemd restarts the daemon; if stopping
      // hangs on something the dead thread held, exit anyway.
      setTimeout(() => process.exit(1), 15_000).unref();
      await sd.stopping();
      await running.stop().catch(() => {});
      throw new Error(`stopped: ${outcome.message}`);
    }
    log.info({ signal: outcome }, 'stopping');
    // A second signal would otherwise end the process at once, before the batch in flight is answered and
    // before "stopped" (which the backup steps wait for).
    const again = (signal: NodeJS.Signals) =>
      log.warn({ signal }, 'already stopping: the batch in flight gets up to 5 s, then the daemon exits by itself');
    process.on('SIGTERM', again);
    process.on('SIGINT', again);
    await sd.stopping();
    await running.stop();
    log.info('stopped');
  },
};
