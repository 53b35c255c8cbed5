import { join } from 'node:path';
import type { Config } from '../../lib/config.js';
import type { TransactionBuffer } from './buffer.js';
import { SqliteBuffer } from './sqlite.js';

export interface OpenedBuffer {
  buffer: TransactionBuffer;
  /** For /health's `redis` field. */
  redisStatus(): string;
}

/** Opens the configured buffer backend; throws BufferUnavailableError when it cannot keep writes safe. */
export async function openBuffer(config: Config): Promise<OpenedBuffer> {
  if (config.bufferBackend === 'sqlite') {
    return { buffer: new SqliteBuffer(join(config.dataDir, 'buffer.db')), redisStatus: () => 'not_used' };
  }
  const { RedisBuffer } = await import('./redis.js');
  const buffer = await RedisBuffer.open({
    url: config.redisUrl,
    keyPrefix: `opsdb:${config.siteName}:`,
    allowWeakDurability: config.redisAllowWeakDurability,
  });
  return {
    buffer,
    redisStatus: () => (buffer.durability === 'weak' ? `connected (weak durability: ${buffer.durabilityNote})` : 'connected'),
  };
}
