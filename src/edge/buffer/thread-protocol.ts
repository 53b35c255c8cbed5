/** Messages between ThreadedSqliteBuffer and its storage thread, and errors made fit to cross. */
import { BufferNotDurableError, BufferUnavailableError, DuplicateTransactionError, type NewTransaction } from './buffer.js';

/** A new transaction as sent to the thread: its steps as the JSON text the buffer stores. */
export type WireTransaction = Omit<NewTransaction, 'steps'> & { steps_json: string };

export interface Request {
  id: number;
  method: string;
  args: unknown[];
}

export type Reply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: WireError };

export interface CommitReply {
  stored: { seq: number; bytes: number; updated_at: string }[];
  /** Set when the writes are durable but the local store did not take them (it catches up later). */
  localError: string | null;
  /** Set when the local apply failed but the catch-up from the buffer then applied them: visible, but worth a warning. */
  localRecovered: string | null;
}

export interface WireError {
  kind: 'duplicate' | 'unavailable' | 'not_durable' | 'other';
  message: string;
  code?: string;
  transactionId?: string;
}

export function wireError(err: unknown): WireError {
  if (err instanceof DuplicateTransactionError) return { kind: 'duplicate', message: err.message, transactionId: err.transactionId };
  const e = err as { message?: unknown; code?: unknown };
  return {
    kind: err instanceof BufferNotDurableError ? 'not_durable' : err instanceof BufferUnavailableError ? 'unavailable' : 'other',
    message: typeof e?.message === 'string' ? e.message : String(err),
    ...(typeof e?.code === 'string' ? { code: e.code } : {}),
  };
}

/** The error the caller would have had from the buffer in its own thread (class and `code` kept). */
export function fromWire(w: WireError): Error {
  if (w.kind === 'duplicate') return new DuplicateTransactionError(w.transactionId!);
  const err = w.kind === 'not_durable' ? new BufferNotDurableError(w.message)
    : w.kind === 'unavailable' ? new BufferUnavailableError(w.message) : new Error(w.message);
  if (w.code) Object.assign(err, { code: w.code });
  return err;
}
