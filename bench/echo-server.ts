// The baseline for bench:ingest: a bare koa app that echoes a JSON body, no validation, no storage.
import Koa from 'koa';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const app = new Koa();
app.use(async (ctx) => {
  const chunks: Buffer[] = [];
  for await (const c of ctx.req as AsyncIterable<Buffer>) chunks.push(c);
  ctx.status = 201;
  ctx.body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
});
const server = createServer(app.callback()).listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ msg: 'echo listening', url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
