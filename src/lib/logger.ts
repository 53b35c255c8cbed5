import { pino, type Logger } from 'pino';

export type { Logger };

/** Paths that may carry secrets anywhere in a log object. */
const REDACT = [
  'token',
  'password',
  'authorization',
  'siteToken',
  'databaseUrl',
  '*.token',
  '*.authorization',
  '*.password',
  'req.headers.authorization',
  'headers.authorization',
];

const accessLoggers = new WeakMap<Logger, Logger>();

/**
 * Structured JSON logs on stdout (or the given stream), secrets redacted.
 * Stdout is written asynchronously: lines wait in memory while a write is
 * under way and go out together, off the event loop; they are flushed when
 * the process exits (a SIGKILL loses at most the lines of that moment).
 */
export function createLogger(level: string, stream?: NodeJS.WritableStream): Logger {
  const opts = {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  const dest = (stream as pino.DestinationStream | undefined) ?? pino.destination({ dest: 1, sync: false });
  const log = pino({ ...opts, redact: { paths: REDACT, censor: '[redacted]' } }, dest);
  accessLoggers.set(log, pino(opts, dest));
  return log;
}

/**
 * The logger for access-log lines: the same level and destination as `log`,
 * without the redaction pass. An access line holds only fixed fields (request
 * id, method, path, status, duration, user name), never a secret, and is
 * written once per request.
 */
export function accessLogger(log: Logger): Logger {
  return accessLoggers.get(log) ?? log;
}
