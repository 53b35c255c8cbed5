/**
 * What a failed exchange with central means (SPEC §2.4), decided by status
 * code and transport kind, never by message text.
 */
import { TransportError, type Reply } from './transport.js';

export type Failure =
  /** Try again later: the link, central's load or a central fault. Never dead-letters. */
  | { kind: 'transient'; code: string; message: string; retryAfterMs: number | null; answeredBy: AnsweredBy; shrink: boolean }
  /** Credentials are wrong: pause until they change. */
  | { kind: 'auth'; code: string; message: string }
  /** The batch was too big for central or for the link: send less at once. */
  | { kind: 'too_large'; code: string; message: string }
  /**
   * Central refused the whole batch because of one transaction in it: a 422
   * validation_error whose details name `transactions.<index>…` (text it
   * cannot store, a step it does not know). That transaction is rejected;
   * the others are sent again at once.
   */
  | { kind: 'refused'; code: string; message: string; index: number };

/**
 * Who answered a failed request: central itself (`central_reachable` true);
 * something in its place, a gateway's error page or a captive portal
 * (false); nobody, the request was refused, reset or timed out (false);
 * null, not known (a local fault). Only while central is not heard ('other',
 * 'nobody') may its /health answering end the backoff early.
 */
export type AnsweredBy = 'central' | 'other' | 'nobody' | null;

export function retryAfterMs(value: string | null, now = Date.now()): number | null {
  if (!value) return null;
  const secs = Number(value);
  if (Number.isFinite(secs) && secs >= 0) return secs * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

const message = (r: Reply) => {
  const e = (r.body as { error?: { message?: string } } | null)?.error;
  return e?.message ?? `HTTP ${r.status}`;
};

export function classifyError(err: unknown): Failure {
  if (err instanceof TransportError) {
    // A timeout may be a dead link or a batch too slow to apply, a stalled body a link too slow for the
    // answer: back off, and ask for less next time.
    const answeredBy = err.kind === 'stalled' ? 'central' : 'nobody';
    return { kind: 'transient', code: err.kind, message: err.message, retryAfterMs: null, answeredBy, shrink: err.kind !== 'network' };
  }
  return { kind: 'transient', code: 'internal', message: String((err as Error)?.message ?? err), retryAfterMs: null, answeredBy: null, shrink: false };
}

/**
 * The index of the transaction central's 422 for a sync batch blames, from
 * the paths in its details (`transactions.3.steps.0.data.name`). Null when the
 * reply is not central's validation error or blames no transaction (then
 * nothing about one transaction is known, and the batch is retried as usual).
 */
function refusedTransaction(body: unknown): number | null {
  const error = (body as { error?: { code?: unknown; details?: unknown } } | null)?.error;
  if (error?.code !== 'validation_error' || !Array.isArray(error.details)) return null;
  for (const d of error.details as { path?: unknown }[]) {
    const m = typeof d?.path === 'string' ? /^transactions\.(\d+)(?:\.|$)/.exec(d.path) : null;
    if (m) return Number(m[1]);
  }
  return null;
}

/**
 * `batchSize`: the reply is to a sync batch of that many transactions, which central may refuse for one
 * of them (see refusedTransaction); a refusal naming none of them is retried like any other answer.
 */
export function classifyReply(r: Reply, { batchSize = 0 }: { batchSize?: number } = {}): Failure {
  const msg = message(r);
  if (r.status === 401 || r.status === 403) return { kind: 'auth', code: `http_${r.status}`, message: msg };
  if (r.status === 413) return { kind: 'too_large', code: 'http_413', message: msg };
  if (batchSize > 0 && r.status === 422) {
    const index = refusedTransaction(r.body);
    if (index !== null && index < batchSize) return { kind: 'refused', code: 'validation_error', message: msg, index };
  }
  // A batch sent early whose predecessor never committed: resend both, in order.
  if (r.status === 409 && (r.body as { error?: { code?: string } } | null)?.error?.code === 'out_of_order') {
    return { kind: 'transient', code: 'out_of_order', message: msg, retryAfterMs: null, answeredBy: 'central', shrink: false };
  }
  // 5xx, 429, 503, 408 and anything unexpected: nothing here is the data's fault. A 502/503/504 that is
  // not in central's error shape is a gateway's page: central itself is not there.
  const gateway = (r.status === 502 || r.status === 503 || r.status === 504) && !centralError(r.body);
  return {
    kind: 'transient', code: `http_${r.status}`, message: msg, retryAfterMs: retryAfterMs(r.headers.get('retry-after')),
    answeredBy: gateway ? 'other' : 'central', shrink: false,
  };
}

/** The `code` of an answer in central's error shape, or null. */
export function errorCode(body: unknown): string | null {
  return centralError(body) ? (body as { error: { code: string } }).error.code : null;
}

/** Central's error shape, `{"error":{"code","message"}}`: a gateway's or a portal's page is not in it. */
function centralError(body: unknown): boolean {
  const e = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  return typeof e?.code === 'string' && typeof e.message === 'string';
}

/** Capped exponential backoff with full jitter: uniform in [0, min(max, base·2^(n−1))]. */
export function backoffMs(failures: number, baseMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(failures - 1, 0), 30));
  return Math.round(random() * ceiling);
}

/**
 * The wait before the next attempt: the backoff, or longer when the answer
 * asked for it (Retry-After), but never longer than `maxMs` (RETRY_MAX_MS,
 * the longest wait the operator allows): one Retry-After of a day, from
 * central or from a proxy in front of it, must not stop all sync for a day.
 */
export function retryDelayMs(failures: number, baseMs: number, maxMs: number, retryAfter: number | null, random = Math.random): number {
  return Math.max(backoffMs(failures, baseMs, maxMs, random), Math.min(retryAfter ?? 0, maxMs));
}
