/** A small HTTP client for tests: real requests over loopback, JSON in and out. */
export interface Reply<T = any> {
  status: number;
  body: T;
  headers: Headers;
  text: string;
}

export interface RequestOptions {
  token?: string | undefined;
  body?: unknown;
  /** Sent as-is (for malformed JSON); overrides `body`. */
  raw?: string | Buffer;
  headers?: Record<string, string>;
}

export async function request<T = any>(base: string, method: string, path: string, opts: RequestOptions = {}): Promise<Reply<T>> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let body: string | Buffer | undefined;
  if (opts.raw !== undefined) body = opts.raw;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) {
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(base + path, { method, headers, body: body as string | undefined });
  const text = await res.text();
  let parsed: unknown = text;
  if ((res.headers.get('content-type') ?? '').includes('json')) parsed = text ? JSON.parse(text) : null;
  return { status: res.status, body: parsed as T, headers: res.headers, text };
}

/** Bound to one server and (optionally) one token. */
export function client(base: string, token?: string) {
  const call = (method: string) => <T = any>(path: string, opts: Omit<RequestOptions, 'token'> & { token?: string } = {}) =>
    request<T>(base, method, path, { token, ...opts });
  return { base, token, get: call('GET'), post: call('POST'), put: call('PUT'), del: call('DELETE') };
}
export type Client = ReturnType<typeof client>;
