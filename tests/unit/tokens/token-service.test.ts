import { expect } from 'chai';
import { generateKeyPairSync } from 'node:crypto';
import { createLocalJWKSet, jwtVerify, SignJWT, UnsecuredJWT, type JWK } from 'jose';
import sinon from 'sinon';
import { silentLogger } from '../../../src/log.js';
import type { TokenDecision } from '../../../src/tokens/audit.js';
import { hashSecret } from '../../../src/tokens/client-auth.js';
import { FetchError } from '../../../src/tokens/http-fetch.js';
import { OAuthError } from '../../../src/tokens/oauth-error.js';
import { RemoteJwks } from '../../../src/tokens/remote-jwks.js';
import { generateSigningKey, type SigningKey } from '../../../src/keys/signing-key.js';
import { SigningPool } from '../../../src/tokens/signing-pool.js';
import { GRANT_TOKEN_EXCHANGE, TokenService } from '../../../src/tokens/token-service.js';
import { parseTokensConfig } from '../../../src/tokens/tokens-config.js';
import { TestIdp } from '../../support/idp.js';

const ISSUER = 'https://tokens.internal.test';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

describe('token service', () => {
  let idp: TestIdp;
  let key: SigningKey;
  let service: TokenService;
  let fetchJson: sinon.SinonStub;
  const signer = new SigningPool({ workers: 0 });

  before(async () => {
    idp = await new TestIdp('idp-1').start();
    key = await generateSigningKey(
      'ES256',
      Date.now(),
      { activeMs: 3_600_000, tokenMaxTtlMs: 3_600_000, skewMs: 60_000 },
      'r1',
    );
  });
  after(() => idp.stop());

  /** A service trusting `idp` (with `providerOverrides`) and two clients. */
  function makeService(providerOverrides: Record<string, unknown> = {}): TokenService {
    const config = parseTokensConfig(
      {
        providers: [
          idp.providerConfig({
            claims: { email: 'email' },
            targetAudiences: ['orders', 'billing'],
            scopes: ['orders:read', 'orders:write'],
            tokenTtlS: 600,
            jwksStaleS: 0,
            ...providerOverrides,
          }),
        ],
        clients: [
          {
            id: 'svc-a',
            secretHash: hashSecret('secret-a'),
            grants: ['client_credentials', 'token_exchange'],
            audiences: ['orders', 'inventory'],
            scopes: ['orders:read'],
            tokenTtlS: 300,
          },
          { id: 'svc-b', secretHash: hashSecret('secret-b'), audiences: ['orders'] },
        ],
      },
      3600,
    );
    const provider = config.providers[0]!;
    return new TokenService({
      issuer: () => ISSUER,
      providers: [
        {
          config: provider,
          jwks: new RemoteJwks({
            provider: 'acme',
            source: { jwksUri: idp.jwksUri },
            fetchJson,
            clock: { now: () => Date.now() },
            cacheMaxAgeMs: 300_000,
            refetchCooldownMs: 30_000,
            staleMaxMs: 0,
            timeoutMs: 1000,
            log: silentLogger(),
          }),
        },
      ],
      clients: config.clients,
      signer,
      activeKey: () => key,
      clock: { now: () => Date.now() },
      skewS: 60,
      defaultTtlS: 900,
    });
  }

  beforeEach(() => {
    fetchJson = sinon.stub().resolves({ keys: [idp.publicJwk] });
    service = makeService();
  });

  const verify = (token: string) =>
    jwtVerify(token, createLocalJWKSet({ keys: [key.publicKey.jwk as unknown as JWK] }), {
      issuer: ISSUER,
      algorithms: ['ES256'],
    });
  const exchangeForm = (subjectToken: string, extra: Record<string, string> = {}) =>
    new URLSearchParams({
      grant_type: GRANT_TOKEN_EXCHANGE,
      subject_token: subjectToken,
      subject_token_type: JWT_TYPE,
      ...extra,
    });
  const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
  /** The OAuthError a request is refused with, or 'issued'. */
  async function outcome(
    form: URLSearchParams,
    authorization?: string,
    decision: TokenDecision = {},
  ): Promise<OAuthError | 'issued'> {
    try {
      await service.handle(form, authorization, decision);
      return 'issued';
    } catch (err) {
      if (err instanceof OAuthError) return err;
      throw err;
    }
  }
  const refusal = async (form: URLSearchParams, authorization?: string, decision?: TokenDecision) => {
    const result = await outcome(form, authorization, decision);
    return result === 'issued' ? result : result.code;
  };
  const reason = async (form: URLSearchParams, authorization?: string) => {
    const result = await outcome(form, authorization);
    return result === 'issued' ? result : result.message;
  };

  it('exchanges a provider token for an internal one with mapped subject and claims', async () => {
    const subject = await idp.sign({ sub: 'u1', email: 'u1@acme.test', aud: 'token-exchange' });
    const response = await service.handle(exchangeForm(subject, { audience: 'billing' }), undefined);
    expect(response).to.include({
      issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      token_type: 'Bearer',
      expires_in: 600,
    });
    const { payload, protectedHeader } = await verify(response.access_token);
    expect(protectedHeader).to.deep.equal({ alg: 'ES256', kid: key.kid, typ: 'at+jwt' });
    expect(payload).to.include({
      sub: 'acme|u1',
      email: 'u1@acme.test',
      idp: 'acme',
      aud: 'billing',
      iss: ISSUER,
    });
    expect(payload.exp! - payload.iat!).to.equal(600);
    expect(payload.nbf).to.equal(payload.iat);
    expect(payload.jti).to.be.a('string');
  });

  it('names the provider as client_id (RFC 9068) when no client authenticated the exchange', async () => {
    const subject = await idp.sign({ sub: 'u1', aud: 'token-exchange' });
    const response = await service.handle(exchangeForm(subject), undefined);
    expect((await verify(response.access_token)).payload).to.include({ client_id: 'idp:acme' });
  });

  it('refuses an unauthenticated exchange when the provider requires client authentication', async () => {
    service = makeService({ requireClientAuthentication: true });
    const subject = await idp.sign({ sub: 'u1', aud: 'token-exchange' });
    expect(await refusal(exchangeForm(subject))).to.equal('invalid_client');
    const response = await service.handle(exchangeForm(subject), basic('svc-a', 'secret-a'));
    expect((await verify(response.access_token)).payload).to.include({ client_id: 'svc-a' });
  });

  it('notes each decision for the audit log: what was established, never what was merely presented', async () => {
    const subject = await idp.sign({ sub: 'u1', aud: 'token-exchange' });
    const issued = {};
    const response = await service.handle(exchangeForm(subject, { scope: 'orders:read' }), undefined, issued);
    const { payload } = await verify(response.access_token);
    expect(issued).to.deep.equal({
      provider: 'acme',
      externalSubject: 'u1',
      subject: 'acme|u1',
      clientId: 'idp:acme',
      audience: 'orders',
      scope: 'orders:read',
      jti: payload.jti,
      kid: key.kid,
    });
    const refused = {};
    expect(await outcome(exchangeForm(subject, { audience: 'nope' }), undefined, refused)).to.be.instanceOf(
      OAuthError,
    );
    expect(refused).to.deep.equal({ provider: 'acme', externalSubject: 'u1', subject: 'acme|u1' });
    const forged = {};
    const forgedToken = await new SignJWT({ sub: 'u1', aud: 'token-exchange' })
      .setProtectedHeader({ alg: 'ES256', kid: idp.kid })
      .setIssuer(idp.issuer)
      .setExpirationTime('1h')
      .sign(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
    expect(await refusal(exchangeForm(forgedToken), undefined, forged)).to.equal('invalid_request');
    expect(forged).to.deep.equal({ provider: 'acme' });
    const wrongSecret = {};
    await outcome(
      new URLSearchParams({ grant_type: 'client_credentials' }),
      basic('svc-a', 'nope'),
      wrongSecret,
    );
    expect(wrongSecret).to.deep.equal({});
  });

  it('a refusal that never reached the signature check names no subject in the audit record (E3)', async () => {
    // No signing key yet: the exchange is refused before the worker could verify the subject token, so the
    // record must not carry the subject a (possibly forged) token claims.
    const forgedToken = await new SignJWT({ sub: 'admin', aud: 'token-exchange' })
      .setProtectedHeader({ alg: 'ES256', kid: idp.kid })
      .setIssuer(idp.issuer)
      .setExpirationTime('1h')
      .sign(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
    const saved = key;
    key = undefined as unknown as SigningKey;
    try {
      const decision = {};
      expect(await refusal(exchangeForm(forgedToken), undefined, decision)).to.equal(
        'temporarily_unavailable',
      );
      expect(decision).to.deep.equal({ provider: 'acme' });
    } finally {
      key = saved;
    }
  });

  it('narrows an authenticated exchange to what both the provider and the client allow', async () => {
    const subject = await idp.sign({ sub: 'u1', aud: 'token-exchange' });
    const auth = basic('svc-a', 'secret-a');
    const ok = await service.handle(exchangeForm(subject, { scope: 'orders:read' }), auth);
    expect((await verify(ok.access_token)).payload).to.include({
      aud: 'orders',
      scope: 'orders:read',
      client_id: 'svc-a',
    });
    expect(await refusal(exchangeForm(subject, { audience: 'billing' }), auth)).to.equal('invalid_target');
    expect(await refusal(exchangeForm(subject, { scope: 'orders:write' }), auth)).to.equal('invalid_scope');
    expect(await refusal(exchangeForm(subject), basic('svc-b', 'secret-b'))).to.equal('unauthorized_client');
  });

  it('issues a service token to an authenticated client', async () => {
    const response = await service.handle(
      new URLSearchParams({ grant_type: 'client_credentials', audience: 'inventory' }),
      basic('svc-a', 'secret-a'),
    );
    expect(response).to.include({ token_type: 'Bearer', expires_in: 300 });
    expect(response).not.to.have.property('issued_token_type');
    expect((await verify(response.access_token)).payload).to.include({
      sub: 'svc-a',
      client_id: 'svc-a',
      aud: 'inventory',
    });
  });

  it('never issues a token that outlives its signing key', async () => {
    const old = key;
    key = { ...key, publicKey: { ...key.publicKey, expiresAt: Date.now() + 120_000 } };
    try {
      const response = await service.handle(
        new URLSearchParams({ grant_type: 'client_credentials' }),
        basic('svc-a', 'secret-a'),
      );
      expect(response.expires_in).to.be.at.most(60);
    } finally {
      key = old;
    }
  });

  describe('refusals, each with its RFC error code', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    /** Signs ES256 under the provider's kid with a key the provider does not have. */
    const forger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const cases: [string, () => Promise<[URLSearchParams, string?]>, string][] = [
      ['no grant_type', async () => [new URLSearchParams()], 'invalid_request'],
      [
        'an unknown grant_type',
        async () => [new URLSearchParams({ grant_type: 'password' })],
        'unsupported_grant_type',
      ],
      [
        'a repeated parameter',
        async () => [
          new URLSearchParams('grant_type=client_credentials&scope=a&scope=b'),
          basic('svc-a', 'secret-a'),
        ],
        'invalid_request',
      ],
      [
        'client_credentials without client authentication',
        async () => [new URLSearchParams({ grant_type: 'client_credentials' })],
        'invalid_client',
      ],
      [
        'a wrong client secret',
        async () => [new URLSearchParams({ grant_type: 'client_credentials' }), basic('svc-a', 'wrong')],
        'invalid_client',
      ],
      [
        'HTTP Basic for one client and another client_id in the body',
        async () => [
          new URLSearchParams({ grant_type: 'client_credentials', client_id: 'svc-b' }),
          basic('svc-a', 'secret-a'),
        ],
        'invalid_request',
      ],
      [
        'an audience the client may not have',
        async () => [
          new URLSearchParams({ grant_type: 'client_credentials', audience: 'billing' }),
          basic('svc-a', 'secret-a'),
        ],
        'invalid_target',
      ],
      [
        'a missing subject_token',
        async () => [new URLSearchParams({ grant_type: GRANT_TOKEN_EXCHANGE, subject_token_type: JWT_TYPE })],
        'invalid_request',
      ],
      [
        'a missing subject_token_type',
        async () => [new URLSearchParams({ grant_type: GRANT_TOKEN_EXCHANGE, subject_token: 'x' })],
        'invalid_request',
      ],
      [
        'an unsupported subject_token_type',
        async () => [exchangeForm('x', { subject_token_type: 'urn:ietf:params:oauth:token-type:saml2' })],
        'invalid_request',
      ],
      [
        'an unsupported requested_token_type',
        async () => [
          exchangeForm(await idp.sign({ sub: 'u', aud: 'token-exchange' }), {
            requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token',
          }),
        ],
        'invalid_request',
      ],
      [
        'an actor_token without actor_token_type',
        async () => [exchangeForm(await idp.sign({ sub: 'u', aud: 'token-exchange' }), { actor_token: 'x' })],
        'invalid_request',
      ],
      [
        'an actor_token with no client authenticated (delegation needs one)',
        async () => [
          exchangeForm(await idp.sign({ sub: 'u', aud: 'token-exchange' }), {
            actor_token: 'x',
            actor_token_type: JWT_TYPE,
          }),
        ],
        'invalid_client',
      ],
      ['a malformed JWT', async () => [exchangeForm('not.a.jwt')], 'invalid_request'],
      [
        'alg none',
        async () => [
          exchangeForm(
            new UnsecuredJWT({ sub: 'u', aud: 'token-exchange' })
              .setIssuer(idp.issuer)
              .setExpirationTime('1h')
              .encode(),
          ),
        ],
        'invalid_request',
      ],
      [
        'HS256 signed with the provider’s public key',
        async () => {
          const secret = new TextEncoder().encode(JSON.stringify(idp.publicJwk));
          const forged = await new SignJWT({ sub: 'u', aud: 'token-exchange' })
            .setProtectedHeader({ alg: 'HS256', kid: idp.kid })
            .setIssuer(idp.issuer)
            .setExpirationTime('1h')
            .sign(secret);
          return [exchangeForm(forged)];
        },
        'invalid_request',
      ],
      [
        'a token signed by another key under the provider’s kid',
        async () => {
          const forged = await new SignJWT({ sub: 'u', aud: 'token-exchange' })
            .setProtectedHeader({ alg: 'RS256', kid: idp.kid })
            .setIssuer(idp.issuer)
            .setExpirationTime('1h')
            .sign(rsa.privateKey);
          return [exchangeForm(forged)];
        },
        'invalid_request',
      ],
      [
        'an untrusted issuer',
        async () => [
          exchangeForm(await idp.sign({ sub: 'u', aud: 'token-exchange', iss: 'https://evil.test' })),
        ],
        'invalid_request',
      ],
      [
        'a wrong audience',
        async () => [exchangeForm(await idp.sign({ sub: 'u', aud: 'someone-else' }))],
        'invalid_request',
      ],
      [
        'an expired token',
        async () => [
          exchangeForm(
            await idp.sign(
              { sub: 'u', aud: 'token-exchange' },
              { expiresIn: Math.floor(Date.now() / 1000) - 120 },
            ),
          ),
        ],
        'invalid_request',
      ],
      [
        'an unknown kid',
        async () => [exchangeForm(await idp.sign({ sub: 'u', aud: 'token-exchange' }, { kid: 'nope' }))],
        'invalid_request',
      ],
      [
        'a token without a subject',
        async () => [exchangeForm(await idp.sign({ aud: 'token-exchange' }))],
        'invalid_request',
      ],
    ];
    for (const [what, build, expected] of cases) {
      it(`${what}: ${expected}`, async () => {
        const [form, auth] = await build();
        expect(await refusal(form, auth)).to.equal(expected);
      });
    }

    it('a forged token learns only that its signature is invalid, never which claims or targets would pass', async () => {
      const forge = (claims: Record<string, unknown>) =>
        new SignJWT({ sub: 'u', aud: 'token-exchange', ...claims })
          .setProtectedHeader({ alg: 'ES256', kid: idp.kid })
          .setIssuer(idp.issuer)
          .setExpirationTime(typeof claims.exp === 'number' ? claims.exp : '1h')
          .sign(forger);
      const genuine = (claims: Record<string, unknown>) =>
        idp.sign(
          { sub: 'u', aud: 'token-exchange', ...claims },
          typeof claims.exp === 'number' ? { expiresIn: claims.exp } : {},
        );
      const expired = Math.floor(Date.now() / 1000) - 3600;
      const variants: [string, Record<string, unknown>, Record<string, string>, string][] = [
        ['an expired token', { exp: expired }, {}, 'subject_token has expired'],
        ['a wrong audience', { aud: 'someone-else' }, {}, 'subject_token "aud" claim check failed'],
        ['no subject', { sub: undefined }, {}, 'subject token has no usable "sub" claim'],
        ['a target not allowed', {}, { audience: 'nope' }, 'audience not allowed: nope'],
        ['a scope not allowed', {}, { scope: 'nope' }, 'scope not allowed: nope'],
      ];
      for (const [what, claims, extra, genuineReason] of variants) {
        expect(await reason(exchangeForm(await genuine(claims), extra)), `genuine, ${what}`).to.equal(
          genuineReason,
        );
        expect(await reason(exchangeForm(await forge(claims), extra)), `forged, ${what}`).to.equal(
          'subject_token signature is invalid',
        );
      }
    });

    it('a provider outage past the stale bound: temporarily_unavailable, not invalid_request', async () => {
      fetchJson.rejects(new FetchError('connection refused'));
      const subject = await idp.sign({ sub: 'u', aud: 'token-exchange' });
      expect(await refusal(exchangeForm(subject))).to.equal('temporarily_unavailable');
    });

    it('no signing key yet: temporarily_unavailable', async () => {
      const saved = key;
      key = undefined as unknown as SigningKey;
      try {
        expect(
          await refusal(
            new URLSearchParams({ grant_type: 'client_credentials' }),
            basic('svc-a', 'secret-a'),
          ),
        ).to.equal('temporarily_unavailable');
      } finally {
        key = saved;
      }
    });
  });
});
