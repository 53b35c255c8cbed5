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

/** Structured JSON logs on stdout (or the given stream), secrets redacted. */
export function createLogger(level: string, stream?: NodeJS.WritableStream): Logger {
  const opts = {
    level,
    base: { pid: process.pid },
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return stream ? pino(opts, stream as pino.DestinationStream) : pino(opts);
}
