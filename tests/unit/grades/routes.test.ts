import { expect } from 'chai';
import { request } from 'node:http';
import sinon from 'sinon';
import type { GradesActor } from '../../../src/grades/grades-actor.js';
import { BasicAuth, setRoutes } from '../../../src/grades/routes.js';
import { HttpServer } from '../../../src/http/server.js';
import { silentLogger } from '../../../src/log.js';
import { createMetrics } from '../../../src/metrics.js';

/** POSTs `body` to /set with exactly `headers` (node:http adds no Content-Type of its own). */
function post(port: number, headers: Record<string, string>, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/set', headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('grades routes – set', () => {
  const AUTH = BasicAuth.header('grades', 'test-password');
  let server: HttpServer;
  let ask: sinon.SinonStub;

  before(async () => {
    ask = sinon.stub();
    server = new HttpServer({
      name: 'grades-set-test',
      host: '127.0.0.1',
      port: 0,
      maxBodyBytes: 1024,
      log: silentLogger(),
      metrics: createMetrics(),
      routes: setRoutes({
        actor: { ask } as unknown as GradesActor,
        auth: new BasicAuth('grades', 'test-password'),
        ready: () => true,
        replicaId: 'r1',
      }),
    });
    await server.start();
  });
  after(() => server.stop());
  beforeEach(() => {
    ask.reset();
    ask.resolves({ user_id: 'u1', postpaid_limit: 0, spp: 1, shipping_fee: 0, return_fee: 0 });
  });

  it('refuses a body without a Content-Type with 415 and changes nothing (a browser can send one cross-site)', async () => {
    const body = '{"user_id":"u1","spp":1}';
    expect(
      await post(server.port, { authorization: AUTH, 'content-length': String(body.length) }, body),
    ).to.equal(415);
    expect(ask.called).to.equal(false);
  });

  it('takes a JSON body, with or without parameters on its Content-Type', async () => {
    const body = '{"user_id":"u1","spp":1}';
    for (const type of ['application/json', 'Application/JSON; charset=utf-8']) {
      expect(await post(server.port, { authorization: AUTH, 'content-type': type }, body), type).to.equal(
        200,
      );
    }
    expect(ask.callCount).to.equal(2);
  });
});
