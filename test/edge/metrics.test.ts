import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCentral, type TestCentral } from '../support/central.js';
import { startTestEdge, type TestEdge } from '../support/edge.js';
import { freePort } from '../support/ports.js';
import { until } from '../support/daemon.js';

/** Parses Prometheus text: `name{labels}` → value, plus each family's TYPE and HELP. */
function parse(text: string) {
  const values = new Map<string, number>();
  const types = new Map<string, string>();
  const helps = new Map<string, string>();
  for (const line of text.split('\n')) {
    let m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (m) types.set(m[1]!, m[2]!);
    m = /^# HELP (\S+) (.+)$/.exec(line);
    if (m) helps.set(m[1]!, m[2]!);
    m = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) values.set(m[1]!, Number(m[2]));
  }
  return { values, types, helps };
}


describe('GET /metrics', () => {
  let central: TestCentral;
  let edge: TestEdge;
  before(async () => {
    central = await startTestCentral('metrics');
    const token = (await central.admin.post('/api/sites/', { body: { name: 'metrics' } })).body.token;
    edge = await startTestEdge('metrics', {
      overrides: { SITE_NAME: 'metrics', CENTRAL_URL: central.url, SITE_TOKEN: token, SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 100 },
    });
  });
  after(async () => {
    await edge?.stop();
    await central?.stop();
  });

  it('needs a token unless METRICS_PUBLIC is set', async () => {
    assert.equal((await edge.anonymous.get('/metrics')).status, 401);
    const viewer = await edge.as(['viewer']);
    const r = await viewer.get('/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /text\/plain/);
  });

  it('has the contract names with types and help, agreeing with /buffer-stats after known activity', async () => {
    for (let i = 0; i < 4; i++) assert.equal((await edge.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } })).status, 201);
    await until('drained', async () => (await edge.anonymous.get('/buffer-stats')).body.applied_total >= 4);
    const { values, types, helps } = parse((await edge.admin.get('/metrics')).text);
    const expected: Record<string, string> = {
      opsdb_buffer_pending_transactions: 'gauge',
      opsdb_buffer_pending_bytes: 'gauge',
      opsdb_buffer_oldest_pending_age_seconds: 'gauge',
      opsdb_buffer_failed_transactions: 'gauge',
      opsdb_sync_applied_total: 'counter',
      opsdb_sync_errors_total: 'counter',
      opsdb_sync_last_success_timestamp_seconds: 'gauge',
      opsdb_http_request_duration_seconds: 'histogram',
    };
    for (const [name, type] of Object.entries(expected)) {
      assert.equal(types.get(name), type, `${name} is a ${type}`);
      assert.ok((helps.get(name) ?? '').length > 10, `${name} has help text`);
    }
    const s = (await edge.anonymous.get('/buffer-stats')).body;
    assert.equal(values.get('opsdb_sync_applied_total'), s.applied_total);
    assert.equal(values.get('opsdb_buffer_pending_transactions'), s.pending_transactions);
    assert.equal(values.get('opsdb_buffer_failed_transactions'), s.failed_transactions);
    assert.equal(values.get('opsdb_buffer_accepted_total'), s.accepted_total);
    const last = values.get('opsdb_sync_last_success_timestamp_seconds')!;
    assert.ok(Math.abs(last - Date.now() / 1000) < 30, 'last success is recent');
    const post = [...values.keys()].find((k) => k.startsWith('opsdb_http_request_duration_seconds_count{') && k.includes('route="/executed_obs_units/start"') && k.includes('status="201"'));
    assert.ok(post, 'request durations are labelled by route template and status');
    assert.equal(values.get(post!), 4);
  });

  it('opsdb_sync_applied_total is the ledger: after a restart it does not start again at 0', async () => {
    const applied = (await edge.anonymous.get('/buffer-stats')).body.applied_total as number;
    assert.ok(applied > 0, 'something was applied before the restart');
    await edge.stop();
    edge = await startTestEdge('metrics', {
      dataDir: edge.dataDir, seed: false,
      overrides: { SITE_NAME: 'metrics', CENTRAL_URL: central.url, SITE_TOKEN: edge.config.siteToken!, SYNC_INTERVAL_MS: 50, RETRY_BASE_MS: 20, RETRY_MAX_MS: 100 },
    });
    const { values } = parse((await edge.admin.get('/metrics')).text);
    assert.equal(values.get('opsdb_sync_applied_total'), applied);
    assert.equal((await edge.anonymous.get('/buffer-stats')).body.applied_total, applied);
  });

  it('counts sync errors by kind and shows a pending backlog when central is unreachable', async () => {
    const dead = await freePort();
    const lone = await startTestEdge('metrics-down', {
      overrides: { CENTRAL_URL: `http://127.0.0.1:${dead}`, SITE_TOKEN: 'ops_api_token_' + 'x'.repeat(43), RETRY_BASE_MS: 10, RETRY_MAX_MS: 50, SYNC_INTERVAL_MS: 20, METRICS_PUBLIC: true },
    });
    try {
      await lone.admin.post('/executed_obs_units/start', { body: { obs_unit_id: 1 } });
      await until('network errors counted', async () => {
        const { values } = parse((await lone.anonymous.get('/metrics')).text);
        return (values.get('opsdb_sync_errors_total{kind="network"}') ?? 0) >= 2;
      });
      const { values } = parse((await lone.anonymous.get('/metrics')).text);
      // Between attempts it is pending; during one, in flight.
      assert.equal(values.get('opsdb_buffer_pending_transactions')! + values.get('opsdb_buffer_in_flight_transactions')!, 1);
      assert.ok(values.get('opsdb_buffer_pending_bytes')! > 0);
      assert.equal(values.get('opsdb_sync_last_success_timestamp_seconds'), 0);
      const s = (await lone.anonymous.get('/buffer-stats')).body;
      assert.equal(s.central_reachable, false);
      assert.ok(s.consecutive_failures >= 2);
      assert.equal(s.last_error.code, 'network');
      assert.equal((await lone.anonymous.get('/health')).body.status, 'degraded');
    } finally {
      await lone.stop();
    }
  });

  it('central counts what it applied per site', async () => {
    const { values } = parse((await central.admin.get('/metrics')).text);
    assert.ok((values.get('opsdb_central_sync_transactions_total{site="metrics",result="applied"}') ?? 0) >= 4);
  });
});
