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

/** Log text held in memory while stdout does not keep up (journald stalled, a full pipe): beyond it, lines are dropped. */
const STDOUT_BACKLOG_BYTES = 16 * 1024 * 1024;
/** A write to stdout under way for longer than this: its reader has stalled. */
const STALLED_MS = 1000;

/**
 * Structured JSON logs on stdout (or the given stream), secrets redacted.
 * Stdout is written asynchronously: lines wait in memory while a write is
 * under way and go out together, off the event loop; they are flushed when
 * the process exits (a SIGKILL loses at most the lines of that moment). A
 * reader that stops reading never stalls the daemon: past 16 MB waiting,
 * new lines are dropped (and counted in one line once it reads again).
 */
export function createLogger(level: string, stream?: NodeJS.WritableStream): Logger {
  const opts = {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  const dest = (stream as pino.DestinationStream | undefined) ?? stdoutDestination();
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

function stdoutDestination(): pino.DestinationStream {
  const out = pino.destination({ dest: 1, sync: false, maxLength: STDOUT_BACKLOG_BYTES });
  // At exit pino writes what is waiting synchronously. If the reader has taken nothing for a while, that
  // write could block for ever and the process would never exit (systemd would not restart it): give the
  // waiting lines up instead.
  let progress = performance.now();
  out.on('write', () => (progress = performance.now()));
  const flushSync = out.flushSync.bind(out);
  const state = out as unknown as { _writing: boolean };
  out.flushSync = () => {
    if (state._writing && performance.now() - progress > STALLED_MS) return;
    flushSync();
  };
  let dropped = 0;
  out.on('drop', () => {
    if (dropped++ === 0) {
      // Said once the backlog has gone out: the drop itself has nowhere to go yet.
      out.once('drain', () => {
        out.write(`${JSON.stringify({ level: 40, time: new Date().toISOString(), pid: process.pid, dropped_lines: dropped, msg: 'stdout did not keep up; log lines were dropped' })}\n`);
        dropped = 0;
      });
    }
  });
  return out;
}
