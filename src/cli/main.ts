#!/usr/bin/env node
/**
 * `opsdb`: one command line for both site types (SPEC §7).
 * Exit codes: 0 success, 1 the operation failed, 2 bad usage or configuration.
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, readEnvFile, type Config } from '../lib/config.js';
import { AppError } from '../lib/errors.js';
import { COMMANDS } from './commands.js';
import { UsageError, type Command } from './command.js';



function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return [
    'opsdb: observatory operations database API (edge buffer + central)',
    '',
    'Usage: opsdb <command> [options]',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'Options for every command:',
    '  --config FILE            TOML settings (see config/*.example.toml); environment variables override it',
    '  --environment-file FILE  variables from a file, as the systemd unit\'s EnvironmentFile= gives them to the',
    '                           daemon (e.g. DATABASE_URL in /etc/opsdb/central.env); the environment wins over it',
    '  -h, --help               help for a command: opsdb <command> --help',
    '',
    'Exit codes: 0 success, 1 the operation failed, 2 bad usage or configuration.',
  ].join('\n');
}

function findCommand(argv: string[]): { name: string; cmd: Command; rest: string[] } | null {
  // Longest match first: "buffer retry-failed" before "buffer".
  for (let n = Math.min(argv.length, 3); n >= 1; n--) {
    const name = argv.slice(0, n).join(' ');
    const cmd = COMMANDS[name];
    if (cmd) return { name, cmd, rest: argv.slice(n) };
  }
  return null;
}

/** The commands of a group (`opsdb buffer …`), one line each. */
function groupHelp(words: string[], group: [string, Command][]): string {
  const width = Math.max(...group.map(([name]) => name.length));
  const list = group.map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`).join('\n');
  return `Usage: opsdb ${words.join(' ')} <command> [options]\n\nCommands:\n${list}\n\nHelp for one: opsdb <command> --help`;
}

/** Exit 2 with the problems; a required setting missing from a shell gets a pointer to --environment-file. */
function configFailure(name: string, err: ConfigError, envFile: string | undefined): number {
  // The units keep secrets in an environment file that only systemd reads: from a shell they are missing.
  const missing = err.problems.some((p) => / required (when|for)/.test(p));
  const hint = missing && envFile === undefined
    ? '\n(Kept in an environment file, as the systemd units keep DATABASE_URL and SITE_TOKEN? Pass it: --environment-file /etc/opsdb/central.env, or edge.env)'
    : '';
  console.error(`opsdb ${name}: ${err.message}${hint}`);
  return 2;
}

export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    console.log(help());
    return argv.length === 0 ? 2 : 0;
  }
  const found = findCommand(argv);
  if (!found) {
    // A group of commands (`opsdb buffer`, `opsdb token` …) on its own or with --help: list its commands.
    const first = argv.findIndex((a) => a.startsWith('-'));
    const words = first === -1 ? argv : argv.slice(0, first);
    const inGroup = (prefix: string[]) => Object.entries(COMMANDS).filter(([name]) => prefix.length > 0 && name.startsWith(`${prefix.join(' ')} `));
    const group = inGroup(words);
    // `opsdb buffer bogus`: an unknown command of a known group gets that group's list, not the whole help.
    const parent = group.length === 0 && words.length > 1 ? inGroup(words.slice(0, 1)) : [];
    if (parent.length > 0) {
      console.error(`opsdb: unknown ${words[0]} command "${words.slice(1).join(' ')}"\n\n${groupHelp(words.slice(0, 1), parent)}`);
      return 2;
    }
    if (group.length > 0) {
      const asked = argv.includes('--help') || argv.includes('-h');
      const text = groupHelp(words, group);
      if (asked) console.log(text);
      else console.error(`opsdb: "${argv.join(' ')}" needs a command\n\n${text}`);
      return asked ? 0 : 2;
    }
    console.error(`opsdb: unknown command "${argv.join(' ')}"\n\n${help()}`);
    return 2;
  }
  const { name, cmd, rest } = found;
  let parsed: { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      options: { config: { type: 'string' }, 'environment-file': { type: 'string' }, help: { type: 'boolean', short: 'h' }, ...cmd.options },
    });
  } catch (err) {
    console.error(`opsdb ${name}: ${(err as Error).message}\n\n${cmd.usage}`);
    return 2;
  }
  if (parsed.values.help) {
    console.log(`${cmd.usage}\n\n${cmd.summary}`);
    return 0;
  }
  let config: Config;
  const envFile = parsed.values['environment-file'] as string | undefined;
  try {
    const problems: string[] = [];
    const fromFile = envFile === undefined ? {} : readEnvFile(envFile, problems);
    if (fromFile === null) throw new ConfigError(problems);
    config = loadConfig({ file: parsed.values.config as string | undefined, env: { ...fromFile, ...process.env }, serving: name === 'serve' });
  } catch (err) {
    if (err instanceof ConfigError) return configFailure(name, err, envFile);
    throw err;
  }
  try {
    if (!cmd.positionals && parsed.positionals.length > 0) {
      throw new UsageError(`takes no arguments, got "${parsed.positionals.join(' ')}"`);
    }
    return (await cmd.run({ config, args: parsed.positionals, options: parsed.values })) ?? 0;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`opsdb ${name}: ${err.message}\n\n${cmd.usage}`);
      return 2;
    }
    if (err instanceof ConfigError) return configFailure(name, err, envFile);
    const msg = err instanceof AppError ? `${err.message} (${err.code})` : (err as Error).message;
    console.error(`opsdb ${name}: ${msg}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
