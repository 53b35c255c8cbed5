/** HTTP as the writers and checks see it: never throws; a failed request is status 0 with its error code. */

export interface Res {
  status: number;
  body: any; // the bodies of every endpoint, checked field by field
  err?: string;
  headers?: Headers;
}

export async function call(base: string, method: string, path: string, token: string | null, body?: unknown, timeoutMs = 20_000): Promise<Res> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  try {
    const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {}
    return { status: res.status, body: parsed, headers: res.headers };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    return { status: 0, body: null, err: e.name === 'TimeoutError' ? 'timeout' : e.cause?.code ?? e.message };
  }
}

export const iso = (d: Date | string | null | undefined): string | null => (d === null || d === undefined ? null : new Date(d).toISOString());

/** JSON with object keys sorted, to compare documents. */
export const canon = (x: unknown): string =>
  JSON.stringify(x, (_k, v) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v));
