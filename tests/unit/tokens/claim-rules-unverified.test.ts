import { expect } from 'chai';
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT, type JWTPayload } from 'jose';
import sinon from 'sinon';
import { generateSigningKey, type SigningKey } from '../../../src/keys/signing-key.js';
import { silentLogger } from '../../../src/log.js';
import { ClaimRules } from '../../../src/tokens/claim-rules.js';
import { hashSecret } from '../../../src/tokens/client-auth.js';
import { OAuthError } from '../../../src/tokens/oauth-error.js';
import { RemoteJwks } from '../../../src/tokens/remote-jwks.js';
import { SigningPool } from '../../../src/tokens/signing-pool.js';
import {
  CEL_UNVERIFIED_MAX_CHARS,
  GRANT_TOKEN_EXCHANGE,
  TokenService,
} from '../../../src/tokens/token-service.js';
import { parseTokensConfig } from '../../../src/tokens/tokens-config.js';
import { TestIdp } from '../../support/idp.js';

const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

describe('token service – CEL rules see a large subject token only once its signature holds (E5)', () => {
  let idp: TestIdp;
  let key: SigningKey;
  let signer: SigningPool;
  let service: TokenService;
  let check: sinon.SinonSpy;
  let validate: sinon.SinonSpy;
  const forger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

  before(async () => {
    signer = new SigningPool({ workers: 0 });
    idp = await new TestIdp('rules-key').start();
    key = await generateSigningKey(
      'ES256',
      Date.now(),
      { activeMs: 3_600_000, tokenMaxTtlMs: 3_600_000, skewMs: 60_000 },
      'r1',
    );
    const config = parseTokensConfig(
      {
        providers: [
          idp.providerConfig({
            claimValidationRules: [
              { expression: "claims.groups.exists(g, g == 'staff')", message: 'staff only' },
            ],
          }),
        ],
        clients: [
          {
            id: 'svc',
            secretHash: hashSecret('secret'),
            grants: ['token_exchange'],
            audiences: ['orders'],
          },
        ],
      },
      3600,
    );
    service = new TokenService({
      issuer: () => 'https://tokens.internal.test',
      providers: [
        {
          config: config.providers[0]!,
          jwks: new RemoteJwks({
            provider: 'acme',
            source: { jwksUri: idp.jwksUri },
            fetchJson: () => Promise.resolve({ keys: [idp.publicJwk] }),
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
      ownKey: () => Promise.resolve(undefined),
    });
  });
  after(async () => {
    await signer.close();
    await idp.stop();
  });
  beforeEach(() => {
    check = sinon.spy(signer, 'check');
    validate = sinon.spy(ClaimRules.prototype, 'validate');
  });
  afterEach(() => sinon.restore());

  /** Enough groups to take the token past the size CEL may see unverified. */
  const many = Array.from({ length: 1000 }, (_, i) => `group-${i}`);
  const claims = (groups: string[]): JWTPayload => ({ sub: 'u1', aud: 'token-exchange', groups });
  const forge = (payload: JWTPayload) =>
    new SignJWT(payload)
      .setProtectedHeader({ alg: 'ES256', kid: idp.kid })
      .setIssuer(idp.issuer)
      .setExpirationTime('1h')
      .sign(forger);
  const exchange = (subjectToken: string) =>
    service.handle(
      new URLSearchParams({
        grant_type: GRANT_TOKEN_EXCHANGE,
        subject_token: subjectToken,
        subject_token_type: JWT_TYPE,
      }),
      `Basic ${Buffer.from('svc:secret').toString('base64')}`,
    );
  const refusal = (subjectToken: string) =>
    exchange(subjectToken).then(
      () => expect.fail('issued'),
      (err: unknown) => {
        expect(err).to.be.instanceOf(OAuthError);
        return (err as OAuthError).message;
      },
    );

  it('a forged large token is refused as forged and no rule runs on its claims', async () => {
    const token = await forge(claims([...many, 'staff']));
    expect(token.split('.').slice(0, 2).join('.').length).to.be.above(CEL_UNVERIFIED_MAX_CHARS);
    expect(await refusal(token)).to.equal('subject_token signature is invalid');
    expect(validate.called).to.equal(false);
    expect(check.callCount).to.equal(1);
  });

  it('a genuine large token is verified first, then held to the rules: issued when they hold, refused when not', async () => {
    const good = await exchange(await idp.sign(claims([...many, 'staff'])));
    expect(good.access_token).to.be.a('string');
    expect(check.calledBefore(validate)).to.equal(true);
    expect(await refusal(await idp.sign(claims(many)))).to.equal('staff only');
  });

  it('a token of ordinary size takes no extra step: rules first, and the signature is checked by the signing task', async () => {
    const issued = await exchange(await idp.sign(claims(['staff'])));
    expect(issued.access_token).to.be.a('string');
    expect(validate.callCount).to.equal(1);
    expect(check.called).to.equal(false);
    // A forged one breaking a rule still learns only that it is forged (checked once, for the refusal).
    expect(await refusal(await forge(claims(['guest'])))).to.equal('subject_token signature is invalid');
    expect(check.callCount).to.equal(1);
  });
});
