import type { Change } from '../lib/api/sync-schemas.js';

/** Where the change feed lands: the edge's local store. */
export interface ReplicaSink {
  /** The feed position applied so far (0: never synced). */
  position(): number;
  /** For the rows these changes touch that a local write still owns: `table:key` → origin seq. */
  originSeqs(changes: Change[]): Map<string, number>;
  /**
   * Applies the changes and records `position`, atomically. Rows named in
   * `keep` have newer local writes not yet at central and stay as they are;
   * so does any row whose origin seq is no longer the one `origins` saw (a
   * local write landed while the engine looked up states).
   */
  apply(changes: Change[], position: number, keep: ReadonlySet<string>, origins: ReadonlyMap<string, number>, skipDeferred?: ReadonlySet<number>): void;
  /**
   * Seqs of buffered updates of rows these changes bring, which the store
   * did not hold when the updates were written: applied on top of central's
   * copy as it arrives, except those in `skipDeferred` (synced or discarded:
   * central's copy is then the row).
   */
  deferredSeqs?(changes: Change[]): number[];
  /**
   * Central's changes a pull held back because a local change of the row
   * stood (`keep`), with the seq of the row's last local change now (null:
   * the row is central's copy again, or gone).
   */
  heldChanges?(): { table: string; key: string; origin: number | null }[];
  /** Puts the held changes in `release` in place and forgets those in `drop` (each only if the row's last local change is still `origin`). */
  settleHeld?(release: readonly { table: string; key: string; origin: number | null }[], drop: readonly { table: string; key: string; origin: number | null }[]): void;
  /**
   * Records that these seqs were applied at central, before they are
   * compacted out of the buffer: a buffer later found behind the local store
   * then does not count them as lost (lost-seqs.ts).
   */
  noteSynced?(seqs: readonly number[]): void;
}
