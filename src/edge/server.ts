import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Config } from '../lib/config.js';
import type { Logger } from '../lib/logger.js';
import { createMetrics } from '../lib/metrics.js';
import { registerEdgeMetrics } from './metrics.js';
import { createHttpApp, type HttpAppOptions } from '../lib/http/app.js';
import { isBufferUnavailable, type TransactionBuffer } from './buffer/buffer.js';
import { UnavailableError } from '../lib/errors.js';
import { openBuffer } from './buffer/open.js';
import { LocalStore, SITE_NAME_KEY, catchUp, checkSiteOfDataDir } from './local-store.js';
import { describeLoss, detectLostSeqs, lostSeqs, type LostSeqs } from './lost-seqs.js';
import { LocalAccounts } from './local-accounts.js';
import { GroupCommitter } from './committer.js';
import { EdgeBackend } from './backend.js';
import { edgeRoutes } from './routes.js';
import { SYNC_DISABLED, type SyncView } from './sync-view.js';
import { SyncEngine, type SavedSyncState } from '../sync/engine.js';
import { DiskReserve } from './disk-reserve.js';
import { httpClient } from '../sync/transport.js';
import { lockDataDir } from './data-dir-lock.js';
import { FileGuard } from './buffer/file-guard.js';
import { closeServer, createStoppableServer } from '../lib/http/close.js';
import { EDGE_ID_HEADER } from '../lib/api/sync-schemas.js';
import { uuidv7 } from '../lib/uuid.js';

/** The site token set over HTTP, and a hash of SITE_TOKEN as it was then (to tell when SITE_TOKEN changed since). */
const SITE_TOKEN_KEY = 'site_token';
const SITE_TOKEN_OVER_KEY = 'site_token_over_env';
/** What the sync engine knew of the link, kept in local.db's meta across restarts (SyncMemory). */
const SYNC_STATE_KEY = 'sync_state';

export interface RunningEdge {
  url: string;
  port: number;
  buffer: TransactionBuffer;
  local: LocalStore;
  committer: GroupCommitter;
  sync: SyncView;
  /** One line for systemd's STATUS=: the backlog and the engine's state. */
  status(): Promise<string>;
  /** Resolves if the edge can no longer store writes (its storage thread died); `opsdb serve` then exits non-zero. */
  failed: Promise<Error>;
  /** The buffer answers and the event loop runs: what the watchdog pings stand for. */
  healthy(): Promise<boolean>;
  stop(): Promise<void>;
}


/**
 * Starts the edge daemon: opens the buffer (refusing to start if it cannot
 * keep writes safe), returns in-flight work to pending, brings the local
 * view up to date, then opens the port.
 */
export async function startEdge(config: Config, log: Logger, http: Pick<HttpAppOptions, 'fastLane'> = {}): Promise<RunningEdge> {
  mkdirSync(config.dataDir, { recursive: true });
  // Before anything is opened: a second daemon would return this one's batch in flight to pending.
  const lock = lockDataDir(config.dataDir);
  // The local store first: its schema exists before the storage thread opens a second connection to it.
  const localPath = join(config.dataDir, 'local.db');
  let local: LocalStore;
  let localGuard: FileGuard;
  try {
    checkSiteOfDataDir(config.dataDir, localPath, config.siteName);
    local = new LocalStore(localPath);
    if (local.feedReadAgain) log.info('the local replica was made by a build that skipped deletes from central\'s feed: it reads the feed again from the start');
    localGuard = new FileGuard(localPath);
  } catch (err) {
    lock.release();
    throw err;
  }
  let fatal!: (err: Error) => void;
  const failed = new Promise<Error>((resolve) => (fatal = resolve));
  const opened = await openBuffer(config, {
    localPath,
    onFailure: (err) => {
      log.fatal({ err: { message: err.message } }, 'the storage thread stopped; the edge cannot store writes and must be restarted');
      fatal(err);
    },
  }, log).catch((err: unknown) => {
    local.close();
    lock.release();
    throw err;
  });
  const { buffer, redisStatus, refusing } = opened;
  let server: Server | undefined;
  let watchFiles: NodeJS.Timeout | undefined;
  try {
    const released = await buffer.releaseInFlight();
    /** What detectLostSeqs found (null: the buffer was not behind; none lost: all it lacked had reached central). */
    const logLoss = (lost: LostSeqs[] | null) => {
      if (lost === null) return;
      for (const r of lost) {
        log.error(
          { from_seq: r.from, to_seq: r.to },
          `the buffer has lost acknowledged transactions: ${describeLoss(r)}. New writes go on after seq ${r.applied ?? r.to}; ` +
            'restore the buffer that belongs with this local store if there is one, else run "opsdb buffer accept-loss"',
        );
      }
      if (lost.length === 0) {
        log.warn('the buffer was behind the local store, but every transaction it no longer has had reached central: nothing is lost');
      }
    };
    logLoss(await detectLostSeqs(buffer, local));
    const replayed = await catchUp(buffer, local);
    const stats = await buffer.stats();
    if (local.getMeta(SITE_NAME_KEY) === null) local.setMeta(SITE_NAME_KEY, config.siteName);
    log.info({ released_in_flight: released, replayed, pending: stats.pending, failed: stats.failed, backend: buffer.backend }, 'buffer opened');

    const accounts = new LocalAccounts(local.db);
    // A token set with PUT /api/sync/site-token wins over SITE_TOKEN, until SITE_TOKEN itself is changed:
    // then the newer of the two is SITE_TOKEN, and an operator who changed it and restarted expects it used.
    // A start without SITE_TOKEN (standalone, during an outage) changes nothing: there is nothing newer.
    const envTokenHash = createHash('sha256').update(config.siteToken ?? '').digest('hex');
    if (config.siteToken && local.getMeta(SITE_TOKEN_KEY) !== null) {
      const over = local.getMeta(SITE_TOKEN_OVER_KEY);
      // A token stored before this rule (no record of SITE_TOKEN then): SITE_TOKEN as it is now counts as that.
      if (over === null) local.setMeta(SITE_TOKEN_OVER_KEY, envTokenHash);
      else if (over !== envTokenHash) {
        local.deleteMeta(SITE_TOKEN_KEY);
        local.deleteMeta(SITE_TOKEN_OVER_KEY);
        log.warn('SITE_TOKEN changed since a site token was set with PUT /api/sync/site-token: SITE_TOKEN is used from now on');
      }
    }
    const stopSync = new AbortController();
    // New at each start: central tells two daemons running as one site apart by it (a restart is not a second
    // daemon). A UUIDv7: its first 48 bits are this start's time, which central compares with SENT_AT_HEADER.
    const edgeId = uuidv7();
    const engine = config.centralUrl
      ? new SyncEngine({
          site: config.siteName,
          buffer,
          client: httpClient(config.centralUrl, config.syncTimeoutMs, stopSync.signal, { [EDGE_ID_HEADER]: edgeId }),
          edgeId,
          replica: local,
          token: () => local.getMeta(SITE_TOKEN_KEY) ?? config.siteToken ?? '',
          tokenSource: () => (local.getMeta(SITE_TOKEN_KEY) ? 'the token set with PUT /api/sync/site-token, kept in local.db' : 'SITE_TOKEN'),
          log: log.child({ component: 'sync' }),
          batchSize: config.syncBatchSize,
          batchMaxBytes: config.syncBatchMaxBytes,
          pipeline: config.syncPipeline,
          keepSyncedSeconds: config.syncedRetentionHours * 3600,
          bufferMaxBytes: config.bufferMaxBytes,
          intervalMs: config.syncIntervalMs,
          retryBaseMs: config.retryBaseMs,
          retryMaxMs: config.retryMaxMs,
          memory: {
            load: () => JSON.parse(local.getMeta(SYNC_STATE_KEY) ?? 'null') as SavedSyncState | null,
            save: (s) => local.setMeta(SYNC_STATE_KEY, JSON.stringify(s)),
          },
        })
      : null;
    const sync: SyncView = engine ?? SYNC_DISABLED;
    const committer = new GroupCommitter(buffer, local, config, log, () => engine?.nudge(), async (err) => {
      logLoss(await detectLostSeqs(buffer, local, err.expected));
    });
    const backend = new EdgeBackend({
      siteName: config.siteName, buffer, local, accounts, committer, sync, bufferMaxBytes: config.bufferMaxBytes,
      minFreeDiskBytes: config.minFreeDiskBytes, redis: redisStatus, refusing, localGone: () => localGuard.problem(),
      // Central takes at most MAX_BODY_BYTES per request (the same setting there); keep 64 KiB for the envelope.
      maxTransactionBytes: Math.max(1024, config.maxBodyBytes - 64 * 1024),
    });
    // A file removed under the daemon is logged once when seen, writes or not (the buffer's check refuses them).
    // A buffer that lost what it held (Redis emptied or restarted without its data) is found the same way,
    // not only at the next write: /health and the records' sync_status say so while the edge is idle.
    const told = new Set<string>();
    let looking = false;
    const reserve = new DiskReserve(config.dataDir, config.diskReserveBytes, config.minFreeDiskBytes, log);
    await reserve.check();
    let reserving = false;
    watchFiles = setInterval(() => {
      if (!reserving) {
        reserving = true;
        void reserve.check().finally(() => (reserving = false));
      }
      if (!looking) {
        looking = true;
        void detectLostSeqs(buffer, local).then(logLoss, () => {}).finally(() => (looking = false));
      }
      const noted = [
        [buffer.backend === 'sqlite' ? refusing() : null, 'the buffer file was removed or replaced: new writes are refused'],
        [localGuard.problem(), 'the local store file was removed or replaced: a restart would lose local accounts and the site token set with PUT; writes go on'],
      ] as const;
      for (const [problem, what] of noted) {
        if (problem && !told.has(problem)) log.error({ problem }, what);
        if (problem) told.add(problem);
      }
    }, 1000);
    watchFiles.unref();
    const metrics = createMetrics();
    registerEdgeMetrics(metrics, buffer, engine);
    const app = createHttpApp({
      ...http, config, log, metrics, backend,
      mapError: (err) =>
        isBufferUnavailable(err) ? new UnavailableError('The write buffer is not answering; nothing was stored, retry later', { backend: buffer.backend }) : err,
      extraRoutes: (api) =>
        edgeRoutes(api, {
          buffer, sync, bufferMaxBytes: config.bufferMaxBytes, lost: () => lostSeqs(local),
          setSiteToken: (token) => {
            if (token === null) {
              local.deleteMeta(SITE_TOKEN_KEY);
              local.deleteMeta(SITE_TOKEN_OVER_KEY);
            } else {
              local.setMeta(SITE_TOKEN_KEY, token);
              local.setMeta(SITE_TOKEN_OVER_KEY, envTokenHash);
            }
            engine?.credentialsChanged();
          },
        }),
    });
    server = createStoppableServer(app);
    server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(config.port, config.host, () => resolve());
    });
    const port = (server.address() as AddressInfo).port;
    const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
    engine?.start();
    log.info(
      { url, site: config.siteName, site_type: 'secondary', sync: engine ? config.centralUrl : 'disabled', startup_ms: Math.round(performance.now()) },
      'edge listening',
    );
    const srv = server;
    return {
      url, port, buffer, local, committer, sync, failed,
      async status() {
        const st = await buffer.stats();
        return `${st.pending} pending, ${st.in_flight} in flight, ${st.blocked} blocked, ${st.failed} failed; sync ${sync.state()}` +
          (sync.lastError() ? ` (${sync.lastError()!.code})` : '');
      },
      async healthy() {
        await buffer.stats();
        return true;
      },
      async stop() {
        clearInterval(watchFiles);
        const { refused } = await closeServer(srv);
        if (refused) log.info({ refused }, 'requests that came in while stopping were answered 503');
        await committer.idle();
        committer.close();
        // The batch in flight gets a few seconds to be answered; after that it is abandoned (sent again later, deduplicated).
        const abandon = setTimeout(() => {
          log.warn('the sync exchange in flight was not answered within 5 s of the stop: abandoned; its transactions are sent again at the next start, and central answers "duplicate" for those it already applied');
          stopSync.abort();
        }, 5000);
        await engine?.stop();
        clearTimeout(abandon);
        accounts.flush();
        log.info({ groups: committer.groups.count, transactions: committer.groups.transactions }, 'group commit totals');
        await buffer.close();
        local.close();
        lock.release();
      },
    };
  } catch (err) {
    clearInterval(watchFiles);
    server?.close();
    await buffer.close();
    local.close();
    lock.release();
    throw err;
  }
}
