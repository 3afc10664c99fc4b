import { expect } from 'chai';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import * as oauth from 'oauth4webapi';
import { hashSecret } from '../../src/tokens/client-auth.js';
import { TestIdp } from '../support/idp.js';
import { startService, type RunningService } from '../support/service.js';

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const insecure = { [oauth.allowInsecureRequests]: true } as const;
const AUDIT_FIELDS = [
  'audit',
  'time',
  'replica',
  'requestId',
  'grant',
  'clientId',
  'provider',
  'externalSubject',
  'subject',
  'audience',
  'scope',
  'jti',
  'kid',
  'outcome',
  'error',
];

/** Waits until `find` returns something (audit lines leave in batches, at least every 100 ms). */
async function eventually<T>(find: () => T | undefined, what: string, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** A resource server's view: validates `token` as RFC 9068 says, for `audience`. */
function validateAsResourceServer(as: oauth.AuthorizationServer, token: string, audience: string) {
  const request = new Request('http://127.0.0.1/resource', { headers: { authorization: `Bearer ${token}` } });
  return oauth.validateJwtAccessToken(as, request, audience, insecure);
}

describe('tokens interoperate (end to end)', () => {
  const services: RunningService[] = [];
  afterEach(async () => {
    await Promise.all(services.splice(0).map((s) => s.stop('SIGKILL')));
  });

  describe('an OAuth client and resource server library, through RFC 8414 metadata', () => {
    let idp: TestIdp;
    let dir: string;
    let service: RunningService;
    let as: oauth.AuthorizationServer;
    const client: oauth.Client = { client_id: 'svc-a' };

    before(async () => {
      idp = await new TestIdp().start();
      dir = await mkdtemp(join(tmpdir(), 'interop-e2e-'));
    });
    after(async () => {
      await idp.stop();
      await rm(dir, { recursive: true, force: true });
    });

    beforeEach(async () => {
      const configPath = join(dir, 'tokens.json');
      await writeFile(
        configPath,
        JSON.stringify({
          providers: [idp.providerConfig({ targetAudiences: ['orders'], scopes: ['orders:read'] })],
          clients: [
            {
              id: 'svc-a',
              secretHash: hashSecret('secret-a'),
              grants: ['client_credentials', 'token_exchange'],
              audiences: ['orders', 'inventory'],
              scopes: ['orders:read'],
            },
          ],
        }),
      );
      service = startService({ TOKENS_CONFIG: configPath, SIGNING_WORKERS: '1' });
      services.push(service);
      const { tokensPort } = (await service.ready) as { tokensPort: number };
      const issuer = new URL(`http://127.0.0.1:${tokensPort}`);
      as = await oauth.processDiscoveryResponse(
        issuer,
        await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }),
      );
    });

    const auditLines = () => service.logs.filter((l) => l.audit === 'token');

    it('performs an exchange and a client-credentials grant whose tokens validateJwtAccessToken accepts', async () => {
      const subject = await idp.sign({ sub: 'u-7', aud: 'token-exchange' });
      const exchanged = await oauth.processGenericTokenEndpointResponse(
        as,
        client,
        await oauth.genericTokenEndpointRequest(
          as,
          client,
          oauth.ClientSecretBasic('secret-a'),
          EXCHANGE,
          { subject_token: subject, subject_token_type: JWT_TYPE, scope: 'orders:read' },
          insecure,
        ),
      );
      const exchangeClaims = await validateAsResourceServer(as, exchanged.access_token, 'orders');
      expect(exchangeClaims).to.include({ sub: 'acme|u-7', client_id: 'svc-a', scope: 'orders:read' });

      const serviceToken = await oauth.processClientCredentialsResponse(
        as,
        client,
        await oauth.clientCredentialsGrantRequest(
          as,
          client,
          oauth.ClientSecretPost('secret-a'),
          { audience: 'inventory' },
          insecure,
        ),
      );
      const serviceClaims = await validateAsResourceServer(as, serviceToken.access_token, 'inventory');
      expect(serviceClaims).to.include({ sub: 'svc-a', client_id: 'svc-a', aud: 'inventory' });
      for (const claims of [exchangeClaims, serviceClaims]) {
        expect(claims).to.include.keys('iss', 'exp', 'aud', 'sub', 'client_id', 'iat', 'jti');
      }

      // Each decision is one audit line, naming the token by its jti and never holding it or a secret.
      for (const [claims, grant] of [
        [exchangeClaims, 'token_exchange'],
        [serviceClaims, 'client_credentials'],
      ] as const) {
        const line = await eventually(
          () => auditLines().find((l) => l.jti === claims.jti),
          `the audit line of ${grant}`,
        );
        expect(Object.keys(line)).to.have.members(AUDIT_FIELDS);
        expect(line).to.include({
          grant,
          clientId: 'svc-a',
          subject: claims.sub,
          outcome: 'issued',
          error: null,
        });
        expect(auditLines().filter((l) => l.jti === claims.jti)).to.have.length(1);
      }
      expect(auditLines().find((l) => l.grant === 'token_exchange')).to.include({
        provider: 'acme',
        externalSubject: 'u-7',
        audience: 'orders',
        scope: 'orders:read',
      });
      const text = JSON.stringify(auditLines());
      for (const secret of [subject, exchanged.access_token, serviceToken.access_token, 'secret-a']) {
        expect(text).not.to.include(secret);
      }
    });

    it('a refusal is one audit line with its error code, under the caller’s request id', async () => {
      const subject = await idp.sign({ sub: 'u-8', aud: 'someone-else' });
      const res = await fetch(as.token_endpoint!, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-request-id': 'refusal-1' },
        body: new URLSearchParams({
          grant_type: EXCHANGE,
          subject_token: subject,
          subject_token_type: JWT_TYPE,
          client_id: 'svc-a',
          client_secret: 'secret-a',
        }),
      });
      expect(res.status).to.equal(400);
      const line = await eventually(
        () => auditLines().find((l) => l.requestId === 'refusal-1'),
        'the audit line of the refusal',
      );
      expect(Object.keys(line)).to.have.members(AUDIT_FIELDS);
      expect(line).to.include({
        grant: 'token_exchange',
        clientId: 'svc-a',
        provider: 'acme',
        jti: null,
        outcome: 'refused',
        error: 'invalid_request',
      });
      expect(auditLines().filter((l) => l.requestId === 'refusal-1')).to.have.length(1);
      expect(JSON.stringify(line)).not.to.include(subject).and.not.to.include('secret-a');
    });
  });

  describe('quick start: no TOKENS_CONFIG', () => {
    it('generates a client whose service token verifies against the JWKS', async () => {
      const service = startService({ SIGNING_WORKERS: '1' });
      services.push(service);
      const { tokensPort } = (await service.ready) as { tokensPort: number };
      const generated = service.logs.find((l) => typeof l.generatedClientSecret === 'string') as
        { generatedClientId: string; generatedClientSecret: string } | undefined;
      expect(generated, 'the log line with the generated client').to.exist;
      const { generatedClientId: id, generatedClientSecret: secret } = generated!;
      expect(service.logs.filter((l) => JSON.stringify(l).includes(secret))).to.have.length(1);

      const base = `http://127.0.0.1:${tokensPort}`;
      const res = await fetch(`${base}/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`,
        },
        body: 'grant_type=client_credentials',
      });
      expect(res.status).to.equal(200);
      const { access_token: token } = (await res.json()) as { access_token: string };
      const { payload, protectedHeader } = await jwtVerify(
        token,
        createRemoteJWKSet(new URL(`${base}/.well-known/jwks.json`)),
        { issuer: base, typ: 'at+jwt' },
      );
      expect(protectedHeader.typ).to.equal('at+jwt');
      expect(payload).to.include({ sub: id, client_id: id, aud: 'quickstart' });
    });
  });
});
