/**
 * Room on the disk kept for sync. Writes are refused at MIN_FREE_DISK_BYTES, but the disk can still fill:
 * another program writes to it, or the watermark is set too low. Then SQLite cannot record central's
 * answers, nor compact what central holds, and the edge retries without end: the backlog that would free
 * the space can never leave. So once free space falls below MIN_FREE_DISK_BYTES + 1 GiB (a disk with more
 * room needs none, and tests do not write it), the edge keeps a file of DISK_RESERVE_BYTES in DATA_DIR,
 * removes it when the disk is nearly full (sync then has that much to work in), and makes it again once
 * there is room again.
 */
import { statSync, unlinkSync } from 'node:fs';
import { open, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../lib/logger.js';

export const RESERVE_FILE = 'disk-reserve';
const CHUNK = Buffer.alloc(1024 * 1024);
/** Above MIN_FREE_DISK_BYTES by more than this, no reserve is kept: the disk is far from full. */
export const RESERVE_ARM_BYTES = 1024 ** 3;

export class DiskReserve {
  readonly path: string;
  /** Set while the file is gone because the disk was full (logged once per release). */
  private released = false;

  constructor(
    dataDir: string,
    private readonly bytes: number,
    private readonly minFreeBytes: number,
    private readonly log: Logger,
  ) {
    this.path = join(dataDir, RESERVE_FILE);
  }

  private held(): boolean {
    try {
      return statSync(this.path).size >= this.bytes;
    } catch {
      return false;
    }
  }

  /**
   * One look at the disk: gives the room back when free space is below the reserve's size, makes the
   * reserve when free space is above the watermark plus twice its size. Never throws.
   */
  async check(): Promise<void> {
    if (this.bytes === 0) return;
    const s = await statfs(join(this.path, '..')).catch(() => null);
    if (!s) return;
    const free = s.bavail * s.bsize;
    const held = this.held();
    if (held && free < this.bytes) {
      try {
        unlinkSync(this.path);
        this.released = true;
        this.log.warn({ free_disk_bytes: free, reserve_bytes: this.bytes },
          `the disk under DATA_DIR is full: released the ${this.bytes}-byte reserve (${RESERVE_FILE}) so sync can record central's answers and compact; it is made again once there is room`);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'the disk reserve could not be released');
      }
    } else if (!held && free >= this.minFreeBytes + 2 * this.bytes && free < this.minFreeBytes + RESERVE_ARM_BYTES) {
      try {
        await this.write();
        if (this.released) this.log.info({ free_disk_bytes: free }, 'disk reserve made again');
        this.released = false;
      } catch (err) {
        // No room after all, or a read-only disk: tried again at the next look.
        try {
          unlinkSync(this.path);
        } catch {
          // not there
        }
        this.log.debug({ err: (err as Error).message }, 'disk reserve not made');
      }
    }
  }

  /** Written, not only sized (a sparse file would hold no room), off the event loop. */
  private async write(): Promise<void> {
    const f = await open(this.path, 'w');
    try {
      for (let done = 0; done < this.bytes; done += CHUNK.length) await f.write(CHUNK, 0, Math.min(CHUNK.length, this.bytes - done));
      await f.sync();
    } finally {
      await f.close();
    }
  }
}
