import type { Context } from 'koa';
import { BadRequestError, PayloadTooLargeError, AppError, ValidationError } from '../errors.js';

/**
 * Reads a JSON request body with a hard size limit. Oversized bodies are
 * refused with 413 as soon as the limit is crossed (or from Content-Length),
 * malformed JSON with 400; neither reaches a handler.
 */
export async function readJsonBody(ctx: Context, limitBytes: number): Promise<unknown> {
  const declared = Number(ctx.get('content-length') || NaN);
  if (Number.isFinite(declared) && declared > limitBytes) throw new PayloadTooLargeError(limitBytes);
  const type = ctx.get('content-type');
  if (type && !/^application\/([\w.+-]+\+)?json\b/i.test(type)) {
    throw new AppError(415, 'unsupported_media_type', `Content-Type must be application/json, got "${type}"`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limitBytes) {
      ctx.req.resume();
      throw new PayloadTooLargeError(limitBytes);
    }
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new BadRequestError('Request body is empty; a JSON object is required', null, 'empty_body');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`Request body is not valid JSON: ${(err as Error).message}`, null, 'invalid_json');
  }
  const depth = jsonDepth(value);
  if (depth > MAX_JSON_DEPTH) {
    throw new ValidationError(`Request body nests ${depth} levels deep; at most ${MAX_JSON_DEPTH} are accepted`, { max_depth: MAX_JSON_DEPTH });
  }
  return value;
}

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
