import type { Pool } from './db.js';
import { withTransaction } from './db.js';
import type { OpsBackend, WriteOutcome } from '../lib/api/backend.js';
import type { Principal } from '../lib/auth.js';
import type { TransactionDraft } from '../lib/api/transaction.js';
import { PgAccounts } from './accounts.js';
import { CentralQueries } from './queries.js';
import { applyTransaction } from './apply.js';

/** Central's side of the common HTTP surface: reads from PostgreSQL, writes committed at once. */
export class CentralBackend extends CentralQueries implements OpsBackend {
  readonly siteType = 'main' as const;
  readonly auth: PgAccounts;

  constructor(
    private readonly db: Pool,
    readonly siteName: string,
  ) {
    super(db);
    this.auth = new PgAccounts(db);
  }

  async startTimeOf(id: string): Promise<string | null> {
    const { rows } = await this.db.query<{ start_time: Date }>('SELECT start_time FROM executed_obs_unit WHERE id = $1', [id]);
    return rows[0] ? rows[0].start_time.toISOString() : null;
  }

  async health() {
    let database = 'connected';
    try {
      await this.db.query('SELECT 1');
    } catch (err) {
      database = `error: ${(err as { code?: string }).code ?? 'unreachable'}`;
    }
    const ok = database === 'connected';
    return {
      status: ok ? ('healthy' as const) : ('unhealthy' as const),
      site: { name: this.siteName, type: this.siteType },
      database,
      redis: 'not_used',
      transaction_buffer: { size: 0, failed: 0 },
      background_processor: 'disabled' as const,
    };
  }

  async submit(draft: TransactionDraft, principal: Principal): Promise<WriteOutcome> {
    await withTransaction(this.db, (c) => applyTransaction(c, { ...draft, seq: null }, principal.userId));
    return { status: 'committed', transaction_id: draft.transaction_id };
  }
}
