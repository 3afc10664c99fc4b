import { expect } from 'chai';
import { GradesUnavailableError, GradesWriteUnconfirmedError } from '../../../src/grades/errors.js';
import type { UserGrade } from '../../../src/grades/model.js';
import type { GradesPort, SetOutcome } from '../../../src/grades/port.js';
import { BasicAuth, setRoutes } from '../../../src/grades/routes.js';
import type { HttpRequest } from '../../../src/http/server.js';

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
    const refused = await answer(() => Promise.reject(new GradesUnavailableError('unreachable')));
    expect(refused).to.deep.include({ status: 503, headers: { 'retry-after': '1' } });
    expect((refused.json as { error: string }).error).to.equal('unavailable');
    const unconfirmed = await answer(() => Promise.reject(new GradesWriteUnconfirmedError(10)));
    expect(unconfirmed.status).to.equal(503);
    expect((unconfirmed.json as { error: string }).error).to.equal('unconfirmed');
  });
});
