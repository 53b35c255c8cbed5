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
 *
 * Seqs that had reached central are not lost, though the buffer no longer
 * has them either (the common case: a buffer that synced and compacted
 * them, then was emptied). The local store records every seq compacted as
 * synced (`noteSynced`, before the compaction), and only the others count.
 */
import type { TransactionBuffer } from './buffer/buffer.js';
import type { LocalStore } from './local-store.js';

export interface LostSeqs {
  from: number;
  to: number;
  /** The buffer's last seq and the local store's applied seq when it was found (older records: from − 1 and to). */
  buffer_last?: number;
  applied?: number;
  detected_at: string;
  /** Set by `opsdb buffer accept-loss`; the range is then no longer reported, but its records still read `failed`. */
  accepted_at: string | null;
}

const KEY = 'lost_seqs';
const SYNCED_KEY = 'synced_seqs';
/** Intervals of synced seqs kept; a buffer lost far behind then reports some synced seqs as lost (never the reverse). */
const MAX_SYNCED_INTERVALS = 1000;

type Interval = [from: number, to: number];

function syncedIntervals(local: LocalStore): Interval[] {
  const v = local.getMeta(SYNCED_KEY);
  return v ? (JSON.parse(v) as Interval[]) : [];
}

/** Records seqs as applied at central (the sync engine, before it compacts them out of the buffer). */
export function noteSynced(local: LocalStore, seqs: readonly number[]): void {
  if (seqs.length === 0) return;
  const all: Interval[] = [...syncedIntervals(local), ...seqs.map((q): Interval => [q, q])].sort((a, b) => a[0] - b[0]);
  const merged: Interval[] = [];
  for (const [from, to] of all) {
    const last = merged.at(-1);
    if (last && from <= last[1] + 1) last[1] = Math.max(last[1], to);
    else merged.push([from, to]);
  }
  local.setMeta(SYNCED_KEY, JSON.stringify(merged.slice(-MAX_SYNCED_INTERVALS)));
}

/**
 * Takes seqs out of the synced record: central lost them (restored from a backup) and refused them when
 * they were sent again, so they are not at central; a buffer later found without them has lost them.
 */
export function noteUnsynced(local: LocalStore, seqs: readonly number[]): void {
  if (seqs.length === 0) return;
  const out = new Set(seqs);
  const kept: Interval[] = [];
  for (const [from, to] of syncedIntervals(local)) {
    let start = from;
    for (const q of [...out].filter((x) => x >= from && x <= to).sort((a, b) => a - b)) {
      if (q > start) kept.push([start, q - 1]);
      start = q + 1;
    }
    if (start <= to) kept.push([start, to]);
  }
  local.setMeta(SYNCED_KEY, JSON.stringify(kept));
}

/** `from`–`to` without the seqs recorded as synced. */
function unsynced(local: LocalStore, from: number, to: number): Interval[] {
  const out: Interval[] = [];
  let next = from;
  for (const [a, b] of syncedIntervals(local)) {
    if (b < next || a > to) continue;
    if (a > next) out.push([next, a - 1]);
    next = Math.max(next, b + 1);
  }
  if (next <= to) out.push([next, to]);
  return out;
}

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
export function describeLoss(r: Pick<LostSeqs, 'from' | 'to' | 'buffer_last' | 'applied'>): string {
  const n = r.to - r.from + 1;
  const last = r.buffer_last ?? r.from - 1;
  const applied = r.applied ?? r.to;
  const rest = applied - last - n;
  return `the buffer ends at seq ${last} but the local store has applied transactions up to seq ${applied}: ` +
    `${n} transaction${n === 1 ? '' : 's'} (seq ${r.from}${n > 1 ? `–${r.to}` : ''}) acknowledged at this edge ` +
    `${n === 1 ? 'is' : 'are'} no longer in the buffer (a buffer restored from an older backup, or a Redis that lost its data)` +
    (rest > 0 ? `; the other ${rest} in between had reached central` : '');
}

export interface Behind {
  /** The buffer's last seq, and the highest seq the local store applied (or the buffer gave out). */
  last: number;
  applied: number;
  /** What in between had not reached central: lost. */
  lost: Pick<LostSeqs, 'from' | 'to' | 'buffer_last' | 'applied'>[];
}

/**
 * How far the buffer is behind the local store (or behind `seen`, the
 * highest seq the buffer is known to have given out), and what of that is
 * lost; null when it is not behind. Changes nothing.
 */
export async function bufferBehind(buffer: TransactionBuffer, local: LocalStore, seen = 0): Promise<Behind | null> {
  // The local store first: a group appended and applied between the two reads then cannot pass for a loss.
  const appliedHere = local.appliedSeq();
  const last = (await buffer.stats()).last_seq;
  const applied = Math.max(appliedHere, seen);
  if (applied <= last) return null;
  const lost = unsynced(local, last + 1, applied).map(([from, to]) => ({ from, to, buffer_last: last, applied }));
  return { last, applied, lost };
}

/**
 * At start, or when an append found the buffer behind (BufferBehindError,
 * `seen`: the seqs it had given out): finds a buffer behind the local store,
 * records what of it is lost (first, so a crash before the counter is raised
 * finds it again), and raises the buffer's seq counter past it. Returns the
 * lost ranges (none when everything missing had reached central), or null
 * when the buffer is not behind.
 */
export async function detectLostSeqs(buffer: TransactionBuffer, local: LocalStore, seen = 0, actor = 'opsdb'): Promise<LostSeqs[] | null> {
  const behind = await bufferBehind(buffer, local, seen);
  if (!behind) return null;
  const ranges = lostSeqs(local);
  const found: LostSeqs[] = [];
  const added: LostSeqs[] = [];
  for (const lost of behind.lost) {
    let range = ranges.find((r) => r.from === lost.from && r.to === lost.to);
    if (!range) {
      range = { ...lost, detected_at: new Date().toISOString(), accepted_at: null };
      added.push(range);
    }
    found.push(range);
  }
  if (added.length) local.setMeta(KEY, JSON.stringify([...ranges, ...added]));
  const reason = found.length
    ? found.map(describeLoss).join('; ')
    : `the buffer ends at seq ${behind.last} but the local store has applied transactions up to seq ${behind.applied}; all of them had reached central, so nothing is lost`;
  await buffer.skipTo(behind.applied, actor, reason);
  return found;
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
