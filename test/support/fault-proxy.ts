/**
 * A TCP proxy for fault injection between an edge and central. It listens on
 * 127.0.0.1 (a free port) and forwards to an upstream port that can be
 * switched at runtime, as can its failure mode:
 *
 *  - `pass`           forward both ways
 *  - `refuse`         the listener is closed: connects are refused (central down)
 *  - `reset`          accept, then reset the connection at once
 *  - `blackhole`      accept and read, never forward, never answer (a dead link)
 *  - `{ delay: ms }`  forward both ways, each chunk `ms` late (order kept)
 *  - `{ rate: B }`    a slow uplink: the client's bytes reach upstream at B bytes/s, with backpressure
 *                     (the client's socket is paused while 64 KiB wait), answers at full speed
 *  - `{ downRate: B }` a slow downlink: answers reach the client at B bytes/s, with backpressure
 *                     (central's socket is paused while 64 KiB wait), requests at full speed
 *  - `stall-body`     forward the request; of each connection's first answer forward its head and
 *                     the first byte of its body, then nothing more (the connection stays open)
 *  - `reset-mid-body` forward the request's headers and half its body (half the
 *                     head for a request without body), then reset both sides
 *  - `drop-response`  forward the whole request; when central starts answering,
 *                     reset the client and close upstream: central did the work,
 *                     the edge never hears of it
 *  - `{ respond }`    answer every request itself, never forwarding (a middlebox:
 *                     captive portal, gateway error page)
 *
 * Every connection follows the mode it was accepted in; a mode or target change
 * destroys all open connections (keep-alive sockets included), so what comes
 * next is opened under the new rules. The proxy parses the HTTP/1.1 requests
 * it sees (Content-Length and chunked bodies) to count them and, on request,
 * keep their bodies.
 */
import net from 'node:net';

export interface CannedResponse {
  status: number;
  body: string;
  headers?: Record<string, string>;
}

export type FaultMode =
  | 'pass' | 'refuse' | 'reset' | 'blackhole' | 'reset-mid-body' | 'drop-response' | 'stall-body'
  | { delay: number } | { rate: number } | { downRate: number } | { respond: CannedResponse };

export const delay = (ms: number): FaultMode => ({ delay: ms });

export interface SeenRequest {
  method: string;
  path: string;
  /** The mode the connection carrying it was accepted in. */
  mode: string;
  /** The whole request arrived at the proxy (not that it reached central). */
  complete: boolean;
  /** Only when `captureBodies` is on. */
  body?: string;
}

const modeName = (m: FaultMode) =>
  typeof m === 'string' ? m : 'delay' in m ? `delay(${m.delay})` : 'rate' in m ? `rate(${m.rate})` : 'downRate' in m ? `downRate(${m.downRate})` : `respond(${m.respond.status})`;

const STATUS_TEXT: Record<number, string> = { 200: 'OK', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' };

interface Parsed {
  method: string;
  path: string;
  /** Offsets in the connection's client→proxy byte stream. */
  start: number;
  headEnd: number;
  end: number;
  chunks: Buffer[];
}

/** Incremental HTTP/1.1 request framing: enough to count requests and find their bodies. */
class RequestParser {
  private buf: Buffer = Buffer.alloc(0);
  private offset = 0; // stream offset of buf[0]
  private state: 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailer' = 'head';
  private remaining = 0;
  private cur: Parsed | null = null;

  constructor(
    private readonly keepBody: boolean,
    private readonly onHead: (r: Parsed) => void,
    private readonly onDone: (r: Parsed) => void,
  ) {}

  private take(n: number, body: boolean): void {
    if (body && this.keepBody) this.cur!.chunks.push(Buffer.from(this.buf.subarray(0, n)));
    this.buf = this.buf.subarray(n);
    this.offset += n;
  }

  private finish(): void {
    const r = this.cur!;
    r.end = this.offset;
    this.cur = null;
    this.state = 'head';
    this.onDone(r);
  }

  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      if (this.state === 'head') {
        const i = this.buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        const head = this.buf.subarray(0, i).toString('latin1');
        const [line = '', ...lines] = head.split('\r\n');
        const [method = '?', path = '?'] = line.split(' ');
        const headers = new Map(lines.map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
        this.cur = { method, path, start: this.offset, headEnd: this.offset + i + 4, end: -1, chunks: [] };
        this.take(i + 4, false);
        this.onHead(this.cur);
        if (/chunked/i.test(headers.get('transfer-encoding') ?? '')) this.state = 'chunk-size';
        else {
          this.remaining = Number(headers.get('content-length') ?? 0) || 0;
          if (this.remaining === 0) this.finish();
          else this.state = 'body';
        }
      } else if (this.state === 'body' || this.state === 'chunk-data') {
        if (this.buf.length === 0) return;
        const n = Math.min(this.remaining, this.buf.length);
        this.take(n, true);
        this.remaining -= n;
        if (this.remaining > 0) return;
        if (this.state === 'body') this.finish();
        else this.state = 'chunk-crlf';
      } else if (this.state === 'chunk-crlf') {
        if (this.buf.length < 2) return;
        this.take(2, false);
        this.state = 'chunk-size';
      } else {
        const i = this.buf.indexOf('\r\n');
        if (i < 0) return;
        const line = this.buf.subarray(0, i).toString('latin1');
        this.take(i + 2, false);
        if (this.state === 'trailer') {
          if (line === '') this.finish();
        } else {
          const size = Number.parseInt(line, 16);
          if (size === 0 || !Number.isFinite(size)) this.state = 'trailer';
          else {
            this.remaining = size;
            this.state = 'chunk-data';
          }
        }
      }
    }
  }
}

/** Writes chunks to a socket `ms` after they arrived, in arrival order. */
function delayedWriter(to: net.Socket, ms: number): (chunk: Buffer) => void {
  const queue: { at: number; chunk: Buffer }[] = [];
  let timer: NodeJS.Timeout | null = null;
  const pump = () => {
    timer = null;
    while (queue.length && queue[0]!.at <= Date.now()) {
      const { chunk } = queue.shift()!;
      if (!to.destroyed) to.write(chunk);
    }
    if (queue.length) timer = setTimeout(pump, Math.max(1, queue[0]!.at - Date.now()));
  };
  to.once('close', () => {
    if (timer) clearTimeout(timer);
    queue.length = 0;
  });
  return (chunk) => {
    queue.push({ at: Date.now() + ms, chunk });
    if (!timer) timer = setTimeout(pump, ms);
  };
}

/** Writes what `from` sends to `to` at `rate` bytes/s, pausing `from` while more than 64 KiB wait. */
function throttledWriter(from: net.Socket, to: net.Socket, rate: number): (chunk: Buffer) => void {
  const TICK_MS = 20;
  const perTick = Math.max(1, Math.floor((rate * TICK_MS) / 1000));
  const queue: Buffer[] = [];
  let queued = 0;
  let timer: NodeJS.Timeout | null = null;
  const pump = () => {
    timer = null;
    for (let budget = perTick; budget > 0 && queue.length; ) {
      const c = queue[0]!;
      const part = c.length <= budget ? c : c.subarray(0, budget);
      if (part === c) queue.shift();
      else queue[0] = c.subarray(budget);
      budget -= part.length;
      queued -= part.length;
      if (!to.destroyed) to.write(part);
    }
    if (queued < 64 * 1024 && from.isPaused()) from.resume();
    if (queue.length) timer = setTimeout(pump, TICK_MS);
  };
  to.once('close', () => {
    if (timer) clearTimeout(timer);
    queue.length = 0;
  });
  return (chunk) => {
    queue.push(chunk);
    queued += chunk.length;
    if (queued > 64 * 1024) from.pause();
    if (!timer) timer = setTimeout(pump, TICK_MS);
  };
}

/** Passes an answer's head and the first byte of its body to `write`, then swallows everything after. */
function stallAfterFirstByte(write: (chunk: Buffer) => void): (chunk: Buffer) => void {
  let seen = Buffer.alloc(0);
  let done = false;
  return (chunk) => {
    if (done) return;
    seen = Buffer.concat([seen, chunk]);
    const head = seen.indexOf('\r\n\r\n');
    if (head < 0 || seen.length < head + 5) return;
    done = true;
    write(seen.subarray(0, head + 5));
  };
}

const hardClose = (s: net.Socket) => {
  if (s.destroyed) return;
  if (typeof s.resetAndDestroy === 'function' && !s.connecting) s.resetAndDestroy();
  else s.destroy();
};

export class FaultProxy {
  /** Connections accepted (refused connects are not seen). */
  connections = 0;
  /** Requests whose head arrived. */
  requests = 0;
  /** Requests that drop-response forwarded and then cut the answer of. */
  droppedResponses = 0;
  /** Requests reset-mid-body cut short. */
  cutRequests = 0;
  /** Requests answered by the proxy itself (`respond`). */
  answered = 0;
  /** Every request seen, in order (bodies when captureBodies). */
  readonly seen: SeenRequest[] = [];
  captureBodies = false;

  private mode: FaultMode = 'pass';
  private readonly sockets = new Set<net.Socket>();
  private listening = false;
  private closed = false;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    private target: number,
  ) {}

  static async start(targetPort: number, mode: FaultMode = 'pass'): Promise<FaultProxy> {
    const server = net.createServer({ noDelay: true });
    // A port below the kernel's ephemeral range (32768–60999 by default): in `refuse` mode the proxy closes
    // its port, and a port from that range is soon taken by some parallel test's outgoing connection,
    // so the proxy could not open again.
    for (let attempt = 1; ; attempt++) {
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(20_000 + Math.floor(Math.random() * 12_000), '127.0.0.1', () => {
            server.off('error', reject);
            resolve();
          });
        });
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 100) throw err;
      }
    }
    const proxy = new FaultProxy(server, (server.address() as net.AddressInfo).port, targetPort);
    proxy.listening = true;
    server.on('connection', (s) => proxy.accept(s));
    server.on('error', () => {});
    await proxy.setMode(mode);
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get currentMode(): string {
    return modeName(this.mode);
  }

  get targetPort(): number {
    return this.target;
  }

  /** Requests seen whose path starts with `prefix` (and method, when given). */
  count(prefix: string, method?: string): number {
    return this.seen.filter((r) => r.path.startsWith(prefix) && (!method || r.method === method)).length;
  }

  /** Changes the mode; open connections are destroyed so keep-alive sockets follow it. */
  async setMode(mode: FaultMode): Promise<void> {
    if (this.closed) throw new Error('proxy is closed');
    this.mode = mode;
    this.dropAll();
    if (mode === 'refuse' && this.listening) {
      this.listening = false;
      await new Promise<void>((resolve) => this.server.close(() => resolve()));
    } else if (mode !== 'refuse' && !this.listening) {
      await this.relisten();
    }
  }

  /** Points the proxy at another upstream port; open connections are destroyed. */
  setTarget(port: number): void {
    this.target = port;
    this.dropAll();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.dropAll();
    if (this.listening) {
      this.listening = false;
      await new Promise<void>((resolve) => this.server.close(() => resolve()));
    }
  }

  private async relisten(): Promise<void> {
    // Same port again: the edge's CENTRAL_URL must keep working. Another process may have taken it meanwhile.
    for (let attempt = 1; ; attempt++) {
      try {
        await new Promise<void>((resolve, reject) => {
          const onError = (err: Error) => reject(err);
          this.server.once('error', onError);
          this.server.listen(this.port, '127.0.0.1', () => {
            this.server.off('error', onError);
            resolve();
          });
        });
        this.listening = true;
        return;
      } catch (err) {
        if (attempt >= 50) throw new Error(`proxy could not listen on ${this.port} again: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  private dropAll(): void {
    for (const s of this.sockets) hardClose(s);
    this.sockets.clear();
  }

  private track(s: net.Socket): void {
    this.sockets.add(s);
    s.on('error', () => {});
    s.once('close', () => this.sockets.delete(s));
  }

  private accept(client: net.Socket): void {
    this.connections += 1;
    const mode = this.mode;
    const name = modeName(mode);
    this.track(client);
    if (this.closed || mode === 'refuse' || mode === 'reset') {
      hardClose(client);
      return;
    }
    const records = new Map<Parsed, SeenRequest>();
    const onHead = (r: Parsed) => {
      this.requests += 1;
      const rec: SeenRequest = { method: r.method, path: r.path, mode: name, complete: false };
      records.set(r, rec);
      this.seen.push(rec);
    };
    const onDone = (r: Parsed) => {
      const rec = records.get(r)!;
      records.delete(r);
      rec.complete = true;
      if (this.captureBodies) rec.body = Buffer.concat(r.chunks).toString('utf8');
      if (mode === 'reset-mid-body') cut(r);
    };
    if (typeof mode === 'object' && 'respond' in mode) {
      const { status, body, headers = {} } = mode.respond;
      const payload = Buffer.from(body);
      const head = [
        `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Status'}`,
        ...Object.entries({ 'content-type': 'text/html', ...headers }).map(([k, v]) => `${k}: ${v}`),
        `content-length: ${payload.length}`,
        'connection: keep-alive',
      ].join('\r\n');
      const answer = Buffer.concat([Buffer.from(`${head}\r\n\r\n`), payload]);
      const parser = new RequestParser(this.captureBodies, onHead, (r) => {
        onDone(r);
        this.answered += 1;
        if (!client.destroyed) client.write(answer);
      });
      client.on('data', (chunk: Buffer) => parser.push(chunk));
      return;
    }
    const parser = new RequestParser(this.captureBodies, onHead, onDone);

    if (mode === 'blackhole') {
      client.on('data', (chunk: Buffer) => parser.push(chunk));
      return;
    }

    const upstream = net.connect({ host: '127.0.0.1', port: this.target, noDelay: true });
    this.track(upstream);
    upstream.once('close', () => hardClose(client));
    client.once('close', () => upstream.destroy());

    // reset-mid-body: hold the bytes until the first request is whole, forward part of it, then reset both sides.
    const held: Buffer[] = [];
    const cut = (r: Parsed) => {
      const all = Buffer.concat(held);
      const bodyBytes = r.end - r.headEnd;
      const upTo = bodyBytes > 0 ? r.headEnd + Math.floor(bodyBytes / 2) : r.start + Math.floor((r.headEnd - r.start) / 2);
      this.cutRequests += 1;
      upstream.write(all.subarray(0, upTo), () => {
        setTimeout(() => {
          hardClose(client);
          upstream.destroy();
        }, 20);
      });
    };

    const lag = typeof mode === 'object' && 'delay' in mode ? mode.delay : 0;
    const rate = typeof mode === 'object' && 'rate' in mode ? mode.rate : 0;
    const toUpstream = rate ? throttledWriter(client, upstream, rate) : lag ? delayedWriter(upstream, lag) : (chunk: Buffer) => upstream.write(chunk);
    const downRate = typeof mode === 'object' && 'downRate' in mode ? mode.downRate : 0;
    const toClient = downRate ? throttledWriter(upstream, client, downRate) : lag ? delayedWriter(client, lag) : (chunk: Buffer) => client.write(chunk);
    const stall = mode === 'stall-body' ? stallAfterFirstByte(toClient) : null;

    client.on('data', (chunk: Buffer) => {
      if (mode === 'reset-mid-body') {
        held.push(chunk);
        parser.push(chunk);
        return;
      }
      parser.push(chunk);
      toUpstream(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (mode === 'drop-response') {
        this.droppedResponses += 1;
        hardClose(client);
        upstream.destroy();
        return;
      }
      if (mode === 'reset-mid-body') return;
      if (stall) stall(chunk);
      else toClient(chunk);
    });
    client.on('end', () => {
      if (mode !== 'reset-mid-body') upstream.end();
    });
    upstream.on('end', () => {
      if (stall) return; // the stalled answer never ends
      if (lag) setTimeout(() => client.end(), lag);
      else client.end();
    });
  }
}
