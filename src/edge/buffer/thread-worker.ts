/**
 * The storage thread's side of ThreadedSqliteBuffer (thread.ts): it owns the
 * SQLite buffer and a second connection to the local store, and runs every
 * call it receives one after another, in the order received. A group of new
 * writes is appended (one commit, one fsync) and applied to the local store
 * here, so neither the commit nor the row inserts hold up the HTTP thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SqliteBuffer } from './sqlite.js';
import { rememberStepsJson, type NewTransaction, type TransactionBuffer } from './buffer.js';
import { LocalGapError, LocalStore, catchUp } from '../local-store.js';
import { wireError, type CommitReply, type Reply, type Request, type WireTransaction } from './thread-protocol.js';

const port = parentPort!;
const { bufferPath, localPath } = workerData as { bufferPath: string; localPath: string };

let buffer: SqliteBuffer;
let local: LocalStore;
try {
  buffer = new SqliteBuffer(bufferPath);
  local = new LocalStore(localPath);
  port.postMessage({ ready: true });
} catch (err) {
  port.postMessage({ ready: false, error: wireError(err) });
  process.exit(0);
}

/** Appends a group and applies it to the local store; a failed local apply is reported, the writes stay durable. */
async function commitGroup(wire: WireTransaction[]): Promise<CommitReply> {
  const txs: NewTransaction[] = wire.map(({ steps_json, ...t }) => {
    const steps = JSON.parse(steps_json);
    rememberStepsJson(steps, steps_json);
    return { ...t, steps };
  });
  const stored = await buffer.append(txs);
  let localError: string | null = null;
  try {
    local.applyBuffered(stored);
  } catch (err) {
    if (!(err instanceof LocalGapError)) localError = `applying buffered writes to the local store failed: ${(err as Error).message}`;
    try {
      await catchUp(buffer, local);
    } catch (again) {
      localError = `the local store could not catch up with the buffer: ${(again as Error).message}`;
    }
  }
  return { stored: stored.map((t) => ({ seq: t.seq, bytes: t.bytes, updated_at: t.updated_at })), localError };
}

async function handle(req: Request): Promise<unknown> {
  if (req.method === 'commitGroup') return commitGroup(req.args[0] as WireTransaction[]);
  if (req.method === 'close') {
    await buffer.close();
    local.close();
    return null;
  }
  const fn = buffer[req.method as keyof TransactionBuffer] as (...a: unknown[]) => Promise<unknown>;
  return fn.apply(buffer, req.args);
}

let chain = Promise.resolve();
port.on('message', (req: Request) => {
  chain = chain.then(async () => {
    let reply: Reply;
    try {
      reply = { id: req.id, ok: true, value: await handle(req) };
    } catch (err) {
      reply = { id: req.id, ok: false, error: wireError(err) };
    }
    port.postMessage(reply);
    if (req.method === 'close') port.close();
  });
});
