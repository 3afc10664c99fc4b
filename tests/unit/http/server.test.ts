import { expect } from 'chai';
import { request } from 'node:http';
import { BadRequestError, StorageError } from '../../../src/errors.js';
import { HttpServer } from '../../../src/http/server.js';
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
