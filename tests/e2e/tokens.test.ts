import { expect } from 'chai';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  jwtVerify,
  type JSONWebKeySet,
} from 'jose';
import * as oauth from 'oauth4webapi';
import type pg from 'pg';
import { hashSecret } from '../../src/tokens/client-auth.js';
import { TestIdp } from '../support/idp.js';
import { deleteStreams, TEST_NATS_URL, uniqueName } from '../support/nats.js';
import {
  databaseAddress,
  directPool,
  dropSchema,
  TEST_DATABASE_URL,
  uniqueSchema,
  urlVia,
} from '../support/postgres.js';
import { getJson, startService, type RunningService } from '../support/service.js';
import { TcpFaultProxy } from '../support/tcp-proxy.js';

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const insecure = { [oauth.allowInsecureRequests]: true } as const;

/** Writes a providers-and-clients file trusting `idp` (`overrides` replace provider fields); returns its path. */
async function tokensConfig(
  dir: string,
  idp: TestIdp,
  overrides: Record<string, unknown> = {},
): Promise<string> {
  const path = join(dir, 'tokens.json');
  await writeFile(
    path,
    JSON.stringify({
      providers: [
        idp.providerConfig({
          jwksUri: undefined,
          discovery: true,
          claims: { email: 'email' },
          targetAudiences: ['orders', 'billing'],
          scopes: ['orders:read'],
          allowDelegation: true,
          ...overrides,
        }),
      ],
      clients: [
        {
          id: 'svc-a',
          secretHash: hashSecret('secret-a'),
          grants: ['client_credentials', 'token_exchange'],
          audiences: ['orders', 'inventory'],
          scopes: ['orders:read'],
          mayDelegate: true,
        },
      ],
    }),
  );
  return path;
}

/** POSTs a form to /token. */
async function postToken(port: number, form: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(`http://127.0.0.1:${port}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

const basic = (id: string, secret: string) => ({
  authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`,
});

async function serviceToken(port: number): Promise<string> {
  const res = await postToken(port, { grant_type: 'client_credentials' }, basic('svc-a', 'secret-a'));
  expect(res.status, JSON.stringify(res.body)).to.equal(200);
  return res.body.access_token as string;
}

describe('tokens (end to end)', () => {
  let idp: TestIdp;
  let dir: string;
  let configPath: string;
  const services: RunningService[] = [];

  before(async () => {
    idp = await new TestIdp().start();
    dir = await mkdtemp(join(tmpdir(), 'tokens-e2e-'));
    configPath = await tokensConfig(dir, idp);
  });
  after(async () => {
    await idp.stop();
    await rm(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await Promise.all(services.splice(0).map((s) => s.stop('SIGKILL')));
  });

  async function start(env: Record<string, string>): Promise<number> {
    const service = startService({
      TOKENS_PORT: '0',
      TOKENS_CONFIG: configPath,
      SIGNING_WORKERS: '1',
      ...env,
    });
    services.push(service);
    return ((await service.ready) as { tokensPort: number }).tokensPort;
  }

  describe('one replica, through a standard OAuth client library', () => {
    let port: number;
    let as: oauth.AuthorizationServer;
    const client: oauth.Client = { client_id: 'svc-a' };

    beforeEach(async () => {
      port = await start({});
      const issuer = new URL(`http://127.0.0.1:${port}`);
      as = await oauth.processDiscoveryResponse(
        issuer,
        await oauth.discoveryRequest(issuer, { algorithm: 'oidc', ...insecure }),
      );
    });

    it('exchanges a provider token (RFC 8693) and the result verifies against our JWKS', async () => {
      const subject = await idp.sign({ sub: 'u-42', email: 'u42@acme.test', aud: 'token-exchange' });
      const response = await oauth.processGenericTokenEndpointResponse(
        as,
        client,
        await oauth.genericTokenEndpointRequest(
          as,
          client,
          oauth.ClientSecretBasic('secret-a'),
          EXCHANGE,
          { subject_token: subject, subject_token_type: JWT_TYPE, audience: 'orders', scope: 'orders:read' },
          insecure,
        ),
      );
      expect(response.issued_token_type).to.equal('urn:ietf:params:oauth:token-type:access_token');
      expect(response.token_type).to.equal('bearer');
      const jwks = createRemoteJWKSet(new URL(as.jwks_uri!), insecure as never);
      const { payload } = await jwtVerify(response.access_token, jwks, {
        issuer: as.issuer,
        audience: 'orders',
      });
      expect(payload).to.include({
        sub: 'acme|u-42',
        email: 'u42@acme.test',
        scope: 'orders:read',
        client_id: 'svc-a',
      });
    });

    it('issues a service token (client_credentials) that verifies against our JWKS', async () => {
      const response = await oauth.processClientCredentialsResponse(
        as,
        client,
        await oauth.clientCredentialsGrantRequest(
          as,
          client,
          oauth.ClientSecretPost('secret-a'),
          { audience: 'inventory', scope: 'orders:read' },
          insecure,
        ),
      );
      const jwks = createRemoteJWKSet(new URL(as.jwks_uri!), insecure as never);
      const { payload } = await jwtVerify(response.access_token, jwks, {
        issuer: as.issuer,
        audience: 'inventory',
      });
      expect(payload).to.include({ sub: 'svc-a', client_id: 'svc-a', scope: 'orders:read' });
    });

    it('answers bad input with its RFC error and stays up', async () => {
      const subject = await idp.sign({ sub: 'u', aud: 'token-exchange' });
      const cases: [
        Promise<{ status: number; headers: Headers; body: Record<string, unknown> }>,
        number,
        string,
      ][] = [
        [
          postToken(port, { grant_type: EXCHANGE, subject_token: 'a.b.c', subject_token_type: JWT_TYPE }),
          400,
          'invalid_request',
        ],
        [
          postToken(port, {
            grant_type: EXCHANGE,
            subject_token: `${subject.slice(0, -4)}AAAA`,
            subject_token_type: JWT_TYPE,
          }),
          400,
          'invalid_request',
        ],
        [
          postToken(port, { grant_type: 'client_credentials' }, basic('svc-a', 'wrong')),
          401,
          'invalid_client',
        ],
        [postToken(port, { grant_type: 'implicit' }), 400, 'unsupported_grant_type'],
        [
          postToken(
            port,
            { grant_type: 'client_credentials', client_id: 'someone-else' },
            basic('svc-a', 'secret-a'),
          ),
          400,
          'invalid_request',
        ],
        [
          postToken(port, {
            grant_type: EXCHANGE,
            subject_token: subject,
            subject_token_type: JWT_TYPE,
            audience: 'admin',
          }),
          400,
          'invalid_target',
        ],
        [
          postToken(port, { grant_type: 'client_credentials', padding: 'x'.repeat(70_000) }),
          413,
          'invalid_request',
        ],
      ];
      for (const [pending, status, error] of cases) {
        const res = await pending;
        expect(res.status, error).to.equal(status);
        expect(res.body.error).to.equal(error);
        expect(res.headers.get('cache-control')).to.equal('no-store');
        if (status === 401) expect(res.headers.get('www-authenticate')).to.match(/^Basic realm=/);
      }
      const json = await fetch(`http://127.0.0.1:${port}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      expect(json.status).to.equal(400);
      expect(((await json.json()) as { error: string }).error).to.equal('invalid_request');
      expect((await getJson(port, '/healthz')).status).to.equal(200);
    });

    it('delegation: an actor token (ours) yields a token whose act names the actor; may_act is honoured', async () => {
      const actorToken = await serviceToken(port);
      const exchange = async (subjectClaims: Record<string, unknown>) =>
        postToken(
          port,
          {
            grant_type: EXCHANGE,
            subject_token: await idp.sign({ sub: 'u-42', aud: 'token-exchange', ...subjectClaims }),
            subject_token_type: JWT_TYPE,
            actor_token: actorToken,
            actor_token_type: 'urn:ietf:params:oauth:token-type:access_token',
          },
          basic('svc-a', 'secret-a'),
        );
      const ok = await exchange({ may_act: { sub: 'svc-a' } });
      expect(ok.status, JSON.stringify(ok.body)).to.equal(200);
      const jwks = createRemoteJWKSet(new URL(`http://127.0.0.1:${port}/.well-known/jwks.json`));
      const { payload } = await jwtVerify(ok.body.access_token as string, jwks);
      expect(payload.sub).to.equal('acme|u-42');
      expect(payload.act).to.deep.equal({ sub: 'svc-a', iss: `http://127.0.0.1:${port}` });
      const refused = await exchange({ may_act: { sub: 'someone-else' } });
      expect(refused.status).to.equal(400);
      expect(refused.body).to.include({ error: 'invalid_request' });
    });

    it('a provider outage is 503 temporarily_unavailable, not invalid_request', async () => {
      // A replica whose provider keys may never be served stale, and whose provider is failing.
      const failingDir = await mkdtemp(join(tmpdir(), 'tokens-e2e-'));
      const down = await new TestIdp().start();
      down.mode = 'error';
      try {
        const path = await tokensConfig(failingDir, down);
        const service = startService({ TOKENS_PORT: '0', TOKENS_CONFIG: path, SIGNING_WORKERS: '0' });
        services.push(service);
        const p = ((await service.ready) as { tokensPort: number }).tokensPort;
        const res = await postToken(p, {
          grant_type: EXCHANGE,
          subject_token: await down.sign({ sub: 'u', aud: 'token-exchange' }),
          subject_token_type: JWT_TYPE,
        });
        expect(res.status).to.equal(503);
        expect(res.body.error).to.equal('temporarily_unavailable');
        expect(res.headers.get('retry-after')).to.equal('5');
        // The provider's 500 did not take the service down.
        expect((await getJson(p, '/healthz')).status).to.equal(200);
      } finally {
        await down.stop();
        await rm(failingDir, { recursive: true, force: true });
      }
    });
  });

  it('a CEL claim rule that does not compile stops start-up with exit code 2, naming provider and expression', async () => {
    const badPath = join(dir, 'bad-cel.json');
    await writeFile(
      badPath,
      JSON.stringify({
        providers: [
          idp.providerConfig({
            claimValidationRules: [{ expression: 'claims.email.endsWith(', message: 'm' }],
          }),
        ],
      }),
    );
    const service = startService({ TOKENS_PORT: '0', TOKENS_CONFIG: badPath });
    services.push(service);
    expect(await service.exited).to.equal(2);
    expect(service.stderr.join('')).to.contain('provider "acme"').and.contain('"claims.email.endsWith("');
  });

  it('an unknown kid while the provider is down is 503 with Retry-After, and judged normally once it is back', async () => {
    const outageDir = await mkdtemp(join(tmpdir(), 'tokens-e2e-'));
    const provider = await new TestIdp('idp-outage-1').start();
    try {
      const path = await tokensConfig(outageDir, provider, { jwksRefetchCooldownS: 1 });
      const service = startService({ TOKENS_PORT: '0', TOKENS_CONFIG: path, SIGNING_WORKERS: '0' });
      services.push(service);
      const p = ((await service.ready) as { tokensPort: number }).tokensPort;
      const exchange = async (kid?: string) =>
        postToken(p, {
          grant_type: EXCHANGE,
          subject_token: await provider.sign({ sub: 'u', aud: 'token-exchange' }, kid ? { kid } : {}),
          subject_token_type: JWT_TYPE,
        });
      expect((await exchange()).status).to.equal(200);
      provider.mode = 'error';
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const during = await exchange('idp-outage-2');
      expect(during.status).to.equal(503);
      expect(during.body.error).to.equal('temporarily_unavailable');
      // Retry-After: when the provider will be asked again (the refetch cooldown, 1 s here).
      expect(during.headers.get('retry-after')).to.equal('1');
      // The last good keys still serve a kid they hold.
      expect((await exchange()).status).to.equal(200);
      provider.mode = 'up';
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const after = await exchange('idp-outage-2');
      expect(after.status).to.equal(400);
      expect(after.body.error).to.equal('invalid_request');
    } finally {
      await provider.stop();
      await rm(outageDir, { recursive: true, force: true });
    }
  });

  it('with KEY_STARTUP_HOLD, tokens are not ready until the start-up key has been served for the activation delay', async () => {
    const port = await start({
      KEY_ROTATION_INTERVAL_S: '60',
      KEY_ACTIVATION_DELAY_S: '2',
      KEY_STARTUP_HOLD: 'true',
    });
    const jwks = (await getJson(port, '/.well-known/jwks.json')) as {
      body: { keys: unknown[] };
      headers: Headers;
    };
    expect(jwks.body.keys).to.have.length(1);
    expect(jwks.headers.get('cache-control')).to.equal('public, max-age=2');
    const held = (await getJson(port, '/readyz')) as {
      status: number;
      body: { checks: Record<string, { detail: Record<string, unknown> }> };
    };
    expect(held.status).to.equal(503);
    expect(held.body.checks['signing-key']?.detail).to.include({ held: true, published: true });
    const started = Date.now();
    while ((await getJson(port, '/readyz')).status !== 200) {
      expect(Date.now() - started).to.be.below(4000);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  it('with a short rotation interval, every token carries a kid its JWKS had been serving for the activation delay', async () => {
    const DELAY_MS = 1000;
    const port = await start({
      KEY_ROTATION_INTERVAL_S: '3',
      KEY_ACTIVATION_DELAY_S: String(DELAY_MS / 1000),
      KEY_STARTUP_HOLD: 'true',
      TOKEN_DEFAULT_TTL_S: '60',
      TOKEN_MAX_TTL_S: '120',
    });
    const polls: { sent: number; kids: Set<string> }[] = [];
    const tokens: { kid: string; answeredAt: number }[] = [];
    const until = Date.now() + 8000;
    const poll = (async () => {
      while (Date.now() < until) {
        const sent = performance.now();
        const body = (await getJson(port, '/.well-known/jwks.json')).body as JSONWebKeySet;
        polls.push({ sent, kids: new Set(body.keys.map((k) => k.kid!)) });
      }
    })();
    const issue = (async () => {
      while ((await getJson(port, '/readyz')).status !== 200) await new Promise((r) => setTimeout(r, 50));
      while (Date.now() < until) {
        const token = await serviceToken(port);
        tokens.push({ kid: decodeProtectedHeader(token).kid!, answeredAt: performance.now() });
      }
    })();
    await Promise.all([poll, issue]);
    // A key not listed by a poll sent at time A was not served before A. A token answered at time B was issued
    // before B. So a token whose kid was still unlisted by a poll sent later than B − delay would prove that the
    // key signed before it had been served for the delay. (Within this resolution, a few ms, the test cannot see.)
    const rotated = new Set<string>();
    for (const { kid, answeredAt } of tokens) {
      const first = polls.findIndex((p) => p.kids.has(kid));
      expect(first, `kid ${kid} never listed`).to.be.at.least(0);
      if (first === 0) continue; // the start-up key, listed before the first poll (readiness held it)
      rotated.add(kid);
      const lastAbsent = polls[first - 1]!.sent;
      expect(lastAbsent, `kid ${kid}`).to.be.below(answeredAt - DELAY_MS);
    }
    expect(tokens.length).to.be.above(50);
    expect(rotated.size).to.be.at.least(2);
  });

  it('rotation under load loses no request, and every issued token verifies', async () => {
    const port = await start({
      KEY_ROTATION_INTERVAL_S: '1',
      TOKEN_DEFAULT_TTL_S: '60',
      TOKEN_MAX_TTL_S: '120',
    });
    const subject = await idp.sign({ sub: 'u', aud: 'token-exchange' });
    const tokens: string[] = [];
    const statuses: number[] = [];
    const until = Date.now() + 3500;
    await Promise.all(
      Array.from({ length: 8 }, async (_, worker) => {
        while (Date.now() < until) {
          const res =
            worker % 2 === 0
              ? await postToken(port, { grant_type: 'client_credentials' }, basic('svc-a', 'secret-a'))
              : await postToken(port, {
                  grant_type: EXCHANGE,
                  subject_token: subject,
                  subject_token_type: JWT_TYPE,
                });
          statuses.push(res.status);
          if (res.status === 200) tokens.push(res.body.access_token as string);
        }
      }),
    );
    expect(statuses.filter((s) => s !== 200)).to.deep.equal([]);
    const kids = new Set(tokens.map((t) => decodeProtectedHeader(t).kid));
    expect(kids.size).to.be.at.least(3);
    const jwks = (await getJson(port, '/.well-known/jwks.json')).body as JSONWebKeySet;
    const local = createLocalJWKSet(jwks);
    for (const token of tokens) await jwtVerify(token, local, { issuer: `http://127.0.0.1:${port}` });
  });

  describe('two replicas, one with its Postgres cut', () => {
    let admin: pg.Pool;
    let proxy: TcpFaultProxy;
    const schema = uniqueSchema('tok2');
    const bucket = uniqueName('keys');

    before(async () => {
      admin = directPool();
      proxy = new TcpFaultProxy(databaseAddress(TEST_DATABASE_URL));
      await proxy.start();
    });
    after(async () => {
      await proxy.stop();
      await dropSchema(admin, schema);
      await admin.end();
      await deleteStreams(`KV_${bucket}`);
    });

    it('tokens from either replica verify against either replica’s JWKS, also after a rotation during the cut', async () => {
      const common = {
        DATABASE_SCHEMA: schema,
        NATS_URL: TEST_NATS_URL,
        NATS_KEYS_BUCKET: bucket,
        KEY_ROTATION_INTERVAL_S: '2',
        KEY_PUBLISH_RETRY_MS: '200',
        KEYSTORE_PG_TIMEOUT_MS: '200',
        TOKEN_DEFAULT_TTL_S: '60',
        TOKEN_MAX_TTL_S: '120',
      };
      const cutPort = await start({ ...common, REPLICA_ID: 'cut', DATABASE_URL: urlVia(proxy.port) });
      const okPort = await start({ ...common, REPLICA_ID: 'ok', DATABASE_URL: TEST_DATABASE_URL });
      await proxy.setMode('refuse');
      await new Promise((r) => setTimeout(r, 2500)); // the cut replica rotates while Postgres is unreachable

      const ready = (await getJson(cutPort, '/readyz')).body as {
        checks: Record<string, { detail: Record<string, unknown> }>;
      };
      expect(ready.checks['key-store']?.detail.postgresAvailable).to.equal(false);
      const fromCut = await serviceToken(cutPort);
      const fromOk = await serviceToken(okPort);
      for (const port of [cutPort, okPort]) {
        const jwks = createLocalJWKSet((await getJson(port, '/.well-known/jwks.json')).body as JSONWebKeySet);
        for (const [token, issuerPort] of [
          [fromCut, cutPort],
          [fromOk, okPort],
        ] as const) {
          await jwtVerify(token, jwks, { issuer: `http://127.0.0.1:${issuerPort}` });
          const kid = decodeProtectedHeader(token).kid!;
          expect((await getJson(port, `/keys/${kid}`)).status).to.equal(200);
        }
      }
    });
  });
});
