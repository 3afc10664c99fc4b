/**
 * The baseline of the grades outage path: a bare `node:http` server that appends each POST body to a file and
 * answers only after `fdatasync`, with group commit (bodies that arrive while a sync runs share the next one).
 * The least any durable write costs on this disk. Prints `{"port":N}` once listening.
 */
import { open } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import { join } from 'node:path';

const dir = process.argv[2] ?? '.';
const fh = await open(join(dir, 'bare-fsync.log'), 'a');
let waiting: { body: Buffer; res: ServerResponse }[] = [];
let syncing = false;

async function commit(): Promise<void> {
  syncing = true;
  while (waiting.length > 0) {
    const group = waiting;
    waiting = [];
    await fh.write(Buffer.concat(group.map((g) => g.body)));
    await fh.datasync();
    for (const { body, res } of group) res.writeHead(202, { 'content-type': 'application/json' }).end(body);
  }
  syncing = false;
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.from(`${JSON.stringify(JSON.parse(Buffer.concat(chunks).toString()))}\n`);
    waiting.push({ body, res });
    if (!syncing) void commit();
  });
});
server.listen(0, '127.0.0.1', () =>
  console.log(JSON.stringify({ port: (server.address() as { port: number }).port })),
);
process.on('SIGTERM', () => server.close(() => void fh.close().then(() => process.exit(0))));
