import { ValidationError } from './errors.js';
import { UUID_RE } from './uuid.js';

const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** Keyset cursor for lists ordered by (start_time DESC, id DESC): opaque to clients. */
export interface Keyset {
  t: string;
  id: string;
}

export const encodeCursor = (k: Keyset): string => Buffer.from(JSON.stringify(k)).toString('base64url');

export function decodeCursor(cursor: string): Keyset {
  try {
    const k = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Keyset;
    if (typeof k.t === 'string' && ISO_RE.test(k.t) && typeof k.id === 'string' && UUID_RE.test(k.id)) return k;
  } catch {
    // fall through
  }
  throw new ValidationError('Invalid cursor: pass the X-Next-Cursor value of the previous page unchanged', {
    location: 'query',
    path: 'cursor',
  });
}
