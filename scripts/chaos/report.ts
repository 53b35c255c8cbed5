/** The run's event log (stdout and events.log) and its findings: each a broken guarantee, by kind. */
import { appendFileSync } from 'node:fs';

const T0 = Date.now();
let eventLog: string | null = null;

/** Seconds since the run started, as the log shows them. */
export const ts = (): string => ((Date.now() - T0) / 1000).toFixed(1).padStart(6);
export const sinceStart = (t: number): string => ((t - T0) / 1000).toFixed(1);

export function openEventLog(file: string): void {
  eventLog = file;
}

export function log(msg: string): void {
  const line = `[${ts()}s] ${msg}`;
  console.log(line);
  if (eventLog) appendFileSync(eventLog, line + '\n');
}

export interface Finding {
  at: string;
  kind: string;
  detail: unknown;
}
export const findings: Finding[] = [];
/** How many of each kind (only the first 20 of a kind keep their detail). */
export const findingCounts = new Map<string, number>();

export function finding(kind: string, detail: unknown): void {
  const n = (findingCounts.get(kind) ?? 0) + 1;
  findingCounts.set(kind, n);
  if (n <= 20) {
    findings.push({ at: ts(), kind, detail });
    log(`FINDING ${kind}: ${JSON.stringify(detail)?.slice(0, 600)}`);
  }
}

export const findingSummary = (): string => [...findingCounts].map(([k, n]) => `${k}×${n}`).join(', ');
