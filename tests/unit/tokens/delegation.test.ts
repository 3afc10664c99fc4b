import { expect } from 'chai';
import { generateKeyPairSync } from 'node:crypto';
import { createLocalJWKSet, jwtVerify, SignJWT, type JWK, type JWTPayload } from 'jose';
import sinon from 'sinon';
import { silentLogger } from '../../../src/log.js';
import type { PublicKey } from '../../../src/keys/public-key.js';
import { hashSecret } from '../../../src/tokens/client-auth.js';
import { OAuthError } from '../../../src/tokens/oauth-error.js';
import { RemoteJwks } from '../../../src/tokens/remote-jwks.js';
import { generateSigningKey, type SigningKey } from '../../../src/keys/signing-key.js';
import { SigningPool } from '../../../src/tokens/signing-pool.js';
import { GRANT_TOKEN_EXCHANGE, TokenService, type Provider } from '../../../src/tokens/token-service.js';
import { parseTokensConfig } from '../../../src/tokens/tokens-config.js';
import { TestIdp } from '../../support/idp.js';

const ISSUER = 'https://tokens.internal.test';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const ACCESS_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

describe('token service – delegation (RFC 8693 §2.1, §4.1, §4.4)', () => {
  /** Its tokens may be delegated and may act. */
  let acme: TestIdp;
  /** Trusted for exchanges, not for delegation. */
  let other: TestIdp;
  let key: SigningKey;
  let previousKey: SigningKey;
  let service: TokenService;
  let ownKey: sinon.SinonStub<[string], Promise<PublicKey | undefined>>;
  // Made in before(): closed in after(), so a second run of this file needs a new one.
  let signer: SigningPool;
  const forger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

  const jwks = (idp: TestIdp, name: string) =>
    new RemoteJwks({
      provider: name,
      source: { jwksUri: idp.jwksUri },
      fetchJson: () => Promise.resolve({ keys: [idp.publicJwk] }),
      clock: { now: () => Date.now() },
      cacheMaxAgeMs: 300_000,
      refetchCooldownMs: 30_000,
      staleMaxMs: 0,
      timeoutMs: 1000,
      log: silentLogger(),
    });

  before(async () => {
    signer = new SigningPool({ workers: 0 });
    acme = await new TestIdp('acme-key').start();
    other = await new TestIdp('other-key').start();
    const lifetime = { activeMs: 3_600_000, tokenMaxTtlMs: 3_600_000, skewMs: 60_000 };
    key = await generateSigningKey('ES256', Date.now(), lifetime, 'r1');
    previousKey = await generateSigningKey('ES256', Date.now(), lifetime, 'r2');
    const config = parseTokensConfig(
      {
        providers: [
          acme.providerConfig({ allowDelegation: true, targetAudiences: ['orders'] }),
          other.providerConfig({ name: 'other', subjectPrefix: 'other|' }),
        ],
        clients: [
          {
            id: 'agent-svc',
            secretHash: hashSecret('secret-a'),
            grants: ['client_credentials', 'token_exchange'],
            audiences: ['orders', 'inventory'],
            mayDelegate: true,
          },
          {
            id: 'helper-svc',
            secretHash: hashSecret('secret-h'),
            grants: ['client_credentials', 'token_exchange'],
            audiences: ['orders'],
            mayDelegate: true,
          },
          {
            id: 'plain-svc',
            secretHash: hashSecret('secret-p'),
            grants: ['token_exchange'],
            audiences: ['orders'],
          },
        ],
      },
      3600,
    );
    const providers: Provider[] = [
      { config: config.providers[0]!, jwks: jwks(acme, 'acme') },
      { config: config.providers[1]!, jwks: jwks(other, 'other') },
    ];
    ownKey = sinon.stub<[string], Promise<PublicKey | undefined>>().resolves(undefined);
    service = new TokenService({
      issuer: () => ISSUER,
      providers,
      clients: config.clients,
      signer,
      activeKey: () => key,
      clock: { now: () => Date.now() },
      skewS: 60,
      defaultTtlS: 900,
      ownKey,
    });
  });
  after(async () => {
    await signer.close();
    await acme.stop();
    await other.stop();
  });
  beforeEach(() => {
    ownKey.reset();
    ownKey.resolves(undefined);
  });

  const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
  const AGENT = basic('agent-svc', 'secret-a');
  const form = (subjectToken: string, actorToken?: string, extra: Record<string, string> = {}) =>
    new URLSearchParams({
      grant_type: GRANT_TOKEN_EXCHANGE,
      subject_token: subjectToken,
      subject_token_type: JWT_TYPE,
      ...(actorToken === undefined ? {} : { actor_token: actorToken, actor_token_type: JWT_TYPE }),
      ...extra,
    });
  const user = (claims: JWTPayload = {}) => acme.sign({ sub: 'u1', aud: 'token-exchange', ...claims });
  const agent = (claims: JWTPayload = {}) => acme.sign({ sub: 'agent-7', aud: 'token-exchange', ...claims });
  const forge = (claims: JWTPayload) =>
    new SignJWT({ aud: 'token-exchange', ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: acme.kid })
      .setIssuer(acme.issuer)
      .setExpirationTime('1h')
      .sign(forger);

  async function issued(f: URLSearchParams, authorization = AGENT): Promise<JWTPayload> {
    const response = await service.handle(f, authorization);
    const { payload } = await jwtVerify(
      response.access_token,
      createLocalJWKSet({ keys: [key.publicKey.jwk as unknown as JWK] }),
      { issuer: ISSUER },
    );
    return payload;
  }
  /** The refusal of `f`, presented with `authorization` (AGENT's unless given; null: no client). */
  async function refusal(f: URLSearchParams, authorization: string | null = AGENT): Promise<OAuthError> {
    try {
      await service.handle(f, authorization ?? undefined);
    } catch (err) {
      if (err instanceof OAuthError) return err;
      throw err;
    }
    throw new Error('issued');
  }
  /** A service token of ours for `client` (client_credentials). */
  async function ownToken(client: string, secret: string): Promise<string> {
    const response = await service.handle(
      new URLSearchParams({ grant_type: 'client_credentials' }),
      basic(client, secret),
    );
    return response.access_token;
  }

  it('an actor token from a provider: the new token is the subject’s, with act naming the actor', async () => {
    const payload = await issued(form(await user(), await agent()));
    expect(payload).to.include({ sub: 'acme|u1', client_id: 'agent-svc' });
    expect(payload.act).to.deep.equal({ sub: 'agent-7', iss: acme.issuer });
  });

  it('an actor token we issued, presented by the client it was issued to, acts too', async () => {
    const payload = await issued(form(await user(), await ownToken('agent-svc', 'secret-a')));
    expect(payload.act).to.deep.equal({ sub: 'agent-svc', iss: ISSUER });
  });

  it('an actor token we signed with an earlier key is checked against the key store', async () => {
    const old = key;
    key = previousKey;
    const token = await ownToken('agent-svc', 'secret-a');
    key = old;
    ownKey.withArgs(previousKey.kid).resolves(previousKey.publicKey);
    const payload = await issued(form(await user(), token));
    expect(payload.act).to.deep.equal({ sub: 'agent-svc', iss: ISSUER });
  });

  it('a subject token that was itself delegated keeps its act nested inside the new one', async () => {
    const prior = { sub: 'first-agent', iss: 'https://elsewhere.example' };
    const payload = await issued(form(await user({ act: prior }), await agent()));
    expect(payload.act).to.deep.equal({ sub: 'agent-7', iss: acme.issuer, act: prior });
    // Without an actor the subject token's act is kept as it is.
    const plain = await issued(form(await user({ act: prior })));
    expect(plain.act).to.deep.equal(prior);
  });

  it('may_act that names the actor (sub, and iss when given) lets it act', async () => {
    const bySub = await issued(form(await user({ may_act: { sub: 'agent-7' } }), await agent()));
    expect(bySub.act).to.deep.include({ sub: 'agent-7' });
    const bySubAndIss = await issued(
      form(await user({ may_act: { sub: 'agent-7', iss: acme.issuer } }), await agent()),
    );
    expect(bySubAndIss.act).to.deep.include({ sub: 'agent-7' });
  });

  it('may_act that names someone else refuses the exchange with invalid_request', async () => {
    for (const mayAct of [{ sub: 'someone-else' }, { sub: 'agent-7', iss: 'https://other.example' }]) {
      const err = await refusal(form(await user({ may_act: mayAct }), await agent()));
      expect(err).to.include({
        code: 'invalid_request',
        message: 'subject_token "may_act" does not name the actor',
      });
    }
    expect(await refusal(form(await user({ may_act: 'agent-7' }), await agent()))).to.include({
      message: 'subject_token "may_act" claim is malformed',
    });
  });

  it('a forged actor token is refused, and learns nothing about may_act', async () => {
    const forged = await forge({ sub: 'agent-7' });
    expect(await refusal(form(await user(), forged))).to.include({
      code: 'invalid_request',
      message: 'actor_token signature is invalid',
    });
    expect(await refusal(form(await user({ may_act: { sub: 'nobody' } }), forged))).to.include({
      message: 'actor_token signature is invalid',
    });
    // A forged subject token with a genuine actor token is the subject's forgery.
    expect(await refusal(form(await forge({ sub: 'u1' }), await agent()))).to.include({
      message: 'subject_token signature is invalid',
    });
  });

  it('an actor token that is itself delegated is refused: the party it names did not act', async () => {
    const delegated = await service.handle(form(await user(), await agent()), AGENT);
    expect(await refusal(form(await user(), delegated.access_token))).to.include({
      code: 'invalid_request',
      message: 'actor_token is itself a delegated token (it has "act")',
    });
  });

  it('an actor token we issued to another client is refused', async () => {
    const helperToken = await ownToken('helper-svc', 'secret-h');
    expect(await refusal(form(await user(), helperToken))).to.include({
      code: 'invalid_request',
      message: 'actor_token was issued to another client',
    });
  });

  it('an expired or untrusted actor token is refused with invalid_request', async () => {
    const expired = await acme.sign({ sub: 'agent-7', aud: 'token-exchange' }, { expiresIn: -600 });
    expect(await refusal(form(await user(), expired))).to.include({
      code: 'invalid_request',
      message: 'actor_token has expired',
    });
    // Signed with a key of ours that is neither active nor in the key store (ownKey answers undefined).
    const current = key;
    key = previousKey;
    const unknownKid = await ownToken('agent-svc', 'secret-a');
    key = current;
    expect(await refusal(form(await user(), unknownKid))).to.include({
      message: 'actor_token key is unknown',
    });
  });

  it('delegation is refused for a provider that does not allow it, as subject or as actor', async () => {
    const otherUser = await other.sign({ sub: 'u9', aud: 'token-exchange' });
    expect(await refusal(form(otherUser, await agent()))).to.include({
      code: 'invalid_request',
      message: 'subject_token issuer does not allow delegation',
    });
    expect(await refusal(form(await user(), otherUser))).to.include({
      code: 'invalid_request',
      message: 'actor_token issuer does not allow delegation',
    });
  });

  it('delegation is refused for a client not allowed to delegate, or with no client', async () => {
    const f = form(await user(), await agent());
    expect(await refusal(f, basic('plain-svc', 'secret-p'))).to.include({ code: 'unauthorized_client' });
    expect(await refusal(f, null)).to.include({ code: 'invalid_client' });
  });

  it('actor_token and actor_token_type must come together, of a supported type', async () => {
    const subject = await user();
    const actor = await agent();
    const cases: [Record<string, string>, string][] = [
      [{ actor_token: actor }, 'actor_token_type is required with actor_token'],
      [{ actor_token_type: JWT_TYPE }, 'actor_token_type must come with a non-empty actor_token'],
      [
        { actor_token: actor, actor_token_type: 'urn:ietf:params:oauth:token-type:saml2' },
        'actor_token_type is not supported',
      ],
    ];
    for (const [extra, message] of cases) {
      expect(await refusal(form(subject, undefined, extra))).to.include({ code: 'invalid_request', message });
    }
    const accessTyped = await issued(
      form(subject, undefined, { actor_token: actor, actor_token_type: ACCESS_TYPE }),
    );
    expect(accessTyped.act).to.deep.include({ sub: 'agent-7' });
  });
});
