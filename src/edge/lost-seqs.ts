/**
 * A buffer found behind the local store. The local store records the
 * highest seq it has applied; a buffer whose last seq is lower has lost
 * transactions this edge acknowledged: a `buffer.db` restored from an older
 * backup next to a newer `local.db`, or a Redis that came back without its
 * data. Nothing can bring them back from here, but nothing may hide it
 * either (SPEC §2.5): the edge records the range in the local store, raises
 * the buffer's seq counter past it (new writes never reuse a seq the local
 * store has seen), logs it, reports it in /buffer-stats and /health until an
 * operator accepts it (`opsdb buffer accept-loss`), and shows the records
 * those transactions created as `failed`.
 */
import type { TransactionBuffer } from './buffer/buffer.js';
import type { LocalStore } from './local-store.js';

export interface LostSeqs {
  from: number;
  to: number;
  detected_at: string;
  /** Set by `opsdb buffer accept-loss`; the range is then no longer reported, but its records still read `failed`. */
  accepted_at: string | null;
}

const KEY = 'lost_seqs';

export function lostSeqs(local: LocalStore): LostSeqs[] {
  const v = local.getMeta(KEY);
  return v ? (JSON.parse(v) as LostSeqs[]) : [];
}

/** How many lost transactions no operator has accepted yet. */
export function unacceptedLoss(ranges: readonly LostSeqs[]): number {
  return ranges.filter((r) => !r.accepted_at).reduce((n, r) => n + r.to - r.from + 1, 0);
}

export function isLost(ranges: readonly LostSeqs[], seq: number): boolean {
  return ranges.some((r) => seq >= r.from && seq <= r.to);
}

/** What a lost range means, for the log, the audit record and `opsdb buffer verify`. */
export function describeLoss(r: Pick<LostSeqs, 'from' | 'to'>): string {
  const n = r.to - r.from + 1;
  return `the buffer ends at seq ${r.from - 1} but the local store has applied transactions up to seq ${r.to}: ` +
    `${n} transaction${n === 1 ? '' : 's'} (seq ${r.from}${n > 1 ? `–${r.to}` : ''}) acknowledged at this edge ` +
    `${n === 1 ? 'is' : 'are'} no longer in the buffer (a buffer restored from an older backup, or a Redis that lost its data)`;
}

/**
 * The range the buffer is behind the local store by (or behind `seen`, the
 * highest seq the buffer is known to have given out), or null. Changes nothing.
 */
export async function bufferBehind(buffer: TransactionBuffer, local: LocalStore, seen = 0): Promise<Pick<LostSeqs, 'from' | 'to'> | null> {
  const last = (await buffer.stats()).last_seq;
  const applied = Math.max(local.appliedSeq(), seen);
  return applied > last ? { from: last + 1, to: applied } : null;
}

/**
 * At start, or when an append found the buffer behind (BufferBehindError,
 * `seen`: the seqs it had given out): finds a buffer behind the local store,
 * records the range (first, so a crash before the counter is raised finds it
 * again), and raises the buffer's seq counter past it. Returns the range, or
 * null.
 */
export async function detectLostSeqs(buffer: TransactionBuffer, local: LocalStore, seen = 0, actor = 'opsdb'): Promise<LostSeqs | null> {
  const behind = await bufferBehind(buffer, local, seen);
  if (!behind) return null;
  const ranges = lostSeqs(local);
  let range = ranges.find((r) => r.from === behind.from && r.to === behind.to);
  if (!range) {
    range = { ...behind, detected_at: new Date().toISOString(), accepted_at: null };
    local.setMeta(KEY, JSON.stringify([...ranges, range]));
  }
  await buffer.skipTo(behind.to, actor, describeLoss(behind));
  return range;
}

/** `opsdb buffer accept-loss`: marks every range not yet accepted as accepted. Returns those ranges. */
export function acceptLostSeqs(local: LocalStore): LostSeqs[] {
  const now = new Date().toISOString();
  const ranges = lostSeqs(local);
  const accepted = ranges.filter((r) => !r.accepted_at);
  if (accepted.length === 0) return [];
  local.setMeta(KEY, JSON.stringify(ranges.map((r) => (r.accepted_at ? r : { ...r, accepted_at: now }))));
  return accepted.map((r) => ({ ...r, accepted_at: now }));
}
