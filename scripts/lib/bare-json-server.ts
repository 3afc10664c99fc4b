/**
 * The grades benchmark's baseline: a bare `node:http` server. GET answers a fixed JSON record; POST reads the
 * body, parses it as JSON and answers it back. Prints `{"port":N}` once listening.
 */
import { createServer } from 'node:http';

const record = JSON.stringify({
  user_id: 'bench-user',
  postpaid_limit: 1,
  spp: 2,
  shipping_fee: 3,
  return_fee: 4,
});
const server = createServer((req, res) => {
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(record);
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = JSON.parse(Buffer.concat(chunks).toString()) as unknown;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
});
server.listen(0, '127.0.0.1', () =>
  console.log(JSON.stringify({ port: (server.address() as { port: number }).port })),
);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
