import net from 'node:net';

/** Below the kernel's ephemeral range (32768–60999 by default), where outgoing connections take their local ports. */
const LOW = 20_000;
const HIGH = 32_000;

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago. It is drawn below the
 * ephemeral range, so a server stopped and started again on it (Redis that
 * "goes away", a link that refuses) does not find it taken by some parallel
 * test's outgoing connection. Another test may still pick the same port before
 * the caller binds it, so servers started on it should retry on failure.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 1; attempt <= 200; attempt++) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW));
    if (await bindable(port)) return port;
  }
  throw new Error(`freePort: no free port found between ${LOW} and ${HIGH}`);
}
