/**
 * A benchmark baseline: a bare `node:http` server answering every GET with one fixed body read from a file, with
 * the content type given, a content length, an entity tag and a cache header, as the public-key routes answer.
 * Prints `{"port":N}` once listening.
 *
 * Usage: node .bench/dist/scripts/lib/bare-body-server.js <body-file> <content-type> (compiled by bench-keys.ts)
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

const [file = '', contentType = 'application/json'] = process.argv.slice(2);
const body = readFileSync(file);
const headers = {
  'content-type': contentType,
  'content-length': String(body.length),
  etag: '"bare-baseline-0000000000000000000000000000000"',
  'cache-control': 'public, max-age=300',
};
const server = createServer((_req, res) => {
  res.writeHead(200, headers).end(body);
});
server.listen(0, '127.0.0.1', () =>
  console.log(JSON.stringify({ port: (server.address() as { port: number }).port })),
);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
