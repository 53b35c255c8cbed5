import { ValidationError } from './errors.js';

/** Keyset cursor for lists ordered by (start_time DESC, id DESC): opaque to clients. */
export interface Keyset {
  t: string;
  id: string;
}

export const encodeCursor = (k: Keyset): string => Buffer.from(JSON.stringify(k)).toString('base64url');

export function decodeCursor(cursor: string): Keyset {
  try {
    const k = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Keyset;
    if (typeof k.t === 'string' && !Number.isNaN(Date.parse(k.t)) && typeof k.id === 'string') return k;
  } catch {
    // fall through
  }
  throw new ValidationError('Invalid cursor: pass the X-Next-Cursor value of the previous page unchanged', {
    location: 'query',
    path: 'cursor',
  });
}
