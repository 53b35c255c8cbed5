/**
 * How the engine reaches central: plain HTTP with fetch and a timeout. The
 * engine sees replies and transport failures, never a socket.
 */
import { SENT_AT_HEADER } from '../lib/api/sync-schemas.js';
export interface Reply {
  status: number;
  headers: Headers;
  body: unknown;
}

/**
 * The request failed on the way. `network`: refused, reset, DNS; `timeout`:
 * no answer (no response headers) in time; `stalled`: central answered, but
 * the body of its answer stopped arriving.
 */
export class TransportError extends Error {
  constructor(
    readonly kind: 'network' | 'timeout' | 'stalled',
    message: string,
  ) {
    super(message);
  }
}

export interface CentralClient {
  /** `cancel`: the engine gives up on this request (the batch it was sent after failed). */
  post(path: string, body: unknown, token: string, headers?: Record<string, string>, cancel?: AbortSignal): Promise<Reply>;
  get(path: string, token: string | null, headers?: Record<string, string>): Promise<Reply>;
}

/**
 * The slowest link a request is given time for: SYNC_TIMEOUT_MS is the time
 * for central to answer, and a request gets one more second for every this
 * many bytes it sends (256 kbit/s). Without it a large transaction on a slow
 * link timed out on every attempt, and everything behind it waited forever.
 */
export const SLOWEST_LINK_BYTES_PER_S = 32 * 1024;

/** The time limit of a request that sends `bytes`, until central's answer (its headers) arrives. */
export const requestTimeoutMs = (timeoutMs: number, bytes: number): number => timeoutMs + Math.ceil((bytes / SLOWEST_LINK_BYTES_PER_S) * 1000);

/**
 * Reads an answer's body for as long as its bytes keep coming, and calls
 * `stalled` once none has arrived for `stallMs`. No overall limit: a feed
 * page holds at least one whole position, however large, and with a flat
 * limit a slow downlink could never read it, so the replica never advanced.
 */
async function readBody(body: ReadableStream<Uint8Array> | null, stallMs: number, stalled: () => void, got: { bytes: number }): Promise<string> {
  if (!body) return '';
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    const seen = got.bytes;
    // Decided after the event loop has polled the socket once more: a loop held by a long apply (the
    // page before this one) must not pass for a link that sent nothing.
    timer = setTimeout(() => setImmediate(() => got.bytes === seen && stalled()), stallMs);
  };
  try {
    arm();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      got.bytes += value.byteLength;
      arm();
    }
  } finally {
    clearTimeout(timer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const parse = (text: string): unknown => {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return text;
  }
};

/**
 * `always`: headers sent with every request (the edge's id). `timeoutMs`
 * (SYNC_TIMEOUT_MS) bounds the wait for central's answer (plus the time to
 * send the request at 256 kbit/s), and then the wait for each next byte of
 * its body, never the whole body.
 */
export function httpClient(baseUrl: string, timeoutMs: number, stop: AbortSignal, always: Record<string, string> = {}): CentralClient {
  const call = async (method: string, path: string, token: string | null, body?: unknown, extra: Record<string, string> = {}, cancel?: AbortSignal): Promise<Reply> => {
    const headers: Record<string, string> = { accept: 'application/json', ...always, [SENT_AT_HEADER]: new Date().toISOString(), ...extra };
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const sent = body === undefined ? undefined : JSON.stringify(body);
    const limitMs = sent === undefined ? timeoutMs : requestTimeoutMs(timeoutMs, Buffer.byteLength(sent));
    const limit = new AbortController();
    let why: 'timeout' | 'stalled' | null = null;
    const expire = (reason: 'timeout' | 'stalled') => {
      why = reason;
      limit.abort();
    };
    const deadline = setTimeout(() => expire('timeout'), limitMs);
    // The engine's stop (and a batch's cancel) end this request through `limit`, by listeners removed when
    // it is done. Not AbortSignal.any: Node 20 keeps a reference in the long-lived stop signal for every
    // signal made from it, and never lets go (≈ 40 bytes a request, for the life of the process).
    const outer = cancel ? [stop, cancel] : [stop];
    const passOn = function (this: AbortSignal) {
      limit.abort(this.reason);
    };
    for (const s of outer) {
      if (s.aborted) limit.abort(s.reason);
      else s.addEventListener('abort', passOn, { once: true });
    }
    let status = 0;
    const got = { bytes: 0 };
    try {
      const res = await fetch(baseUrl + path, {
        method,
        headers,
        body: sent,
        signal: limit.signal,
      });
      clearTimeout(deadline);
      status = res.status;
      const text = await readBody(res.body, timeoutMs, () => expire('stalled'), got);
      return { status: res.status, headers: res.headers, body: parse(text) };
    } catch (err) {
      if (why === 'timeout') {
        throw new TransportError('timeout', limitMs === timeoutMs
          ? `no answer from central within ${timeoutMs} ms (SYNC_TIMEOUT_MS)`
          : `no answer from central within ${limitMs} ms (SYNC_TIMEOUT_MS ${timeoutMs} ms, plus time to send the request at 256 kbit/s)`);
      }
      if (why === 'stalled') {
        throw new TransportError('stalled', `central answered HTTP ${status}, but the rest of its answer stopped arriving: no byte for ${timeoutMs} ms ` +
          `(SYNC_TIMEOUT_MS) after ${got.bytes} bytes of the body. The link to central stalls; the request is made again, asking for less`);
      }
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new TransportError('network', cause?.code ?? cause?.message ?? (err as Error).message);
    } finally {
      clearTimeout(deadline);
      for (const s of outer) s.removeEventListener('abort', passOn);
    }
  };
  return {
    post: (path, body, token, headers, cancel) => call('POST', path, token, body, headers, cancel),
    get: (path, token, headers) => call('GET', path, token, undefined, headers),
  };
}
