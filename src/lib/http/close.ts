import type { Server } from 'node:http';

/** How long requests still open at a stop get to finish before their connections are cut. */
export const STOP_GRACE_MS = 5000;

/**
 * Stops taking connections and resolves once the open ones are done: idle
 * keep-alive connections at once, requests in progress within `graceMs`
 * (a client that sends its body slowly, or never, cannot hold a stop up).
 */
export function closeServer(server: Server, graceMs = STOP_GRACE_MS): Promise<void> {
  return new Promise<void>((resolve) => {
    const cut = setTimeout(() => server.closeAllConnections(), graceMs);
    server.close(() => {
      clearTimeout(cut);
      resolve();
    });
    server.closeIdleConnections();
  });
}
