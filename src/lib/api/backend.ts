/**
 * What a site must provide to serve the common HTTP surface (SPEC §4).
 * Central implements it over PostgreSQL (writes committed at once); the edge
 * over its buffer and replica (writes buffered). Routes see only this.
 */
import type { z } from './zod.js';
import type { Principal, TokenRecord } from '../auth.js';
import type * as S from './schemas.js';
import type { TransactionDraft } from './transaction.js';

export type Json = Record<string, unknown>;

export interface WriteOutcome {
  status: 'committed' | 'buffered';
  transaction_id: string;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface TokenAdmin {
  /** Look up a token by its SHA-256 digest. Never sees the token itself. */
  findToken(hash: string): Promise<TokenRecord | null>;
  /** Record a use (last_used_at, usage_count); best effort, never fails a request. */
  touchToken(tokenId: number): void;
  getUser(userId: number): Promise<z.infer<typeof S.Me> | null>;
  createToken(userId: number, input: S.CreateTokenInput): Promise<z.infer<typeof S.CreatedToken>>;
  listTokens(userId: number | null): Promise<z.infer<typeof S.TokenInfo>[]>;
  getToken(tokenId: number): Promise<z.infer<typeof S.TokenInfo> | null>;
  /** Deactivate at once; idempotent. */
  revokeToken(tokenId: number): Promise<void>;
  /** Demo mode only: ensure the `admin` user and mint a token for it. */
  createDemoToken(): Promise<{ token: string; user_id: number }>;
}

export interface OpsBackend {
  readonly siteType: 'main' | 'secondary';
  readonly siteName: string;
  readonly auth: TokenAdmin;

  health(): Promise<z.infer<typeof S.Health>>;

  listInstruments(): Promise<z.infer<typeof S.Instrument>[]>;
  getInstrument(id: number): Promise<z.infer<typeof S.InstrumentDetail> | null>;
  listObservingPrograms(): Promise<z.infer<typeof S.ObservingProgram>[]>;
  listObsUnits(q: z.infer<typeof S.ObsUnitQuery>): Promise<z.infer<typeof S.ObsUnit>[]>;

  listExecutedObsUnits(q: S.ExecutedObsUnitFilter): Promise<Page<z.infer<typeof S.ExecutedObsUnit>>>;
  getExecutedObsUnit(id: string): Promise<z.infer<typeof S.ExecutedObsUnitDetail> | null>;
  getRawDataFile(id: string): Promise<z.infer<typeof S.RawDataFile> | null>;
  getRawDataPackage(id: string): Promise<z.infer<typeof S.RawDataPackageDetail> | null>;
  transferOverview(): Promise<z.infer<typeof S.TransferOverview>>;
  getTransaction(id: string): Promise<z.infer<typeof S.TransactionState> | null>;
  /** An observation's start_time (ISO), or null when there is none here: a finish's default end_time is not before it. */
  startTimeOf(id: string): Promise<string | null>;

  /**
   * Accept one write. Central applies all steps in one database transaction
   * or none; the edge makes it durable in its buffer. Reference errors are
   * thrown as AppErrors (4xx) with nothing written.
   */
  submit(tx: TransactionDraft, principal: Principal): Promise<WriteOutcome>;
}
