import { expect } from 'chai';
import { request } from 'node:http';
import { BadRequestError, StorageError } from '../../../src/errors.js';
import { HttpServer } from '../../../src/http/server.js';
import { openSlowClient, type SlowClient } from '../../support/slow-clients.js';
import { silentLogger } from '../../../src/log.js';
import { createMetrics } from '../../../src/metrics.js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function call(port: number, method: string, path: string, body?: Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
        }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('http server', () => {
  let server: HttpServer;
  const metrics = createMetrics();
  before(async () => {
    server = new HttpServer({
      name: 'test',
      host: '127.0.0.1',
      port: 0,
      maxBodyBytes: 1024,
      log: silentLogger(),
      metrics,
      routes: [
        {
          method: 'GET',
          path: '/items/:id',
          handler: (req) => ({ status: 200, json: { id: req.params.id } }),
        },
        {
          method: 'POST',
          path: '/echo',
          handler: async (req) => ({ status: 200, body: await req.body() }),
        },
        {
          method: 'GET',
          path: '/bad',
          handler: () => {
            throw new BadRequestError('user_id is required');
          },
        },
        {
          method: 'GET',
          path: '/down',
          handler: () => {
            throw new StorageError('postgres get failed', { cause: new Error('ECONNREFUSED 10.0.0.1') });
          },
        },
        {
          method: 'GET',
          path: '/bug',
          handler: () => {
            throw new TypeError('cannot read properties of undefined (secret internals)');
          },
        },
      ],
    });
    await server.start();
  });
  after(() => server.stop());

  it('routes by path segments and decodes parameters', async () => {
    const res = await call(server.port, 'GET', '/items/a%20b');
    expect(res.status).to.equal(200);
    expect(JSON.parse(res.body)).to.deep.equal({ id: 'a b' });
  });

  it('answers 404 for an unknown path and 405 for a known path with another method', async () => {
    expect((await call(server.port, 'GET', '/nope')).status).to.equal(404);
    const res = await call(server.port, 'DELETE', '/echo');
    expect(res.status).to.equal(405);
    expect(JSON.parse(res.body)).to.deep.equal({
      error: 'method_not_allowed',
      message: 'method not allowed',
    });
  });

  it('reads a body within the limit and refuses a larger one with 413', async () => {
    expect((await call(server.port, 'POST', '/echo', Buffer.from('hello'))).body).to.equal('hello');
    const res = await call(server.port, 'POST', '/echo', Buffer.alloc(2048, 'a'));
    expect(res.status).to.equal(413);
    expect(JSON.parse(res.body)).to.deep.equal({
      error: 'payload_too_large',
      message: 'request body exceeds 1024 bytes',
    });
  });

  it('maps error codes to statuses in one place', async () => {
    const bad = await call(server.port, 'GET', '/bad');
    expect(bad.status).to.equal(400);
    expect(JSON.parse(bad.body)).to.deep.equal({ error: 'bad_request', message: 'user_id is required' });
    const down = await call(server.port, 'GET', '/down');
    expect(down.status).to.equal(503);
    expect(down.body).not.to.include('10.0.0.1');
  });

  it('never shows an unexpected error’s message or stack', async () => {
    const res = await call(server.port, 'GET', '/bug');
    expect(res.status).to.equal(500);
    expect(JSON.parse(res.body)).to.deep.equal({ error: 'internal_error', message: 'internal error' });
  });

  it('records each request in the duration histogram by route pattern', async () => {
    await call(server.port, 'GET', '/items/42');
    const text = await metrics.registry.metrics();
    expect(text).to.match(
      /http_request_duration_seconds_count\{server="test",route="\/items\/:id",method="GET",status="200"\} \d+/,
    );
  });
});

describe('http server – slow and idle clients', () => {
  let server: HttpServer;
  const clients: SlowClient[] = [];
  const limits = { headersTimeoutMs: 300, requestTimeoutMs: 600, keepAliveTimeoutMs: 300, maxConnections: 8 };

  before(async () => {
    server = new HttpServer({
      name: 'limits',
      host: '127.0.0.1',
      port: 0,
      maxBodyBytes: 8192,
      limits,
      log: silentLogger(),
      metrics: createMetrics(),
      routes: [
        { method: 'GET', path: '/ok', handler: () => ({ status: 200, json: { ok: true } }) },
        { method: 'POST', path: '/ok', handler: async (req) => ({ status: 200, body: await req.body() }) },
      ],
    });
    await server.start();
  });
  afterEach(() => clients.splice(0).forEach((c) => c.destroy()));
  after(() => server.stop());

  it('closes silent, trickling, slow-body and idle keep-alive connections after their deadlines', async () => {
    for (const kind of ['silent', 'trickle', 'slow-body', 'idle'] as const) {
      clients.push(openSlowClient(server.port, kind, '/ok', 50));
    }
    const closedAfter = await Promise.all(clients.map((c) => c.closed));
    // Each deadline, plus the sweep that enforces it (half the headers timeout) and scheduling slack.
    const [silent, trickle, slowBody, idle] = closedAfter as [number, number, number, number];
    expect(silent, 'silent').to.be.within(limits.headersTimeoutMs - 50, limits.headersTimeoutMs + 450);
    expect(trickle, 'trickle').to.be.within(limits.headersTimeoutMs - 50, limits.headersTimeoutMs + 450);
    expect(slowBody, 'slow body').to.be.within(limits.requestTimeoutMs - 50, limits.requestTimeoutMs + 450);
    // node:http advertises the keep-alive timeout and closes a second later, so that clients close first.
    expect(idle, 'idle keep-alive').to.be.within(
      limits.keepAliveTimeoutMs - 50,
      limits.keepAliveTimeoutMs + 1000 + 450,
    );
    expect(clients[3]?.answered()).to.equal(true);
  });

  it('closes connections past the limit at once and serves again when one ends', async () => {
    for (let i = 0; i < limits.maxConnections; i++)
      clients.push(openSlowClient(server.port, 'silent', '/ok'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const over = openSlowClient(server.port, 'silent', '/ok');
    clients.push(over);
    expect(await over.closed).to.be.below(limits.headersTimeoutMs - 100);
    clients[0]?.destroy();
    await clients[0]?.closed;
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect((await call(server.port, 'GET', '/ok')).status).to.equal(200);
  });
});
