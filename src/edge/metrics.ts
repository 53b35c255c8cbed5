/**
 * The edge's Prometheus metrics (SPEC §8). Buffer gauges are read from the
 * buffer's counters at scrape time, so they always agree with /buffer-stats
 * (opsdb_sync_applied_total too); the error counter follows the engine's events.
 */
import { Counter, Gauge } from 'prom-client';
import type { AppMetrics } from '../lib/metrics.js';
import type { TransactionBuffer } from './buffer/buffer.js';
import type { SyncEngine } from '../sync/engine.js';

export function registerEdgeMetrics(m: AppMetrics, buffer: TransactionBuffer, engine: SyncEngine | null): void {
  const registers = [m.registry];
  // One read of the buffer per scrape, shared by every gauge.
  let scrape: Promise<Awaited<ReturnType<TransactionBuffer['stats']>>> | null = null;
  const stats = () => (scrape ??= buffer.stats().finally(() => setImmediate(() => (scrape = null))));
  const gauge = (name: string, help: string, read: (s: Awaited<ReturnType<TransactionBuffer['stats']>>) => number) =>
    new Gauge({ name, help, registers, async collect() { this.set(read(await stats())); } });

  gauge('opsdb_buffer_pending_transactions', 'Transactions waiting to be sent to central', (s) => s.pending);
  gauge('opsdb_buffer_in_flight_transactions', 'Transactions sent and not yet answered', (s) => s.in_flight);
  gauge('opsdb_buffer_blocked_transactions', 'Transactions held behind a failed parent', (s) => s.blocked);
  gauge('opsdb_buffer_failed_transactions', 'Transactions central rejected, waiting for an operator', (s) => s.failed);
  gauge('opsdb_buffer_synced_awaiting_replica_transactions', 'Synced transactions kept until the replica has them', (s) => s.synced);
  gauge('opsdb_buffer_pending_bytes', 'Bytes of transactions not yet synced', (s) => s.pending_bytes);
  gauge('opsdb_buffer_held_bytes', 'Bytes held in the buffer (what BUFFER_MAX_BYTES caps)', (s) => s.held_bytes);
  gauge('opsdb_buffer_oldest_pending_age_seconds', 'Age of the oldest transaction not yet sent', (s) =>
    s.oldest_pending_created_at ? Math.max(0, (Date.now() - Date.parse(s.oldest_pending_created_at)) / 1000) : 0,
  );
  gauge('opsdb_buffer_accepted_total', 'Transactions ever accepted (the ledger: accepted = applied + pending + in_flight + blocked + failed + discarded)', (s) => s.accepted_total);
  gauge('opsdb_buffer_discarded_total', 'Transactions an operator discarded', (s) => s.discarded_total);

  // The ledger's applied_total, read like the gauges: it agrees with /buffer-stats and does not start again at 0 after a
  // restart. It grows, but for one case: transactions a central restored from a backup had lost and then refused
  // when sent again go back to failed (failSynced), and leave it; Prometheus reads that drop as a counter reset.
  new Counter({
    name: 'opsdb_sync_applied_total', help: 'Transactions central applied (or had already applied) for this edge, ever (the ledger)', registers,
    async collect() {
      const total = (await stats()).applied_total;
      this.reset();
      this.inc(total);
    },
  });
  const errors = new Counter({ name: 'opsdb_sync_errors_total', help: 'Failed exchanges with central, by kind', labelNames: ['kind'] as const, registers });
  new Gauge({
    name: 'opsdb_sync_last_success_timestamp_seconds', help: 'Unix time of the last successful exchange with central (0: never)', registers,
    collect() {
      const at = engine?.lastSyncAt();
      this.set(at ? Date.parse(at) / 1000 : 0);
    },
  });
  new Gauge({
    name: 'opsdb_sync_paused', help: '1 while the engine is paused because central refused the site token', registers,
    collect() {
      this.set(engine?.state() === 'paused' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'opsdb_sync_central_replay_remaining_seqs',
    help: "While the edge sends again what a central restored from a backup lost: seqs still to go (through_seq - after_seq); 0 otherwise",
    registers,
    collect() {
      const r = engine?.centralReplay();
      this.set(r ? Math.max(0, r.through_seq - r.after_seq) : 0);
    },
  });
  engine?.on({ error: (kind) => errors.inc({ kind }) });
}
