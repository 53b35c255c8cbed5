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

export function httpClient(baseUrl: string, timeoutMs: number, stop: AbortSignal): CentralClient {
  const call = async (method: string, path: string, token: string | null, body?: unknown, extra: Record<string, string> = {}, cancel?: AbortSignal): Promise<Reply> => {
    const headers: Record<string, string> = { accept: 'application/json', ...extra };
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const timeout = AbortSignal.timeout(timeoutMs);
    try {
      const res = await fetch(baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
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
      if (timeout.aborted) throw new TransportError('timeout', `no answer from central within ${timeoutMs} ms`);
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new TransportError('network', cause?.code ?? cause?.message ?? (err as Error).message);
    }
  };
  return {
    post: (path, body, token, headers, cancel) => call('POST', path, token, body, headers, cancel),
    get: (path, token, headers) => call('GET', path, token, undefined, headers),
  };
}
