/**
 * How the engine reaches central: plain HTTP with fetch and a timeout. The
 * engine sees replies and transport failures, never a socket.
 */
export interface Reply {
  status: number;
  headers: Headers;
  body: unknown;
}

/** The request never got an HTTP answer: refused, reset, DNS, or timed out. */
export class TransportError extends Error {
  constructor(
    readonly kind: 'network' | 'timeout',
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

/** The time limit of a request that sends `bytes`. */
export const requestTimeoutMs = (timeoutMs: number, bytes: number): number => timeoutMs + Math.ceil((bytes / SLOWEST_LINK_BYTES_PER_S) * 1000);

/** `always`: headers sent with every request (the edge's id). */
export function httpClient(baseUrl: string, timeoutMs: number, stop: AbortSignal, always: Record<string, string> = {}): CentralClient {
  const call = async (method: string, path: string, token: string | null, body?: unknown, extra: Record<string, string> = {}, cancel?: AbortSignal): Promise<Reply> => {
    const headers: Record<string, string> = { accept: 'application/json', ...always, ...extra };
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const sent = body === undefined ? undefined : JSON.stringify(body);
    const limitMs = sent === undefined ? timeoutMs : requestTimeoutMs(timeoutMs, Buffer.byteLength(sent));
    const timeout = AbortSignal.timeout(limitMs);
    try {
      const res = await fetch(baseUrl + path, {
        method,
        headers,
        body: sent,
        signal: AbortSignal.any(cancel ? [timeout, stop, cancel] : [timeout, stop]),
      });
      const text = await res.text();
      let parsed: unknown = null;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        parsed = text;
      }
      return { status: res.status, headers: res.headers, body: parsed };
    } catch (err) {
      if (timeout.aborted) {
        throw new TransportError('timeout', limitMs === timeoutMs
          ? `no answer from central within ${timeoutMs} ms`
          : `no answer from central within ${limitMs} ms (SYNC_TIMEOUT_MS ${timeoutMs} ms, plus time to send the request at 256 kbit/s)`);
      }
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new TransportError('network', cause?.code ?? cause?.message ?? (err as Error).message);
    }
  };
  return {
    post: (path, body, token, headers, cancel) => call('POST', path, token, body, headers, cancel),
    get: (path, token, headers) => call('GET', path, token, undefined, headers),
  };
}
