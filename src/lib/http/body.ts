import type { IncomingMessage } from 'node:http';
import { isUtf8 } from 'node:buffer';
import type { HttpContext } from './context.js';
import { BadRequestError, PayloadTooLargeError, AppError, ValidationError } from '../errors.js';

/**
 * Reads a JSON request body with a hard size limit. Oversized bodies are
 * refused with 413 as soon as the limit is crossed (or from Content-Length),
 * malformed JSON or bytes that are not UTF-8 with 400, too deep a nesting,
 * a NUL character or a lone UTF-16 surrogate with 422;
 * none of them reaches a handler.
 */
export async function readJsonBody(ctx: Pick<HttpContext, 'get' | 'req'>, limitBytes: number): Promise<unknown> {
  const declared = Number(ctx.get('content-length') || NaN);
  if (Number.isFinite(declared) && declared > limitBytes) throw new PayloadTooLargeError(limitBytes);
  const type = ctx.get('content-type');
  if (type && !/^application\/([\w.+-]+\+)?json\b/i.test(type)) {
    throw new AppError(415, 'unsupported_media_type', `Content-Type must be application/json, got "${type}"`);
  }
  // JSON is UTF-8 (RFC 8259); a body labelled otherwise was taken as UTF-8 all the same.
  const charset = /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(type)?.[1];
  if (charset !== undefined && !/^utf-?8$/i.test(charset)) {
    throw new AppError(415, 'unsupported_media_type', `Content-Type charset must be utf-8, got "${charset}": send JSON as UTF-8`);
  }
  // A compressed body was read as it came: JSON that happened to parse, or a 400 that did not say why.
  const encoding = ctx.get('content-encoding');
  if (encoding && !/^\s*identity\s*$/i.test(encoding)) {
    throw new AppError(415, 'unsupported_media_type', `Content-Encoding "${encoding}" is not supported: send the body uncompressed`);
  }
  const bytes = await readAll(ctx.req, limitBytes);
  // Decoding would turn each bad byte into U+FFFD and store that in place of what the client meant.
  if (!isUtf8(bytes)) {
    throw new BadRequestError(`Request body is not valid UTF-8 (at byte ${firstBadUtf8(bytes)}); JSON must be sent as UTF-8`, null, 'invalid_json');
  }
  const text = bytes.toString('utf8');
  if (text.trim() === '') throw new BadRequestError('Request body is empty; a JSON object is required', null, 'empty_body');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`Request body is not valid JSON: ${(err as Error).message}`, null, 'invalid_json');
  }
  // Nesting needs an opening bracket per level, so a body with few of them cannot be too deep: the walk is skipped.
  if (moreOpeningsThan(text, MAX_JSON_DEPTH)) {
    const depth = jsonDepth(value);
    if (depth > MAX_JSON_DEPTH) {
      throw new ValidationError(`Request body nests ${depth} levels deep; at most ${MAX_JSON_DEPTH} are accepted`, { max_depth: MAX_JSON_DEPTH });
    }
  }
  // JSON text can only carry a NUL or a lone UTF-16 surrogate as a \u escape, and a key spells __proto__
  // out or escapes one of its letters (_ o p r t), so a body with none of these needs no walk.
  if (text.includes('__proto__') || /\\u(?:00(?:00|5f|6f|7[024])|d[89a-f])/i.test(text)) {
    const bad = findBadText(value, true);
    if (bad) throw badTextError('body', bad);
  }
  return value;
}

/** Offset of the first sequence that is not well-formed UTF-8 (for the message only; -1 if none). */
export function firstBadUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    const n = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
    if (n < 0) return i;
    // The second byte's range excludes overlong forms (E0, F0), surrogates (ED) and code points past U+10FFFF (F4).
    const lo = c === 0xe0 ? 0xa0 : c === 0xf0 ? 0x90 : 0x80;
    const hi = c === 0xed ? 0x9f : c === 0xf4 ? 0x8f : 0xbf;
    for (let k = 1; k <= n; k++) {
      const x = b[i + k];
      if (x === undefined || x < (k === 1 ? lo : 0x80) || x > (k === 1 ? hi : 0xbf)) return i;
    }
    i += n + 1;
  }
  return -1;
}

/**
 * The request's bytes, refused with 413 once past the limit (the rest is then
 * read and dropped, so the answer reaches the client). A request that ends
 * early, aborted by its client, rejects with the stream's error.
 */
function readAll(req: IncomingMessage, limitBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // Nothing more will be emitted by a request already read to its end, or torn down.
    if (req.readableEnded) return resolve(Buffer.alloc(0));
    if (req.destroyed) return reject(prematureClose());
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) {
        done();
        req.resume();
        reject(new PayloadTooLargeError(limitBytes));
      } else {
        chunks.push(chunk);
      }
    };
    const onEnd = () => {
      done();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      done();
      reject(err instanceof AppError ? err : prematureClose(err));
    };
    const onClose = () => onError(prematureClose());
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
    // A 'data' listener starts the flow only on a stream nobody paused.
    req.resume();
  });
}

/**
 * The client's fault (it went away, or sent a malformed body that Node's parser gave up on): a 400, logged
 * as such. The client rarely sees it, its connection being gone; as a 500 it was logged as a server error.
 */
const prematureClose = (cause?: Error) =>
  new BadRequestError(`The request ended before its body did${cause?.message ? ` (${cause.message})` : ''}`, null, 'incomplete_body');

/** Deep enough for any request of this API with room to spare; deeper input only serves to exhaust stacks. */
export const MAX_JSON_DEPTH = 64;

/** Nesting depth of a parsed JSON value, without recursion. */
export function jsonDepth(value: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    max = Math.max(max, d);
    for (const x of Object.values(v as object)) stack.push([x, d + 1]);
  }
  return max;
}

/** Whether the text holds more than `max` of `{` and `[` (inside strings too: a bound on nesting); stops once it does. */
function moreOpeningsThan(text: string, max: number): boolean {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c === 123 || c === 91) && ++n > max) return true;
  }
  return false;
}

/** A lone UTF-16 surrogate: half of a pair, which no UTF-8 text (PostgreSQL's, for one) can hold. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export interface BadText {
  /** Dotted path of the value or key. */
  at: string;
  problem: 'nul' | 'surrogate' | 'proto';
}

const problemOf = (s: string): BadText['problem'] | null => (s.includes('\u0000') ? 'nul' : LONE_SURROGATE.test(s) ? 'surrogate' : null);

/**
 * The first string (value or key) that PostgreSQL text cannot store as sent:
 * one with a NUL, or with a lone surrogate (which would be refused as JSON, or
 * silently become U+FFFD as text). Both are refused at the edge of the API
 * rather than buffered at an edge and failed later at central. With `protoKeys`,
 * also a key named `__proto__`: JSON.parse keeps it as a key, but copying the
 * object (as the free-form preferences schema does) turns it into the copy's
 * prototype, so it was dropped without a word.
 */
export function findBadText(value: unknown, protoKeys = false): BadText | null {
  const stack: [unknown, string][] = [[value, '']];
  while (stack.length) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'string') {
      const problem = problemOf(v);
      if (problem) return { at: path || '(value)', problem };
    } else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        const at = path ? `${path}.${k}` : k;
        const problem = protoKeys && k === '__proto__' ? 'proto' : problemOf(k);
        if (problem) return { at, problem };
        stack.push([x, at]);
      }
    }
  }
  return null;
}

const BAD_TEXT: Record<BadText['problem'], [what: string, short: string]> = {
  nul: ['NUL characters are not allowed', 'NUL character'],
  surrogate: ['text must be valid Unicode (a lone UTF-16 surrogate was sent)', 'lone UTF-16 surrogate'],
  proto: ['a key named __proto__ is not accepted (JavaScript would take it for the object\'s prototype)', 'key named __proto__'],
};

export function badTextError(where: string, bad: BadText): ValidationError {
  const [what, short] = BAD_TEXT[bad.problem];
  return new ValidationError(`Invalid ${where}: ${bad.at}: ${what}`, [{ location: where, path: bad.at, message: short }]);
}
