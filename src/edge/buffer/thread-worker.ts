/**
 * The storage thread's side of ThreadedSqliteBuffer (thread.ts): it owns the
 * SQLite buffer and a second connection to the local store, and runs every
 * call it receives one after another, in the order received. A group of new
 * writes is appended (one commit, one fsync) and applied to the local store
 * here, so neither the commit nor the row inserts hold up the HTTP thread.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { SqliteBuffer } from './sqlite.js';
import { rememberStepsJson, type NewTransaction, type TransactionBuffer } from './buffer.js';
import { LocalStore, applyOrCatchUp, catchUp } from '../local-store.js';
import { wireError, type CommitReply, type Reply, type Request, type WireTransaction } from './thread-protocol.js';

const port = parentPort!;
const { bufferPath, localPath, replies } = workerData as { bufferPath: string; localPath: string; replies: MessagePort };

let buffer: SqliteBuffer;
let local: LocalStore;
try {
  buffer = new SqliteBuffer(bufferPath);
} catch (err) {
  port.postMessage({ ready: false, error: wireError(err) });
  process.exit(0);
}
try {
  local = new LocalStore(localPath);
} catch (err) {
  port.postMessage({ ready: false, error: { kind: 'unavailable', message: `cannot open the local store at ${localPath}: ${(err as Error).message}` } });
  process.exit(0);
}
port.postMessage({ ready: true });

/** Appends a group and applies it to the local store; a failed local apply is reported, the writes stay durable. */
async function commitGroup(wire: WireTransaction[]): Promise<CommitReply> {
  const txs: NewTransaction[] = wire.map(({ steps_json, ...t }) => {
    const steps = JSON.parse(steps_json);
    rememberStepsJson(steps, steps_json);
    return { ...t, steps };
  });
  const stored = await buffer.append(txs);
  const { error: localError, recovered: localRecovered } = await applyOrCatchUp(buffer, local, stored);
  return { stored: stored.map((t) => ({ seq: t.seq, bytes: t.bytes, updated_at: t.updated_at })), localError, localRecovered };
}

async function handle(req: Request): Promise<unknown> {
  if (req.method === 'commitGroup') return commitGroup(req.args[0] as WireTransaction[]);
  if (req.method === 'catchUpLocal') return catchUp(buffer, local);
  if (req.method === 'reclaim') {
    await buffer.reclaim();
    local.db.pragma('wal_checkpoint(TRUNCATE)');
    return null;
  }
  if (req.method === 'close') {
    await buffer.close();
    local.close();
    return null;
  }
  const fn = buffer[req.method as keyof TransactionBuffer] as (...a: unknown[]) => Promise<unknown>;
  return fn.apply(buffer, req.args);
}

/** Answers one call; an answer that cannot cross to the caller's thread becomes an error answer, never a silence. */
function answer(reply: Reply): void {
  try {
    replies.postMessage(reply);
  } catch (err) {
    replies.postMessage({ id: reply.id, ok: false, error: { kind: 'other', message: `the buffer's answer could not be sent: ${(err as Error).message}` } });
  }
}

let chain = Promise.resolve();
port.on('message', (req: Request) => {
  chain = chain.then(async () => {
    try {
      answer({ id: req.id, ok: true, value: await handle(req) });
    } catch (err) {
      answer({ id: req.id, ok: false, error: wireError(err) });
    }
    if (req.method === 'close') {
      port.close();
      replies.close();
    }
  });
});
// A call that arrives unreadable cannot be answered by id: the caller's thread then treats the thread as failed.
port.on('messageerror', (err) => {
  throw new Error(`a call to the buffer thread could not be read: ${err.message}`);
});
