import { expect } from 'chai';
import type pg from 'pg';
import { closedPort, startBlackHole } from '../support/tcp-proxy.js';
import {
  directPool,
  dropSchema,
  storedKids,
  TEST_DATABASE_URL,
  uniqueSchema,
  urlVia,
} from '../support/postgres.js';
import { getJson, startService, type RunningService } from '../support/service.js';

interface Readiness {
  status: string;
  checks: Record<string, { ready: boolean; detail: Record<string, unknown> }>;
}

describe('service process (end to end)', () => {
  let service: RunningService | undefined;
  afterEach(async () => {
    await service?.stop('SIGKILL');
    service = undefined;
  });

  it('with no configuration: answers /healthz, is ready, serves its key, and exits 0 on SIGTERM', async () => {
    service = startService({ GRADES_PASSWORD: '' });
    const { tokensPort, gradesSetPort } = (await service.ready) as {
      tokensPort: number;
      gradesSetPort: number;
    };
    // No built-in grades password: one is generated, logged once, and works.
    const generated = service.logs.filter((l) => typeof l.generatedPassword === 'string');
    expect(generated).to.have.length(1);
    const auth = Buffer.from(`grades:${String(generated[0]?.generatedPassword)}`).toString('base64');
    const set = await fetch(`http://127.0.0.1:${gradesSetPort}/set`, {
      method: 'POST',
      headers: { authorization: `Basic ${auth}`, 'content-type': 'application/json' },
      body: '{"user_id":"u1","spp":1}',
    });
    expect(set.status).to.equal(200);
    expect((await getJson(tokensPort, '/healthz')).body).to.deep.equal({ status: 'ok' });
    const ready = await getJson(tokensPort, '/readyz');
    expect(ready.status).to.equal(200);
    const jwks = (await getJson(tokensPort, '/.well-known/jwks.json')) as {
      body: { keys: { kid: string }[] };
    };
    expect(jwks.body.keys).to.have.length(1);
    const kid = jwks.body.keys[0]?.kid ?? '';
    const one = await getJson(tokensPort, `/keys/${kid}`);
    expect(one.status).to.equal(200);
    expect(one.body).to.have.property('kid', kid);
    expect(one.body).not.to.have.property('d');
    expect((await getJson(tokensPort, '/keys/unknown')).status).to.equal(404);
    expect(await service.stop('SIGTERM')).to.equal(0);
  });

  it('exits 0 on SIGINT too; every log line names the replica, the process-level ones included', async () => {
    service = startService({ TOKENS_PORT: '0', REPLICA_ID: 'r-logs' });
    await service.ready;
    expect(await service.stop('SIGINT')).to.equal(0);
    const messages = service.logs.map((l) => l.msg);
    expect(messages).to.include.members(['ready', 'shutting down', 'stopped']);
    expect(service.logs.filter((l) => l.replica !== 'r-logs')).to.deep.equal([]);
  });

  it('keeps issuing while nobody reads its stdout, and the audit lines all arrive once someone does', async function () {
    this.timeout(20_000);
    service = startService({ TOKENS_PORT: '0' });
    const { tokensPort } = (await service.ready) as { tokensPort: number };
    const secret = String(
      service.logs.find((l) => typeof l.generatedClientSecret === 'string')?.generatedClientSecret,
    );
    const auth = `Basic ${Buffer.from(`quickstart:${secret}`).toString('base64')}`;
    // The reader stops: the pipe (64 KiB) fills within a few hundred audit lines.
    service.proc.stdout?.pause();
    const requests = 3000;
    let issued = 0;
    for (let i = 0; i < requests; i += 50) {
      const answers = await Promise.all(
        Array.from({ length: 50 }, () =>
          fetch(`http://127.0.0.1:${tokensPort}/token`, {
            method: 'POST',
            headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' },
            body: 'grant_type=client_credentials',
          }).then((r) => r.status),
        ),
      );
      issued += answers.filter((status) => status === 200).length;
    }
    expect(issued).to.equal(requests);
    expect((await getJson(tokensPort, '/healthz')).status).to.equal(200);
    // Reading again: every line waited in the process (well under its bound) and now arrives.
    service.proc.stdout?.resume();
    expect(await service.stop('SIGTERM')).to.equal(0);
    expect(service.logs.filter((l) => l.audit === 'token' && l.outcome === 'issued')).to.have.length(
      requests,
    );
  });

  it('refuses to start on a bad setting, naming it, with exit code 2', async () => {
    service = startService({ TOKENS_PORT: 'eighty' });
    expect(await service.exited).to.equal(2);
    expect(service.stderr.join('')).to.match(/TOKENS_PORT/);
  });

  it('with Postgres refusing connections: starts, is ready, and holds its key in memory and pending writes (FT7)', async () => {
    service = startService({
      TOKENS_PORT: '0',
      DATABASE_URL: urlVia(await closedPort()),
      DATABASE_CONNECT_TIMEOUT_MS: '1000',
    });
    const { tokensPort } = (await service.ready) as { tokensPort: number };
    const ready = (await getJson(tokensPort, '/readyz')) as { status: number; body: Readiness };
    expect(ready.status).to.equal(200);
    expect(ready.body.checks['key-store']?.detail).to.include({ postgresAvailable: false, pending: 1 });
    const jwks = (await getJson(tokensPort, '/.well-known/jwks.json')) as { body: { keys: unknown[] } };
    expect(jwks.body.keys).to.have.length(1);
    expect(await service.stop()).to.equal(0);
  });

  it('with Postgres a black hole (accepts, never answers): starts and is ready within the connect timeout', async () => {
    const hole = await startBlackHole();
    try {
      service = startService({
        TOKENS_PORT: '0',
        DATABASE_URL: urlVia(hole.port),
        DATABASE_CONNECT_TIMEOUT_MS: '800',
      });
      const { tokensPort } = (await service.ready) as { tokensPort: number };
      const ready = (await getJson(tokensPort, '/readyz')) as { status: number; body: Readiness };
      expect(ready.status).to.equal(200);
      expect(ready.body.checks['signing-key']?.ready).to.be.true;
      expect(await service.stop()).to.equal(0);
    } finally {
      await hole.stop();
    }
  });

  it('reports readiness per capability: with NATS unreachable, tokens are ready and grades are not', async () => {
    service = startService({
      NATS_URL: `nats://127.0.0.1:${await closedPort()}`,
      NATS_CONNECT_WAIT_MS: '300',
    });
    const { tokensPort, gradesGetPort } = (await service.ready) as {
      tokensPort: number;
      gradesGetPort: number;
    };
    expect((await getJson(tokensPort, '/readyz')).status).to.equal(200);
    const grades = (await getJson(gradesGetPort, '/readyz')) as { status: number; body: Readiness };
    expect(grades.status).to.equal(503);
    expect(grades.body.checks.grades?.detail).to.include({ phase: 'waiting-for-nats' });
    expect(await service.stop()).to.equal(0);
  });

  describe('with the real Postgres', () => {
    let admin: pg.Pool;
    const schema = uniqueSchema('e2e');
    before(() => {
      admin = directPool();
    });
    after(async () => {
      await dropSchema(admin, schema);
      await admin.end();
    });

    it('stores its public key in Postgres, exposes key-store metrics, and exits 0 on SIGTERM', async () => {
      service = startService({ TOKENS_PORT: '0', DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema });
      const { tokensPort } = (await service.ready) as { tokensPort: number };
      const jwks = (await getJson(tokensPort, '/.well-known/jwks.json')) as {
        body: { keys: { kid: string }[] };
      };
      expect(await storedKids(admin, schema)).to.deep.equal(jwks.body.keys.map((k) => k.kid));
      const metrics = (await getJson(tokensPort, '/metrics')).body as string;
      expect(metrics).to.match(/^keystore_postgres_available 1$/m);
      expect(metrics).to.match(/^keystore_pending_writes 0$/m);
      expect(await service.stop()).to.equal(0);
      expect(service.logs.some((l) => JSON.stringify(l).includes('BEGIN PRIVATE'))).to.be.false;
    });
  });
});
