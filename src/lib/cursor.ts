import { ValidationError } from './errors.js';
import { UUID_RE } from './uuid.js';

const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** Keyset cursor for lists ordered by (start_time DESC, id DESC): opaque to clients. */
export interface Keyset {
  t: string;
  id: string;
}

export const encodeCursor = (k: Keyset): string => Buffer.from(JSON.stringify(k)).toString('base64url');

/**
 * The time of a cursor as the millisecond UTC ISO string every site stores
 * and compares (the edge compares text), or null when it is no real time:
 * not a calendar date or clock time as written (2025-02-30, 24:00, :60 —
 * JavaScript would roll some of these over, PostgreSQL refuses some), or a
 * year outside 0001–9999.
 */
function cursorTime(t: unknown): string | null {
  if (typeof t !== 'string' || !ISO_RE.test(t)) return null;
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return null;
  const y = d.getUTCFullYear();
  if (y < 1 || y > 9999) return null;
  const iso = d.toISOString();
  return iso.slice(0, 19) === t.slice(0, 19) ? iso : null;
}

/**
 * A cursor as the previous page gave it, or a hand-made one: decoded the same
 * at the edge and at central, so both answer it alike (the same 422 for a bad
 * one, the same page for a good one).
 */
export function decodeCursor(cursor: string): Keyset {
  try {
    const k = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Partial<Keyset> | null;
    if (k && typeof k === 'object' && typeof k.id === 'string' && UUID_RE.test(k.id)) {
      const t = cursorTime(k.t);
      if (t !== null) return { t, id: k.id.toLowerCase() };
    }
  } catch {
    // fall through
  }
  throw new ValidationError('Invalid cursor: pass the X-Next-Cursor value of the previous page unchanged', {
    location: 'query',
    path: 'cursor',
  });
}
