import type { Context } from 'koa';
import { BadRequestError, PayloadTooLargeError, AppError } from '../errors.js';

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
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`Request body is not valid JSON: ${(err as Error).message}`, null, 'invalid_json');
  }
}
