import net from 'node:net';

/**
 * A TCP port on 127.0.0.1 that was free a moment ago (listen on port 0, read
 * the port the kernel picked, close). Another process may still grab it before
 * the caller binds it, so servers started on it should retry on failure.
 */
export async function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('freePort: unexpected server address'));
        return;
      }
      srv.close((err) => (err ? reject(err) : resolve(addr.port)));
    });
  });
}
