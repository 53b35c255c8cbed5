/**
 * What a failed exchange with central means (SPEC §2.4), decided by status
 * code and transport kind, never by message text.
 */
import { TransportError, type Reply } from './transport.js';

export type Failure =
  /** Try again later: the link, central's load or a central fault. Never dead-letters. */
  | { kind: 'transient'; code: string; message: string; retryAfterMs: number | null; unreachable: boolean; shrink: boolean }
  /** Credentials are wrong: pause until they change. */
  | { kind: 'auth'; code: string; message: string }
  /** The batch was too big for central or for the link: send less at once. */
  | { kind: 'too_large'; code: string; message: string }
  /**
   * Central refused the batch's content as a whole (400, 422): something in
   * one transaction, not the link. Send less at once until the transaction at
   * fault is alone; alone, it is that transaction's rejection.
   */
  | { kind: 'refused'; code: string; message: string };

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
    // A timeout may be a dead link or a batch too slow to apply: back off, and send less next time.
    const timeout = err.kind === 'timeout';
    return { kind: 'transient', code: err.kind, message: err.message, retryAfterMs: null, unreachable: true, shrink: timeout };
  }
  return { kind: 'transient', code: 'internal', message: String((err as Error)?.message ?? err), retryAfterMs: null, unreachable: false, shrink: false };
}

/** `batch`: the reply to a sync batch, whose content central may refuse (any other request's 4xx is no data's fault). */
export function classifyReply(r: Reply, { batch = false }: { batch?: boolean } = {}): Failure {
  const msg = message(r);
  if (r.status === 401 || r.status === 403) return { kind: 'auth', code: `http_${r.status}`, message: msg };
  if (r.status === 413) return { kind: 'too_large', code: 'http_413', message: msg };
  if (batch && (r.status === 400 || r.status === 422)) return { kind: 'refused', code: `http_${r.status}`, message: msg };
  // A batch sent early whose predecessor never committed: resend both, in order.
  if (r.status === 409 && (r.body as { error?: { code?: string } } | null)?.error?.code === 'out_of_order') {
    return { kind: 'transient', code: 'out_of_order', message: msg, retryAfterMs: null, unreachable: false, shrink: false };
  }
  // 5xx, 429, 503, 408 and anything unexpected: nothing here is the data's fault. A gateway's 502/503/504
  // usually means central itself is not there: probe /health so its return ends the backoff at once.
  return {
    kind: 'transient', code: `http_${r.status}`, message: msg, retryAfterMs: retryAfterMs(r.headers.get('retry-after')),
    unreachable: r.status === 502 || r.status === 503 || r.status === 504, shrink: false,
  };
}

/** Capped exponential backoff with full jitter: uniform in [0, min(max, base·2^(n−1))]. */
export function backoffMs(failures: number, baseMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(failures - 1, 0), 30));
  return Math.round(random() * ceiling);
}
