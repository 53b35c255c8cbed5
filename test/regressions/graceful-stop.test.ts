// Found by a review of the stop (session 12), with real edge processes under write load:
// * SIGTERM under load: the stop went on serving new requests on open keep-alive connections for its
//   whole 5 s grace, then cut every connection. Clients got bare resets, often for writes that had been
//   stored, with no transaction_id to look up: a client sending again made a second observation.
// * SIGHUP killed the daemon at once (Node's default), with no stop and no log line; systemd does not
//   restart a unit a SIGHUP ended.
// * A Redis that stops answering made each step of the stop wait out its own 5 s timeout, one after the
//   other: 28.8 s, against the unit's TimeoutStopSec=30; and the writes waiting on it were cut off.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { centralDatabase, startScenario, startEdgeProcess, killAllProcesses, type CentralDatabase, type Scenario } from '../support/processes.js';
import { startRedisServer, tempDir } from '../support/services.js';

let db: CentralDatabase;
before(async () => {
  db = await centralDatabase('graceful-stop');
});
after(async () => {
  await killAllProcesses();
  await db.drop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Answer {
  status?: number;
  body?: any;
  err?: string;
}

let made = 0;
function post(agent: http.Agent, base: string, token: string): Promise<Answer> {
  const n = ++made;
  const pkg = `stop-${process.pid}-${n}`;
  const data = Buffer.from(JSON.stringify({
    obs_data: { obs_unit_id: 1, start_time: new Date(Date.UTC(2025, 0, 1) + n * 1000).toISOString(), package_name: pkg, instrument_module_configuration_id: 1 },
    raw_files: [1, 2, 3].map((i) => ({ name: `${pkg}_${i}.fits`, path: `/data/${pkg}_${i}.fits`, size: 1000, checksum: `sha:${n}-${i}`, file_type: 'fits' })),
  }));
  return new Promise((resolve) => {
    const u = new URL('/api/demo/create-observation', base);
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': data.length },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(Buffer.concat(chunks).toString()) }));
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ err: e.code ?? e.message }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ err: e.code ?? e.message }));
    req.end(data);
  });
}

/** `clients` writers on keep-alive connections, each writing until the daemon refuses its connection. */
function writers(base: string, token: string, clients: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const answers: Answer[] = [];
  const one = async () => {
    for (;;) {
      const a = await post(agent, base, token);
      answers.push(a);
      if (a.err === 'ECONNREFUSED') return;
      if (a.err) await sleep(50);
    }
  };
  const done = Promise.all(Array.from({ length: clients }, one)).then(() => agent.destroy());
  return { answers, done };
}

function tally(answers: Answer[]): Record<string, number> {
  const t: Record<string, number> = {};
  for (const a of answers) {
    const k = a.err ? `err:${a.err}` : String(a.status);
    t[k] = (t[k] ?? 0) + 1;
  }
  return t;
}

/** Every 201 is known to the edge running now. */
async function assertAllKept(s: Scenario, answers: Answer[]): Promise<void> {
  const ids = answers.filter((a) => a.status === 201).map((a) => a.body.transaction_id as string);
  assert.ok(ids.length > 50, `the load wrote: ${ids.length} answered 201`);
  const missing: string[] = [];
  for (let i = 0; i < ids.length; i += 16) {
    await Promise.all(ids.slice(i, i + 16).map(async (id) => {
      const r = await fetch(`${s.edge.url}/api/transactions/${id}`, { headers: { authorization: `Bearer ${s.dir.adminToken}` } });
      if (r.status !== 200) missing.push(`${id}: ${r.status}`);
    }));
  }
  assert.deepEqual(missing, [], 'every write answered 201 is kept');
}

describe('stopping the edge while it is busy', { concurrency: 1 }, () => {
  it('SIGTERM under load: every request is answered (201, or 503 "stopping") or refused a connection, never reset; exit 0', { timeout: 120_000 }, async () => {
    const s = await startScenario(db, 'stop-load');
    try {
      const load = writers(s.edge.url, s.dir.adminToken, 32);
      await sleep(1500);
      const first = s.edge;
      const at = performance.now();
      first.child.kill('SIGTERM');
      assert.equal(await first.exited, 0, 'a clean exit');
      const stopMs = performance.now() - at;
      await load.done;
      const t = tally(load.answers);
      // Without the fix: ECONNRESET for every client, at the end of a 5 s grace spent taking new writes.
      assert.deepEqual(Object.keys(t).sort(), ['201', '503', 'err:ECONNREFUSED'].filter((k) => k in t).sort(), JSON.stringify(t));
      assert.equal(t['err:ECONNREFUSED'], 32, `each client is refused a connection once the daemon is gone: ${JSON.stringify(t)}`);
      for (const a of load.answers.filter((x) => x.status === 503)) {
        assert.equal(a.body.error.code, 'service_unavailable');
        assert.match(a.body.error.message, /stopping .*nothing was stored/);
      }
      assert.ok(stopMs < 4000, `no request held the stop to its 5 s grace: ${Math.round(stopMs)} ms`);
      const refusedLine = first.lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'requests that came in while stopping were answered 503');
      assert.equal(refusedLine?.refused ?? 0, t['503'] ?? 0, 'the log counts the 503s');
      s.edge = await startEdgeProcess(s.env);
      await assertAllKept(s, load.answers);
      // 503 "nothing was stored" is true: the edge holds exactly the writes answered 201.
      const accepted = (await s.stats()).accepted_total;
      assert.equal(accepted, t['201'], 'nothing stored beyond what was answered 201');
    } finally {
      await s.stop();
    }
  });

  it('SIGHUP is logged and ignored: the daemon keeps serving, and SIGTERM then stops it cleanly', { timeout: 60_000 }, async () => {
    const s = await startScenario(db, 'stop-hup');
    try {
      s.edge.child.kill('SIGHUP');
      await sleep(500);
      assert.equal(s.edge.child.exitCode, null, 'still running');
      assert.equal(s.edge.child.signalCode, null, 'not killed by the signal');
      assert.ok(s.edge.lines.some((l) => /"msg":"SIGHUP ignored/.test(l)), 'the SIGHUP is logged');
      assert.equal((await fetch(`${s.edge.url}/health`)).status, 200);
      s.edge.child.kill('SIGTERM');
      assert.equal(await s.edge.exited, 0);
    } finally {
      await s.stop();
    }
  });

  it('a Redis that stops answering: writes waiting on it get a 503 naming their transaction, and the stop ends by its deadline', { timeout: 120_000 }, async () => {
    const dir = await tempDir('stop-redis');
    const redis = await startRedisServer(dir.path);
    const s = await startScenario(db, 'stop-redis', { edgeEnv: { BUFFER_BACKEND: 'redis', REDIS_URL: redis.url } });
    let frozen = false;
    try {
      const load = writers(s.edge.url, s.dir.adminToken, 16);
      await sleep(1500);
      process.kill(redis.pid, 'SIGSTOP');
      frozen = true;
      await sleep(300);
      const first = s.edge;
      const at = performance.now();
      first.child.kill('SIGTERM');
      const code = await first.exited;
      const stopMs = performance.now() - at;
      process.kill(redis.pid, 'SIGCONT');
      frozen = false;
      await load.done;
      // Without the deadline: ≈ 29 s, each step waiting out its own 5 s timeout after the other.
      assert.equal(code, 1, 'a stop that could not finish says so');
      assert.ok(stopMs < 25_000, `the stop ends by its 20 s deadline: ${Math.round(stopMs)} ms`);
      assert.ok(first.lines.some((l) => /"level":60.*the stop did not finish in time/.test(l)), 'the deadline is logged');
      const t = tally(load.answers);
      assert.equal(t['err:ECONNRESET'], undefined, `no write was cut off without an answer: ${JSON.stringify(t)}`);
      const unknown = load.answers.filter((a) => a.status === 503 && /may or may not have been kept/.test(a.body.error.message));
      assert.ok(unknown.length > 0, `writes caught mid-append are told so: ${JSON.stringify(t)}`);
      for (const a of unknown) assert.match(a.body.error.details.transaction_id, /^[0-9a-f-]{36}$/);
      s.edge = await startEdgeProcess(s.env);
      await assertAllKept(s, load.answers);
    } finally {
      if (frozen) process.kill(redis.pid, 'SIGCONT');
      await s.stop();
      await redis.kill();
      await dir.cleanup();
    }
  });
});
