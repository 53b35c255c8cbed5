/** `opsdb buffer …`: the edge buffer, with the daemon running or stopped. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LocalStore, checkSiteOfDataDir } from '../edge/local-store.js';
import { acceptLostSeqs, bufferBehind, describeLoss, lostSeqs, type LostSeqs } from '../edge/lost-seqs.js';
import type { Config } from '../lib/config.js';
import { openBuffer } from '../edge/buffer/open.js';
import { RECEIPT_DAYS, TX_STATES, heldReason, type TransactionBuffer, type TxState } from '../edge/buffer/buffer.js';
import { transactionState } from '../edge/backend.js';
import { oneArg, UsageError, type Command } from './command.js';
import { NO_REASON, bufferStats } from '../edge/routes.js';
import { SYNC_DISABLED } from '../edge/sync-view.js';
import { userInfo } from 'node:os';
import { UUID_RE } from '../lib/uuid.js';

async function withBuffer<T>(config: Config, fn: (b: TransactionBuffer, weak: string | null) => Promise<T>): Promise<T> {
  if (config.siteType !== 'secondary') throw new UsageError('the buffer exists only at an edge (SITE_TYPE=secondary)');
  // Never make a buffer here: on a mistyped DATA_DIR (or a missing --config) an empty new one would answer
  // "nothing pending" and `wait-empty` "everything applied", while the daemon's real buffer is elsewhere.
  const mark = join(config.dataDir, config.bufferBackend === 'sqlite' ? 'buffer.db' : 'local.db');
  if (!existsSync(mark)) {
    throw new Error(
      `no edge has run with DATA_DIR=${config.dataDir} (there is no ${mark}). Point DATA_DIR, or --config, at the daemon's ` +
        'data directory, e.g. opsdb buffer … --config /etc/opsdb/edge.toml, or DATA_DIR=/var/lib/opsdb',
    );
  }
  // A Redis buffer is found by SITE_NAME (its keys carry it): under another name it would look empty. The
  // SQLite buffer is its file, whatever the name.
  if (config.bufferBackend === 'redis') checkSiteOfDataDir(config.dataDir, join(config.dataDir, 'local.db'), config.siteName);
  const { buffer, weakDurability } = await openBuffer(config, undefined, undefined, { inspect: true });
  try {
    return await fn(buffer, weakDurability());
  } finally {
    await buffer.close();
  }
}

const actor = () => `cli:${userInfo().username}`;

/** Runs `fn` on the edge's local store, or on null when no edge has run on DATA_DIR yet. */
async function withLocal<T>(config: Config, fn: (local: LocalStore | null) => T | Promise<T>): Promise<T> {
  const path = join(config.dataDir, 'local.db');
  if (!existsSync(path)) return fn(null);
  const local = new LocalStore(path);
  try {
    return await fn(local);
  } finally {
    local.close();
  }
}

const lostOf = (config: Config): Promise<LostSeqs[]> => withLocal(config, (local) => (local ? lostSeqs(local) : []));
const json = (v: unknown) => console.log(JSON.stringify(v, null, 2));

export const bufferStatsCommand: Command = {
  summary: 'the buffer ledger, as /buffer-stats shows it (sync fields need the daemon)',
  usage: 'opsdb buffer stats [--config FILE]',
  async run({ config }) {
    json(await withBuffer(config, async (b) => bufferStats(b, SYNC_DISABLED, config.bufferMaxBytes, await lostOf(config))));
  },
};

export const bufferLsCommand: Command = {
  summary: 'list buffered transactions, oldest first (--state pending|in_flight|blocked|failed|synced|discarded)',
  usage: 'opsdb buffer ls [--state S] [--limit N] [--after SEQ] [--json]',
  options: { state: { type: 'string' }, limit: { type: 'string' }, after: { type: 'string' }, json: { type: 'boolean' } },
  async run({ config, options }) {
    const state = options.state as TxState | undefined;
    if (state && !TX_STATES.includes(state)) throw new UsageError(`--state must be one of ${TX_STATES.join(', ')}`);
    const limit = Number(options.limit ?? 50);
    const after = Number(options.after ?? 0);
    if (!Number.isInteger(limit) || limit < 1 || !Number.isInteger(after) || after < 0) throw new UsageError('--limit and --after take whole numbers');
    const rows = await withBuffer(config, (b) => b.list({ state, after_seq: after, limit }));
    if (options.json) return json(rows.map(transactionState));
    for (const t of rows) {
      const err = t.last_error ? `  ${t.last_error.code}: ${t.last_error.message}` : '';
      console.log(`${String(t.seq).padStart(8)}  ${t.transaction_id}  ${t.state.padEnd(9)}  tries=${t.attempts}  ${t.endpoint}${err}`);
    }
    if (rows.length === 0) console.error('no transactions');
  },
};

export const bufferShowCommand: Command = {
  positionals: true,
  summary: 'one transaction in full: state, attempts, last error, steps (steps null once synced and compacted)',
  usage: 'opsdb buffer show TRANSACTION_ID',
  async run({ config, args }) {
    // Ids are lower case in the buffer; a UUID typed in upper case names the same transaction.
    const id = oneArg(args, 'transaction id').toLowerCase();
    const [t, receipt] = await withBuffer(config, async (b) => {
      const held = await b.get(id);
      return [held, held ? null : await b.receipt(id)] as const;
    });
    if (t) json({ ...transactionState(t), steps: t.steps });
    else if (receipt) json({ ...transactionState(receipt), steps: null });
    else {
      console.error(`no transaction ${id} in the buffer (nor a record of one synced and compacted in the last ${RECEIPT_DAYS} days)`);
      return 1;
    }
  },
};

/** The transaction id argument: a UUID, or a usage error (exit 2). */
function transactionIdArg(args: string[]): string {
  const id = oneArg(args, 'transaction id');
  if (!UUID_RE.test(id)) throw new UsageError(`"${id}" is not a transaction id (a UUID, as in opsdb buffer ls)`);
  return id.toLowerCase();
}

/** Why a retry or discard of `id` changed nothing: no such transaction, or one in another state. */
async function whyNot(b: TransactionBuffer, id: string): Promise<string> {
  const t = (await b.get(id)) ?? (await b.receipt(id));
  if (!t) return `no transaction ${id} in the buffer (opsdb buffer ls lists them)`;
  return `transaction ${id} is ${t.state}; only failed or blocked ones can be retried or discarded (see: opsdb buffer show ${id})`;
}

export const bufferRetryCommand: Command = {
  positionals: true,
  summary: 'send a failed transaction again, then its blocked dependents in order',
  usage: 'opsdb buffer retry TRANSACTION_ID',
  async run({ config, args }) {
    const id = transactionIdArg(args);
    const { seqs, why } = await withBuffer(config, async (b) => {
      const { released, held } = await b.retry(id, actor());
      return { seqs: released, why: held[0] ? heldReason(held[0]) : released.length ? '' : await whyNot(b, id) };
    });
    if (seqs.length === 0) {
      console.error(why);
      return 1;
    }
    console.log(`released ${seqs.length} transaction(s) for sending: seq ${seqs.join(', ')}`);
  },
};

export const bufferRetryFailedCommand: Command = {
  summary: 'send every failed and blocked transaction again (not those that need a discarded one)',
  usage: 'opsdb buffer retry-failed',
  async run({ config }) {
    const { released, held } = await withBuffer(config, (b) => b.retryAll(actor()));
    console.log(`released ${released.length} transaction(s) for sending`);
    if (held.length > 0) {
      console.log(`left ${held.length} blocked: each needs a discarded transaction, so central can never take it; discard them too`);
      for (const h of held) {
        console.log(`  seq ${h.seq}  ${h.transaction_id}  needs seq ${h.waits_on.seq} (${h.waits_on.transaction_id}), discarded`);
      }
    }
  },
};

export const bufferDiscardCommand: Command = {
  positionals: true,
  summary: 'give up on a failed or blocked transaction (kept with an audit record)',
  usage: 'opsdb buffer discard TRANSACTION_ID [--reason TEXT]   (the reason goes into the audit record)',
  options: { reason: { type: 'string' } },
  async run({ config, args, options }) {
    const id = transactionIdArg(args);
    const given = options.reason as string | undefined;
    if (given !== undefined && given.trim() === '') throw new UsageError('--reason, when given, must say something (or leave it out)');
    const reason = given?.trim() ?? NO_REASON;
    const why = await withBuffer(config, async (b) => ((await b.discard(id, actor(), reason)) ? '' : whyNot(b, id)));
    if (why) {
      console.error(why);
      return 1;
    }
    console.log(`discarded ${id}`);
  },
};

export const bufferVerifyCommand: Command = {
  summary: 'check the buffer: storage integrity and the ledger (exit 1 on any problem)',
  usage: 'opsdb buffer verify [--json]',
  options: { json: { type: 'boolean' } },
  async run({ config, options }) {
    console.error('checking storage integrity and recounting every transaction…');
    const report = await withBuffer(config, async (b, weak) => {
      const r = await b.verify();
      // Transactions the buffer lost (lost-seqs.ts): found by the daemon at start and not yet accepted, or
      // found here (a buffer restored while the daemon was stopped).
      const problems = await withLocal(config, (local) => (local ? lostProblems(local) : []));
      const behind = await withLocal(config, (local) => (local ? bufferBehind(b, local) : null));
      if (behind && !problems.length) for (const r of behind.lost) problems.push(`${describeLoss(r)}; the daemon records this at its next start`);
      // Accepted with REDIS_ALLOW_WEAK_DURABILITY=true: said, but not a problem each time.
      if (weak && config.redisAllowWeakDurability) console.error(`note: ${weak} (accepted: REDIS_ALLOW_WEAK_DURABILITY=true)`);
      else if (weak) problems.push(`${weak}; the daemon refuses new writes until it does (set "appendonly yes", "appendfsync always")`);
      return { ...r, ok: r.ok && problems.length === 0, problems: [...r.problems, ...problems] };
    });
    if (options.json) json(report);
    else {
      const s = report.stats;
      console.log(
        `accepted ${s.accepted_total} = applied ${s.applied_total} + pending ${s.pending} + in_flight ${s.in_flight}` +
          ` + blocked ${s.blocked} + failed ${s.failed} + discarded ${s.discarded}`,
      );
      for (const p of report.problems) console.log(`PROBLEM: ${p}`);
      for (const n of report.notes ?? []) console.error(`note: ${n}`);
      console.log(report.ok ? 'ok' : `${report.problems.length} problem(s)`);
    }
    return report.ok ? 0 : 1;
  },
};

function lostProblems(local: LocalStore): string[] {
  return lostSeqs(local)
    .filter((r) => !r.accepted_at)
    .map((r) => `${describeLoss(r)} (found ${r.detected_at}). Restore the buffer that belongs with this local store if there is one; else run "opsdb buffer accept-loss"`);
}

export const bufferAcceptLossCommand: Command = {
  summary: 'accept that the buffer lost acknowledged transactions (see opsdb buffer verify); /health is healthy again',
  usage: 'opsdb buffer accept-loss',
  async run({ config }) {
    if (config.siteType !== 'secondary') throw new UsageError('the buffer exists only at an edge (SITE_TYPE=secondary)');
    const accepted = await withLocal(config, (local) => (local ? acceptLostSeqs(local) : []));
    if (accepted.length === 0) {
      console.log('nothing to accept: the buffer has lost no transactions');
      return 0;
    }
    for (const r of accepted) console.log(`accepted the loss of seq ${r.from}${r.to > r.from ? `–${r.to}` : ''} (found ${r.detected_at}); the records they created still read sync_status "failed"`);
    return 0;
  },
};

export const bufferWaitEmptyCommand: Command = {
  summary: 'wait until nothing is left to send (pending and in-flight both 0); exit 1 if failed/blocked remain or on --timeout',
  usage: 'opsdb buffer wait-empty [--timeout SECONDS] [--interval MS]',
  options: { timeout: { type: 'string' }, interval: { type: 'string' } },
  async run({ config, options }) {
    const timeoutS = options.timeout === undefined ? Infinity : Number(options.timeout);
    const intervalMs = Number(options.interval ?? 500);
    if (!(timeoutS > 0) || !(intervalMs >= 10)) throw new UsageError('--timeout takes seconds (> 0), --interval milliseconds (>= 10)');
    const tty = process.stdout.isTTY === true;
    const started = Date.now();
    let lastLine = '';
    let lastPrinted = 0;
    return withBuffer(config, async (b) => {
      const first = await b.stats();
      const total = Math.max(1, first.pending + first.in_flight);
      for (;;) {
        const s = await b.stats();
        const left = s.pending + s.in_flight;
        const line = `${left} to send (${s.pending} pending, ${s.in_flight} in flight), ${s.failed} failed, ${s.blocked} blocked, ${s.applied_total} applied`;
        if (tty) {
          const done = Math.round(((total - Math.min(left, total)) / total) * 30);
          process.stdout.write(`\r[${'#'.repeat(done)}${'.'.repeat(30 - done)}] ${line}\x1b[K`);
        } else if (line !== lastLine && Date.now() - lastPrinted >= 5000) {
          console.log(line);
          lastPrinted = Date.now();
        }
        lastLine = line;
        if (left === 0) {
          if (tty) process.stdout.write('\n');
          if (s.failed + s.blocked > 0) {
            const look = [s.failed ? 'opsdb buffer ls --state failed' : '', s.blocked ? 'opsdb buffer ls --state blocked' : ''].filter(Boolean).join(', ');
            console.log(`drained, but ${s.failed} failed and ${s.blocked} blocked transaction(s) need an operator: ${look}`);
            return 1;
          }
          console.log('empty: everything accepted has been applied at central');
          return 0;
        }
        if (Date.now() - started > timeoutS * 1000) {
          if (tty) process.stdout.write('\n');
          console.log(`timed out after ${timeoutS} s: ${line}`);
          return 1;
        }
        await new Promise((r) => setTimeout(r, intervalMs));
      }
    });
  },
};

export const bufferAuditCommand: Command = {
  summary: 'operator actions on the buffer (retries, discards with their reasons), newest first',
  usage: 'opsdb buffer audit [--limit N] [--json]',
  options: { limit: { type: 'string' }, json: { type: 'boolean' } },
  async run({ config, options }) {
    const limit = Number(options.limit ?? 50);
    if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit takes a whole number');
    const rows = await withBuffer(config, (b) => b.audit(limit));
    if (options.json) return json(rows);
    for (const a of rows) console.log(`${a.at}  ${a.action.padEnd(7)}  ${a.transaction_id}  by ${a.actor}${a.reason ? `: ${a.reason}` : ''}`);
    if (rows.length === 0) console.error('no operator actions recorded');
  },
};
