import { join, resolve } from 'node:path';
import { mkdirSync } from 'node:fs';
import { loadConfig } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { startEdge } from '../edge/server.js';
import { LocalStore } from '../edge/local-store.js';
import { LocalAccounts } from '../edge/local-accounts.js';
import { seedDemoReplica } from '../edge/demo-seed.js';
import type { Command } from './command.js';
import { untilSignal } from './serve.js';

export const demoCommand: Command = {
  summary: 'try it: an edge on http://localhost:8000 with demo data and demo mode on (what `npm start` runs)',
  usage: 'opsdb demo [--data-dir DIR] [--port N]',
  options: { 'data-dir': { type: 'string' }, port: { type: 'string' } },
  async run({ options }) {
    const dataDir = resolve((options['data-dir'] as string | undefined) ?? process.env.DATA_DIR ?? './data');
    const config = loadConfig({
      overrides: {
        SITE_TYPE: 'secondary', DEMO_MODE: true, DATA_DIR: dataDir, METRICS_PUBLIC: true,
        PORT: Number(options.port ?? process.env.PORT ?? 8000), LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
      },
    });
    mkdirSync(dataDir, { recursive: true });
    const local = new LocalStore(join(dataDir, 'local.db'));
    seedDemoReplica(local);
    const accounts = new LocalAccounts(local.db);
    const token = (await accounts.createDemoToken()).token;
    local.close();

    const edge = await startEdge(config, createLogger(config.logLevel));
    const url = `http://localhost:${edge.port}`;
    console.log(`ops-db-api demo: an edge daemon (SITE_TYPE=secondary) with a durable SQLite buffer in ${dataDir}

  API          ${url}            health: ${url}/health
  Swagger UI   ${url}/docs       ReDoc: ${url}/redoc
  Buffer       ${url}/buffer-stats

Admin token (demo only):
  export TOKEN=${token}

Try:
  curl ${url}/health
  curl -H "Authorization: Bearer $TOKEN" ${url}/instruments/
  curl -X POST ${url}/api/demo/create-observation -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
       -d '{"obs_data":{"obs_unit_id":1,"start_time":"2025-01-01T00:00:00Z","package_name":"test_package_001","instrument_module_configuration_id":1},"raw_files":[]}'

No central is configured, so writes stay buffered (sync_status "pending"). Ctrl-C stops; run again to resume with the same data.`);
    await untilSignal();
    await edge.stop();
  },
};
