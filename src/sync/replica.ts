import type { Change } from '../lib/api/sync-schemas.js';

/**
 * Central's change of a row, held back because a local change of the row
 * stood: the seq of that local change (`heldBy`), and of the row's last local
 * change now (`origin`; null: the row is central's copy again, or gone).
 */
export interface HeldChange {
  table: string;
  key: string;
  heldBy: number;
  origin: number | null;
}

/** Where the change feed lands: the edge's local store. */
export interface ReplicaSink {
  /** The feed position applied so far (0: never synced). */
  position(): number;
  /** Central's `position_id` of that position (null: never synced, or read from a central older than it). */
  positionId?(): string | null;
  /** For the rows these changes touch that a local write still owns: `table:key` → origin seq. */
  originSeqs(changes: Change[]): Map<string, number>;
  /**
   * Applies the changes and records `position` (and its `positionId`), atomically. Rows named in
   * `keep` have newer local writes not yet at central and stay as they are;
   * so does any row whose origin seq is no longer the one `origins` saw (a
   * local write landed while the engine looked up states).
   */
  apply(changes: Change[], position: number, keep: ReadonlySet<string>, origins: ReadonlyMap<string, number>, skipDeferred?: ReadonlySet<number>, positionId?: string | null): void;
  /**
   * Seqs of buffered updates of rows these changes bring, which the store
   * did not hold when the updates were written: applied on top of central's
   * copy as it arrives, except those in `skipDeferred` (synced or discarded:
   * central's copy is then the row).
   */
  deferredSeqs?(changes: Change[]): number[];
  /** Central's changes a pull held back because a local change of the row stood (`keep`). */
  heldChanges?(): HeldChange[];
  /** Puts the held changes in `release` in place and forgets those in `drop` (each only if the row's last local change is still `origin`). */
  settleHeld?(release: readonly HeldChange[], drop: readonly HeldChange[]): void;
  /**
   * Records that these seqs were applied at central, before they are
   * compacted out of the buffer: a buffer later found behind the local store
   * then does not count them as lost (lost-seqs.ts).
   */
  noteSynced?(seqs: readonly number[]): void;
  /** Takes seqs out of that record: central lost them and refused them when they were sent again. */
  noteUnsynced?(seqs: readonly number[]): void;
}
