import type { Command } from './command.js';
import { serveCommand } from './serve.js';
import { migrateCommand, seedCommand, tokenCreateCommand, userAddCommand } from './central.js';

export const COMMANDS: Record<string, Command> = {
  serve: serveCommand,
  migrate: migrateCommand,
  seed: seedCommand,
  'user add': userAddCommand,
  'token create': tokenCreateCommand,
};
