/**
 * An HTTP proxy to central that answers 503 (in central's error shape) to the change feed while
 * `blocked`, and passes everything else: pushes go through, pulls do not. For the cases where an edge
 * syncs its batches but its replica lags (a drain pulls rarely).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FeedBlocker {
  blocked: boolean;
  url: string;
  close(): Promise<void>;
}

export async function feedBlocker(target: string): Promise<FeedBlocker> {
  const t = new URL(target);
  const server = http.createServer((req, res) => {
    if (state.blocked && req.url?.startsWith('/api/sync/changes')) {
      req.resume();
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'service_unavailable', message: 'the test holds the feed', details: null } }));
      return;
    }
    const up = http.request({ host: t.hostname, port: t.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const state: FeedBlocker = {
    blocked: false,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
  return state;
}
