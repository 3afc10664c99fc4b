import { expect } from 'chai';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, jwtVerify, SignJWT, type JWK } from 'jose';
import sinon from 'sinon';
import { silentLogger } from '../../../src/log.js';
import { ClaimRules } from '../../../src/tokens/claim-rules.js';
import { OAuthError } from '../../../src/tokens/oauth-error.js';
import { RemoteJwks } from '../../../src/tokens/remote-jwks.js';
import { generateSigningKey, type SigningKey } from '../../../src/keys/signing-key.js';
import { SigningPool } from '../../../src/tokens/signing-pool.js';
import {
  CEL_UNVERIFIED_MAX_CHARS,
  GRANT_TOKEN_EXCHANGE,
  TokenService,
} from '../../../src/tokens/token-service.js';
import { parseTokensConfig } from '../../../src/tokens/tokens-config.js';
import { TestIdp } from '../../support/idp.js';

const ISSUER = 'https://tokens.internal.test';

/** The provider of the README's "Claim rules in CEL" example, as written there. */
function readmeExample(): Record<string, unknown> {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('### Claim rules in CEL'));
  const json = /```json\n([\s\S]*?)\n```/.exec(section)?.[1];
  return JSON.parse(json ?? '') as Record<string, unknown>;
}

describe('token service – CEL claim rules', () => {
  let idp: TestIdp;
  let key: SigningKey;
  let service: TokenService;
  // Made in before(): closed in after(), so a second run of this file needs a new one.
  let signer: SigningPool;

  before(async () => {
    signer = new SigningPool({ workers: 0 });
    idp = await new TestIdp('idp-cel').start();
    key = await generateSigningKey(
      'ES256',
      Date.now(),
      { activeMs: 3_600_000, tokenMaxTtlMs: 3_600_000, skewMs: 60_000 },
      'r1',
    );
    // The README's provider, pointed at the test provider (its issuer and keys); its rules as written.
    const example = readmeExample();
    delete example.discovery;
    const config = parseTokensConfig(
      { providers: [{ ...example, issuer: idp.issuer, jwksUri: idp.jwksUri, algorithms: ['ES256'] }] },
      3600,
    );
    const provider = config.providers[0]!;
    service = new TokenService({
      issuer: () => ISSUER,
      providers: [
        {
          config: provider,
          jwks: new RemoteJwks({
            provider: provider.name,
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
      clients: [],
      signer,
      activeKey: () => key,
      clock: { now: () => Date.now() },
      skewS: 60,
      defaultTtlS: 900,
    });
  });
  after(async () => {
    await signer.close();
    await idp.stop();
  });

  const form = (subjectToken: string) =>
    new URLSearchParams({
      grant_type: GRANT_TOKEN_EXCHANGE,
      subject_token: subjectToken,
      subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    });
  async function refusal(subjectToken: string): Promise<OAuthError> {
    try {
      await service.handle(form(subjectToken), undefined);
    } catch (err) {
      if (err instanceof OAuthError) return err;
      throw err;
    }
    throw new Error('issued');
  }
  const good = { sub: 'u1', aud: 'token-exchange', email: 'u1@acme.example', email_verified: true };

  it('the README example: a token that holds every rule gets the mapped claims in its new token', async () => {
    const subject = await idp.sign({ ...good, groups: ['orders-admin', 'hr'] });
    const response = await service.handle(form(subject), undefined);
    const { payload } = await jwtVerify(
      response.access_token,
      createLocalJWKSet({ keys: [key.publicKey.jwk as unknown as JWK] }),
      { issuer: ISSUER },
    );
    expect(payload).to.include({ sub: 'u1', login: 'u1', tenant: 'default' });
    expect(payload.roles).to.deep.equal(['orders-admin']);
  });

  it('the README example: a token that breaks a rule is refused with invalid_request and its message', async () => {
    const unverified = await refusal(await idp.sign({ ...good, email_verified: false }));
    expect(unverified).to.include({ code: 'invalid_request', message: 'the email address is not verified' });
    const elsewhere = await refusal(await idp.sign({ ...good, email: 'u1@other.example' }));
    expect(elsewhere).to.include({ code: 'invalid_request', message: 'only acme.example accounts' });
    // A claim the rule reads is missing: the rule does not hold.
    const noFlag: Record<string, unknown> = { ...good };
    delete noFlag.email_verified;
    expect(await refusal(await idp.sign(noFlag))).to.include({
      message: 'the email address is not verified',
    });
  });

  const forger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const forge = (claims: Record<string, unknown>) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid: idp.kid })
      .setIssuer(idp.issuer)
      .setExpirationTime('1h')
      .sign(forger);
  const INVALID_SIGNATURE = { code: 'invalid_request', message: 'subject_token signature is invalid' };

  it('a forged token that breaks a rule learns only that its signature is invalid', async () => {
    expect(await refusal(await forge({ ...good, email_verified: false }))).to.include(INVALID_SIGNATURE);
  });

  describe('a large subject token: its signature is verified before the rules walk its claims', () => {
    let check: sinon.SinonSpy;
    let validate: sinon.SinonSpy;
    beforeEach(() => {
      check = sinon.spy(signer, 'check');
      validate = sinon.spy(ClaimRules.prototype, 'validate');
    });
    afterEach(() => sinon.restore());
    /** Enough groups to take the token past what rules may see unverified. */
    const many = Array.from({ length: 1000 }, (_, i) => `group-${i}`);

    it('a forged large token is refused as forged and no rule runs on its claims', async () => {
      const forged = await forge({ ...good, groups: many });
      expect(forged.split('.').slice(0, 2).join('.').length).to.be.above(CEL_UNVERIFIED_MAX_CHARS);
      expect(await refusal(forged)).to.include(INVALID_SIGNATURE);
      expect(validate.called).to.equal(false);
      expect(check.callCount).to.equal(1);
    });

    it('a genuine large token is verified first, then held to the rules: issued when they hold, refused when not', async () => {
      const issued = await service.handle(form(await idp.sign({ ...good, groups: many })), undefined);
      expect(issued.access_token).to.be.a('string');
      expect(check.calledBefore(validate)).to.equal(true);
      const broken = await refusal(await idp.sign({ ...good, email_verified: false, groups: many }));
      expect(broken).to.include({ message: 'the email address is not verified' });
      // Once per token: the refusal does not check the signature a second time.
      expect(check.callCount).to.equal(2);
    });

    it('a token of ordinary size takes no extra step: the signing task checks its signature', async () => {
      const issued = await service.handle(form(await idp.sign({ ...good, groups: ['hr'] })), undefined);
      expect(issued.access_token).to.be.a('string');
      expect(validate.callCount).to.equal(1);
      expect(check.called).to.equal(false);
    });
  });
});
