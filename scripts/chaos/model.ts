/**
 * What the writers were told: every acknowledged transaction and the rows it made, with the updates of
 * each row in order. Writes whose answer was lost (the edge may or may not have kept them) widen what the
 * final checks accept instead of being guessed.
 */

export interface ObsModel {
  id: string;
  tx: string;
  client: number;
  obs_unit_id: number;
  start_time: string;
  mean_pwv: number | null;
  mean_elevation: number | null;
  imc: number | null;
  status: string;
  end_time: string | null;
  /** Finishes acknowledged at the edge, in order. */
  finishes: { tx: string; status: string; end_time: string; mean_pwv?: number }[];
  /** Finishes whose outcome is unknown (connection cut / may-or-may-not), after the last acknowledged one. */
  unknownAfter: { status: string; end_time: string; mean_pwv?: number }[];
  /** Finishes an admin made at central ('?': the answer was lost, it may have applied). */
  central: { tx: string; status: string; end_time: string }[];
}

export interface PkgModel {
  id: string;
  tx: string;
  obs: string;
  name: string;
  finalized: { size: number; checksum: string } | null;
  unknownFinalize: boolean;
  centralFinalize: boolean;
}

export interface FileModel {
  id: string;
  tx: string;
  obs: string;
  pkg: string | null;
  name: string;
  path: string;
  size: number;
  checksum: string;
  file_type: string;
}

export interface PrefsModel {
  last: unknown;
  unknownAfter: unknown[];
  tx: string | null;
  central?: { tx: string; prefs: unknown }[];
}

export const M = {
  acked: [] as { tx: string; op: string; client: number; at: number }[],
  obs: new Map<string, ObsModel>(),
  pkgs: new Map<string, PkgModel>(),
  files: new Map<string, FileModel>(),
  prefs: new Map<number, PrefsModel>(),
  /** 503 "may or may not have been stored": the transaction id the edge named. */
  maybe: [] as { tx: string; op: string }[],
  /** Acknowledged transactions that refer to rows earlier acknowledged ones created (or follow them: preferences). */
  deps: [] as { tx: string; op: string; parents: string[] }[],
  lostResponses: 0,
  refused: 0,
  stoppingRefusals: 0,
  ops: {} as Record<string, Record<string, number>>,
  /** Last sync_status read per row (it must never go back from synced). */
  lastStatus: new Map<string, string>(),
};

export function countOp(op: string, outcome: string): void {
  const o = (M.ops[op] ??= {});
  o[outcome] = (o[outcome] ?? 0) + 1;
}
