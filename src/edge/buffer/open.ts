import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { Config } from '../../lib/config.js';
import type { TransactionBuffer } from './buffer.js';
import type { Logger } from '../../lib/logger.js';
import { SqliteBuffer } from './sqlite.js';
import { FileGuard, bufferFileGone } from './file-guard.js';
import { ThreadedSqliteBuffer } from './thread.js';

/** Logged when the Redis buffer refuses writes while Redis writes its first AOF (redis.ts, FIRST_AOF_GAP). */
const WRITING_AOF = 'Redis is writing its append-only file whole: new writes are refused (503) until it is done';

export interface OpenedBuffer {
  buffer: TransactionBuffer;
  /** For /health's `redis` field. */
  redisStatus(): string;
  /**
   * Why the buffer refuses new writes while it is otherwise up (a Redis that stopped fsyncing every write,
   * a buffer.db removed under the daemon), or null.
   */
  refusing(): string | null;
  /** Why the storage may lose acknowledged writes (a Redis that does not fsync every write), or null. */
  weakDurability(): string | null;
}

/** For the daemon: the SQLite buffer in its own thread, with the local store it applies writes to. */
export interface BufferThread {
  localPath: string;
  /** The thread died: the daemon cannot store writes any more. */
  onFailure(err: Error): void;
}

/**
 * Opens the configured buffer backend; throws BufferUnavailableError when it
 * cannot keep writes safe. With `thread`, the SQLite buffer runs in a storage
 * thread (the daemon); without, in the caller's (the CLI, tools, tests).
 */
export async function openBuffer(config: Config, thread?: BufferThread, log?: Logger, opts: { inspect?: boolean } = {}): Promise<OpenedBuffer> {
  if (config.bufferBackend === 'sqlite') {
    const path = join(config.dataDir, 'buffer.db');
    const buffer = thread ? await ThreadedSqliteBuffer.open(path, thread.localPath, thread.onFailure) : new SqliteBuffer(path);
    // The buffer checks this itself before each append (in the storage thread); this copy is for /health.
    const guard = new FileGuard(path);
    return {
      buffer,
      redisStatus: () => 'not_used',
      refusing: () => {
        const gone = guard.problem();
        return gone ? bufferFileGone(gone) : null;
      },
      weakDurability: () => null,
    };
  }
  const { RedisBuffer, isFirstAofNote } = await import('./redis.js');
  const buffer = await RedisBuffer.open({
    url: config.redisUrl,
    keyPrefix: `opsdb:${config.siteName}:`,
    // The daemon (it passes `thread`, which Redis does not use) holds the buffer's lease; the CLI does not.
    ...(thread ? { daemon: { who: `${hostname()} ${resolve(config.dataDir)}`, log: (m: string) => log?.error(m) } } : {}),
    // `inspect` (the CLI): an operator must be able to look at the buffer, and fix it, exactly when Redis
    // stopped being durable; `opsdb buffer verify` reports that as a problem instead.
    allowWeakDurability: config.redisAllowWeakDurability || opts.inspect === true,
    onDurabilityChange: (note) => {
      if (!note) log?.warn('Redis fsyncs every write again; writes are accepted as durable');
      else if (isFirstAofNote(note) && !config.redisAllowWeakDurability) {
        log?.warn({ problem: note }, WRITING_AOF);
      }
      else if (config.redisAllowWeakDurability) log?.warn({ problem: note }, 'Redis durability changed while the edge ran; writes go on (REDIS_ALLOW_WEAK_DURABILITY=true)');
      else log?.error({ problem: note }, 'Redis no longer fsyncs every write: new writes are refused (503) until it does again');
    },
  });
  // Opened while Redis writes its first AOF: said once here; the refusal ends by itself (onDurabilityChange).
  if (buffer.durabilityNote && isFirstAofNote(buffer.durabilityNote) && !config.redisAllowWeakDurability) {
    log?.warn({ problem: buffer.durabilityNote }, WRITING_AOF);
  }
  return {
    buffer,
    redisStatus: () =>
      buffer.refusingWrites
        ? `connected (refusing writes: ${buffer.refusal})`
        : buffer.durability === 'weak' ? `connected (weak durability: ${buffer.durabilityNote})` : 'connected',
    refusing: () => buffer.refusal,
    weakDurability: () => buffer.durabilityNote,
  };
}
