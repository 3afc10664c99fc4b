import { expect } from 'chai';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import sinon from 'sinon';
import { GradesUnavailableError, GradesWriteUnconfirmedError } from '../../../src/grades/errors.js';
import type { UserGrade } from '../../../src/grades/model.js';
import type { GradesPort, SetOutcome } from '../../../src/grades/port.js';
import { BasicAuth, setRoutes } from '../../../src/grades/routes.js';
import { toErrorResponse } from '../../../src/http/errors.js';
import { HttpServer, type HttpRequest } from '../../../src/http/server.js';
import { silentLogger } from '../../../src/log.js';
import { createMetrics } from '../../../src/metrics.js';

const record: UserGrade = { user_id: 'u', postpaid_limit: 0, spp: 1, shipping_fee: 0, return_fee: 0 };

/** A port whose `set` answers as told: what the routes depend on, and nothing else. */
function port(set: () => Promise<SetOutcome>): GradesPort {
  return {
    ready: true,
    get: () => undefined,
    set,
    backup: () => Promise.reject(new Error('not used')),
  };
}

function request(): HttpRequest {
  return {
    method: 'POST',
    path: '/set',
    query: new URLSearchParams(),
    params: {},
    headers: {
      authorization: BasicAuth.header('grades', 'password-1'),
      'content-type': 'application/json',
    },
    body: () => Promise.resolve(Buffer.from('{"user_id":"u","spp":1}')),
  };
}

async function answer(set: () => Promise<SetOutcome>) {
  const [route] = setRoutes({
    grades: port(set),
    auth: new BasicAuth('grades', 'password-1'),
    replicaId: 'r',
  });
  return route!.handler(request());
}

describe('grades routes – what each outcome of a write answers', () => {
  it('stored in the stream: 200 with the record and its stream sequence', async () => {
    const res = await answer(() => Promise.resolve({ status: 'stored', seq: 42, record }));
    expect(res).to.deep.include({ status: 200, json: record });
    expect(res.headers).to.deep.equal({ 'x-stream-sequence': '42' });
  });

  it('kept in the outbox log during an outage: 202 with the record, replication pending', async () => {
    const res = await answer(() => Promise.resolve({ status: 'logged', record }));
    expect(res).to.deep.include({ status: 202, json: record });
    expect(res.headers).to.deep.equal({ 'x-replication': 'pending' });
  });

  it('standalone: 200 with the record and no stream header', async () => {
    const res = await answer(() => Promise.resolve({ status: 'local', record }));
    expect(res).to.deep.equal({ status: 200, json: record });
  });

  it('not taken, or sent but not confirmed in time: 503 with Retry-After and a code that tells them apart', async () => {
    // The route lets the coded error through; the one status table turns it into the answer.
    const refused = toErrorResponse(
      await answer(() => Promise.reject(new GradesUnavailableError('unreachable'))).catch((e: unknown) => e),
    );
    expect(refused).to.deep.include({ status: 503, headers: { 'retry-after': '1' } });
    expect(refused.body.error).to.equal('unavailable');
    const unconfirmed = toErrorResponse(
      await answer(() =>
        Promise.reject(new GradesWriteUnconfirmedError('the stream did not confirm the write within 10 ms')),
      ).catch((e: unknown) => e),
    );
    expect(unconfirmed).to.deep.include({ status: 503, headers: { 'retry-after': '1' } });
    expect(unconfirmed.body.error).to.equal('unconfirmed');
  });
});

/** POSTs `body` to /set with exactly `headers` (node:http adds no Content-Type of its own). */
function post(
  port: number,
  headers: Record<string, string>,
  body: string,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/set', headers }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('grades routes – over HTTP', () => {
  const AUTH = BasicAuth.header('grades', 'password-1');
  const body = '{"user_id":"u","spp":1}';
  let server: HttpServer;
  let set: sinon.SinonStub<[], Promise<SetOutcome>>;
  let ready = true;

  before(async () => {
    set = sinon.stub<[], Promise<SetOutcome>>();
    const grades: GradesPort = {
      get ready() {
        return ready;
      },
      get: () => undefined,
      set,
      backup: () => Promise.reject(new Error('not used')),
    };
    server = new HttpServer({
      name: 'grades-set-test',
      host: '127.0.0.1',
      port: 0,
      maxBodyBytes: 1024,
      log: silentLogger(),
      metrics: createMetrics(),
      routes: setRoutes({ grades, auth: new BasicAuth('grades', 'password-1'), replicaId: 'r' }),
    });
    await server.start();
  });
  after(() => server.stop());
  beforeEach(() => {
    ready = true;
    set.reset();
    set.resolves({ status: 'local', record });
  });

  it('refuses a body without a Content-Type with 415 and changes nothing (a browser can send one cross-site)', async () => {
    const res = await post(server.port, { authorization: AUTH, 'content-length': String(body.length) }, body);
    expect(res.status).to.equal(415);
    expect(set.called).to.equal(false);
  });

  it('takes a JSON body, with or without parameters on its Content-Type', async () => {
    for (const type of ['application/json', 'Application/JSON; charset=utf-8']) {
      const res = await post(server.port, { authorization: AUTH, 'content-type': type }, body);
      expect(res.status).to.equal(200);
    }
    expect(set.callCount).to.equal(2);
  });

  it('without valid credentials: 401 with the Basic challenge, and nothing changes', async () => {
    const res = await post(server.port, { 'content-type': 'application/json' }, body);
    expect(res.status).to.equal(401);
    expect(res.headers['www-authenticate']).to.equal('Basic realm="grades", charset="UTF-8"');
    expect(JSON.parse(res.body)).to.deep.equal({
      error: 'unauthorized',
      message: 'valid credentials are required',
    });
    expect(set.called).to.equal(false);
  });

  it('while the replica joins: 503 not_ready with Retry-After, and nothing changes', async () => {
    ready = false;
    const res = await post(server.port, { authorization: AUTH, 'content-type': 'application/json' }, body);
    expect(res.status).to.equal(503);
    expect(res.headers['retry-after']).to.equal('1');
    expect(JSON.parse(res.body)).to.deep.include({ error: 'not_ready' });
    expect(set.called).to.equal(false);
  });
});
