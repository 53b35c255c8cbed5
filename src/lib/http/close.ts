import { Server as NetServer, Socket } from 'node:net';
import { STATUS_CODES, createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';

/**
 * How long a request still arriving at a stop (its body not all in: a slow or stalled client) gets before
 * its connection is cut. A request whose body is in is answered, however long its storage takes: its
 * client learns what became of its write (stored, or a 503 that names it). The daemon's own stop
 * deadline (`opsdb serve`) bounds that.
 */
export const STOP_GRACE_MS = 5000;

/**
 * How long, at a stop, idle keep-alive connections are left open before they are closed. Node closes
 * them at once, and one whose client has just sent a request the server has not read yet counts as idle:
 * its client would see a reset, not knowing whether its write was kept. In this time such a request is
 * read and answered 503.
 */
export const STOP_QUIET_MS = 250;

/**
 * An answer given before the request's body was all read (a 413 from Content-Length, a 401, a 503 at a
 * stop) on a connection that then closes: how long the rest of the body is still read and dropped, and
 * how long the client may fall silent meanwhile. Closing a socket with unread bytes makes the kernel send
 * a reset, and a client that sends its whole body before it reads (Python's urllib, which also asks for
 * `Connection: close`) then got "Broken pipe" instead of the answer. nginx's `lingering_close` does this.
 */
export const LINGER_MS = 30_000;
export const LINGER_IDLE_MS = 5000;

/** What a request that arrives while the server stops is told (SPEC's one error shape). */
const STOPPING_BODY = errorJson('service_unavailable', 'This site is stopping (a restart or a shutdown); nothing was stored. Send the request again in a few seconds.');

/** On a socket: the response to its latest request. */
const CURRENT = Symbol('opsdb.currentResponse');
type Tracked = Socket & { [CURRENT]?: ServerResponse };

interface StopState {
  stopping: boolean;
  /** Requests answered 503 because they came in after the stop began. */
  refused: number;
  sockets: Set<Tracked>;
}

const states = new WeakMap<Server, StopState>();

/**
 * An HTTP server that stops gracefully with `closeServer`: from then on each
 * new request is answered 503 with `Connection: close`, and each request in
 * progress is answered with `Connection: close`. Node's `server.close()` alone
 * goes on serving new requests on keep-alive connections already open: busy
 * clients went on writing until their connections were cut, and a write
 * stored in that moment got no answer at all.
 */
export function createStoppableServer(listener: RequestListener): Server {
  const state: StopState = { stopping: false, refused: 0, sockets: new Set() };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    (req.socket as Tracked)[CURRENT] = res;
    if (!state.stopping) return listener(req, res);
    state.refused++;
    req.resume(); // the body is not read; let it flow so the answer is not held up behind it
    res.writeHead(503, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(STOPPING_BODY),
      'Retry-After': '5',
      Connection: 'close',
    });
    res.end(STOPPING_BODY);
  });
  server.on('clientError', answerClientError);
  // An Expect header other than 100-continue: Node's own 417 has no body.
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const body = errorJson('expectation_failed', `Expect: ${req.headers.expect} is not supported (only 100-continue is)`);
    res.writeHead(417, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
  // Per connection, not per request: keep-alive clients send many requests on one.
  server.on('connection', (socket: Tracked) => {
    state.sockets.add(socket);
    socket.once('close', () => state.sockets.delete(socket));
    socket.destroySoon = lingerOrDestroySoon; // how Node closes a connection once its last answer is written
  });
  states.set(server, state);
  return server;
}

/**
 * In place of `net.Socket#destroySoon` (which Node's HTTP server calls once the last answer on a
 * connection is written): if the client is still sending that request's body, the connection is closed
 * for writing only, and the rest of the body is read and dropped until it ends (then the connection is
 * closed), the client falls silent for `LINGER_IDLE_MS`, or `LINGER_MS` have passed.
 */
function lingerOrDestroySoon(this: Tracked): void {
  const req = this[CURRENT]?.req;
  if (!req || req.complete || this.destroyed || !this.readable) {
    Socket.prototype.destroySoon.call(this);
    return;
  }
  this.end(); // after the answer: the client sees it and the end of the stream, and may stop sending
  const bound = setTimeout(() => this.destroy(), LINGER_MS);
  this.setTimeout(LINGER_IDLE_MS, () => this.destroy());
  this.once('close', () => clearTimeout(bound));
  // Node's server dumps the request's body (reads it, keeps nothing); its end, or the client's, ends this.
  req.resume();
  req.once('end', () => this.destroy());
  this.once('end', () => this.destroy());
}

function errorJson(code: string, message: string): string {
  return JSON.stringify({ error: { code, message, details: null } });
}

/** What Node's HTTP parser refuses, and how: Node's own answers to these have no body at all. */
const CLIENT_ERRORS: Record<string, [number, string, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'headers_too_large', 'The request\'s headers are too large (16 KiB at most, request line included)'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'request_timeout', 'The request did not arrive in time'],
  HPE_CHUNK_EXTENSIONS_OVERFLOW: [413, 'payload_too_large', 'The request\'s chunk extensions are too large'],
};

/**
 * A request Node's parser cannot read (malformed framing, a bad method or path, headers too large) is
 * answered in the API's one error shape, JSON, and the connection closed, instead of Node's bare status line.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Tracked): void {
  // An answer half written on this connection cannot be followed by another: the connection is cut.
  const writing = socket[CURRENT]?.headersSent === true && !socket[CURRENT]!.writableEnded;
  if (err.code === 'ECONNRESET' || !socket.writable || writing) {
    socket.destroy();
    return;
  }
  const [status, code, message] = CLIENT_ERRORS[err.code ?? ''] ??
    [400, 'bad_request', `The request is not well-formed HTTP (${err.code ?? 'unreadable'}): check its framing (Content-Length, Transfer-Encoding), method and path`];
  const body = errorJson(code, message);
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

/** The request on this connection has all its body in and is not answered yet: the server is working on it. */
function answering(socket: Tracked): boolean {
  const res = socket[CURRENT];
  return !!res && !res.writableEnded && res.req.complete;
}

/**
 * Stops taking connections and resolves once the open ones are done, for a
 * server made by `createStoppableServer`: a request that arrives from now on
 * is answered 503 and its connection closed; requests in progress are
 * answered and their connections closed; idle keep-alive connections are
 * closed `STOP_QUIET_MS` later; a request still arriving after `graceMs` is
 * cut off. Resolves with how many requests were refused with 503.
 */
export async function closeServer(server: Server, graceMs = STOP_GRACE_MS): Promise<{ refused: number }> {
  const state = states.get(server);
  if (!state) throw new Error('closeServer: the server was not made by createStoppableServer');
  state.stopping = true;
  const closeAfterAnswer = () => {
    for (const socket of state.sockets) {
      const res = socket[CURRENT];
      if (res && !res.headersSent) res.setHeader('Connection', 'close');
    }
  };
  closeAfterAnswer();
  // net.Server's own close: no new connections from now on (a client sent away with a 503 that tries
  // again is refused, so it knows nothing was sent), without http's closing of idle connections at once.
  const done = new Promise<void>((resolve) => NetServer.prototype.close.call(server, () => resolve()));
  const cut = setTimeout(() => {
    for (const socket of state.sockets) if (!answering(socket)) socket.destroy();
  }, graceMs);
  await new Promise((r) => setTimeout(r, STOP_QUIET_MS));
  closeAfterAnswer();
  server.closeIdleConnections();
  await done;
  clearTimeout(cut);
  return { refused: state.refused };
}
