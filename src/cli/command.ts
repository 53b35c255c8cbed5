import type { ParseArgsConfig } from 'node:util';
import type { Config } from '../lib/config.js';
import { ConfigError } from '../lib/config.js';

/** Wrong arguments: printed with the command's usage, exit code 2. */
export class UsageError extends Error {}

export interface CommandInput {
  config: Config;
  args: string[];
  options: Record<string, string | boolean | (string | boolean)[] | undefined>;
}

export interface Command {
  summary: string;
  usage: string;
  options?: ParseArgsConfig['options'];
  /** Takes words after its name (an id, a name); the others refuse any, rather than ignore them. */
  positionals?: true;
  /** Returns the exit code; a long-running command resolves only when it stops. */
  run(input: CommandInput): Promise<number | void>;
}

export function requireDatabaseUrl(config: Config): string {
  if (!config.databaseUrl) throw new ConfigError(['DATABASE_URL: required for this command (the central PostgreSQL)']);
  return config.databaseUrl;
}

export function oneArg(args: string[], what: string): string {
  if (args.length !== 1) throw new UsageError(`expected exactly one ${what}, got ${args.length}`);
  return args[0]!;
}
