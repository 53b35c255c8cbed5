import type { TxError } from './buffer/buffer.js';
import type { CentralReplay } from '../sync/engine.js';

/** What the edge's HTTP layer may know of the sync engine: status only, no control. */
export interface SyncView {
  state(): 'running' | 'paused' | 'stopped' | 'disabled';
  lastSyncAt(): string | null;
  lastError(): TxError | null;
  consecutiveFailures(): number;
  /** null when no central is configured. */
  centralReachable(): boolean | null;
  /**
   * While the engine waits after a failure: when it tries again (ISO time).
   * null when it is not waiting out a failure.
   */
  nextAttemptAt(): string | null;
  /** Applied transactions per second over the last minute. */
  processingRate(): number;
  /**
   * Another edge process syncs as this site (two daemons with one SITE_NAME),
   * as central said in its last answer: that one's id, and since when this
   * engine has been told. null otherwise.
   */
  edgeConflict(): { other_edge_id: string; since: string } | null;
  /**
   * Central's database went back in time and the engine is sending it again the synced transactions
   * the buffer still has whole: how far it is, and what central answered so far. null otherwise.
   */
  centralReplay(): CentralReplay | null;
}

/** No CENTRAL_URL: the edge runs on its own, buffering everything. */
export const SYNC_DISABLED: SyncView = {
  state: () => 'disabled',
  lastSyncAt: () => null,
  lastError: () => null,
  consecutiveFailures: () => 0,
  centralReachable: () => null,
  nextAttemptAt: () => null,
  processingRate: () => 0,
  edgeConflict: () => null,
  centralReplay: () => null,
};
