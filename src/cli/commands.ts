import type { Command } from './command.js';
import { serveCommand } from './serve.js';
import * as buffer from './buffer.js';
import { demoCommand } from './demo.js';
import { migrateCommand, seedCommand, siteAddCommand, tokenCreateCommand, userAddCommand } from './central.js';

export const COMMANDS: Record<string, Command> = {
  serve: serveCommand,
  demo: demoCommand,
  migrate: migrateCommand,
  seed: seedCommand,
  'user add': userAddCommand,
  'token create': tokenCreateCommand,
  'site add': siteAddCommand,
  'buffer stats': buffer.bufferStatsCommand,
  'buffer ls': buffer.bufferLsCommand,
  'buffer show': buffer.bufferShowCommand,
  'buffer retry': buffer.bufferRetryCommand,
  'buffer retry-failed': buffer.bufferRetryFailedCommand,
  'buffer discard': buffer.bufferDiscardCommand,
  'buffer verify': buffer.bufferVerifyCommand,
  'buffer accept-loss': buffer.bufferAcceptLossCommand,
  'buffer audit': buffer.bufferAuditCommand,
  'buffer wait-empty': buffer.bufferWaitEmptyCommand,
};
