import { expect } from 'chai';
import fc from 'fast-check';
import { constants, KeyObject, sign } from 'node:crypto';
import { createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify, type JWK } from 'jose';
import { silentLogger } from '../../../src/log.js';
import { VERIFY_ALGORITHMS, type VerifyAlg } from '../../../src/tokens/jws.js';
import { OAuthError } from '../../../src/tokens/oauth-error.js';
import { RemoteJwks } from '../../../src/tokens/remote-jwks.js';
import { generateSigningKey } from '../../../src/keys/signing-key.js';
import { SigningPool } from '../../../src/tokens/signing-pool.js';
import { GRANT_TOKEN_EXCHANGE, TokenService } from '../../../src/tokens/token-service.js';
import { parseTokensConfig } from '../../../src/tokens/tokens-config.js';

/**
 * The exchange checks a subject token's signature with node:crypto in the signing worker and its claims by jose's
 * rules on the payload it has decoded once, instead of calling jose's `jwtVerify`. This property holds the two to
 * the same answers: for validly signed tokens with claims good and bad, and for those tokens mutated in every way
 * fast-check finds (characters flipped or added anywhere, headers re-encoded with other algorithms, `none`, HMAC,
 * `crit`, other `kid`s, segments added or cut), the exchange issues a token exactly when `jwtVerify` accepts the
 * subject token, with one deliberate difference fast-check found: jose tolerates `=` padding, which RFC 7515 §2
 * leaves out of base64url, and the exchange refuses it. So: never more lenient than jose, and as lenient on
 * well-formed tokens.
 */
const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const ISSUER = 'https://idp.property.test';
const NOW = Date.UTC(2026, 10, 22, 12, 0, 0);
const SKEW_S = 30;
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

interface TestKey {
  readonly alg: VerifyAlg;
  readonly kid: string;
  readonly signer: KeyObject;
  readonly jwk: JWK;
}

/**
 * Signs a JWS signing input by hand with node:crypto, so that headers jose's signers refuse (unknown `crit`) can
 * be signed too. jose's `jwtVerify` is the oracle here, so a mistake in this table shows up as a disagreement.
 */
function signWith(alg: VerifyAlg, key: KeyObject, input: string): string {
  const digest = alg === 'EdDSA' ? null : `sha${alg.slice(2)}`;
  const options = alg.startsWith('ES')
    ? { key, dsaEncoding: 'ieee-p1363' as const }
    : alg.startsWith('PS')
      ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }
      : key;
  return sign(digest, Buffer.from(input), options).toString('base64url');
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('subject token verification agrees with jose jwtVerify (property)', function () {
  this.timeout(120_000);
  const keys: TestKey[] = [];
  /** Signs with a key the provider does not publish, under a published kid. */
  let impostor: TestKey;
  let service: TokenService;
  const signer = new SigningPool({ workers: 0 });

  before(async () => {
    for (const alg of VERIFY_ALGORITHMS) {
      const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
      const kid = `key-${alg}`;
      const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
      keys.push({ alg, kid, signer: KeyObject.from(privateKey), jwk });
    }
    const other = await generateKeyPair('ES256');
    impostor = { alg: 'ES256', kid: 'key-ES256', signer: KeyObject.from(other.privateKey), jwk: {} };
    const config = parseTokensConfig(
      {
        providers: [
          {
            name: 'prop',
            issuer: ISSUER,
            jwksUri: 'http://127.0.0.1:1/jwks',
            audiences: ['exchange'],
            algorithms: [...VERIFY_ALGORITHMS],
            targetAudiences: ['orders'],
          },
        ],
      },
      3600,
    );
    const provider = config.providers[0]!;
    const signingKey = await generateSigningKey(
      'ES256',
      NOW,
      { activeMs: 3_600_000, tokenMaxTtlMs: 3_600_000, skewMs: 60_000 },
      'r1',
    );
    service = new TokenService({
      issuer: () => 'https://tokens.property.test',
      providers: [
        {
          config: provider,
          jwks: new RemoteJwks({
            provider: 'prop',
            source: { jwksUri: 'http://127.0.0.1:1/jwks' },
            fetchJson: () => Promise.resolve({ keys: keys.map((k) => k.jwk) }),
            clock: { now: () => NOW },
            cacheMaxAgeMs: 3_600_000,
            refetchCooldownMs: 3_600_000,
            staleMaxMs: 3_600_000,
            timeoutMs: 1000,
            log: silentLogger(),
          }),
        },
      ],
      clients: [],
      signer,
      activeKey: () => signingKey,
      clock: { now: () => NOW },
      skewS: SKEW_S,
      defaultTtlS: 300,
    });
  });
  after(() => signer.close());

  async function joseAccepts(token: string): Promise<boolean> {
    try {
      await jwtVerify(token, createLocalJWKSet({ keys: keys.map((k) => k.jwk) }), {
        issuer: ISSUER,
        audience: 'exchange',
        algorithms: [...VERIFY_ALGORITHMS],
        clockTolerance: SKEW_S,
        requiredClaims: ['exp'],
        currentDate: new Date(NOW),
      });
      return true;
    } catch {
      return false;
    }
  }

  async function exchangeAccepts(token: string): Promise<boolean> {
    const form = new URLSearchParams({
      grant_type: GRANT_TOKEN_EXCHANGE,
      subject_token: token,
      subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    });
    try {
      await service.handle(form, undefined);
      return true;
    } catch (err) {
      // A refusal must be the RFC's, never an internal error.
      expect(err).to.be.instanceOf(OAuthError);
      expect((err as OAuthError).code).to.equal('invalid_request');
      return false;
    }
  }

  const nowS = Math.floor(NOW / 1000);
  const claims = fc.record(
    {
      sub: fc.constant('user-1'),
      iss: fc.oneof(
        { arbitrary: fc.constant(ISSUER), weight: 4 },
        { arbitrary: fc.constant('https://other.test'), weight: 1 },
      ),
      aud: fc.oneof(
        { arbitrary: fc.constantFrom<string | string[]>('exchange', ['x', 'exchange']), weight: 4 },
        { arbitrary: fc.constant('other'), weight: 1 },
      ),
      exp: fc.integer({ min: nowS - 120, max: nowS + 3600 }),
      nbf: fc.integer({ min: nowS - 60, max: nowS + 45 }),
      iat: fc.integer({ min: nowS - 60, max: nowS + 60 }),
    },
    { requiredKeys: ['sub', 'iss', 'aud'] },
  );

  const signed = fc
    .record({
      keyIndex: fc.nat({ max: VERIFY_ALGORITHMS.length - 1 }),
      claims,
      impostor: fc.nat({ max: 4 }).map((n) => n === 0),
      // Header parameters a provider might sign: critical extensions jose knows and does not, no kid.
      extra: fc.constantFrom<Record<string, unknown>>(
        {},
        {},
        {},
        {},
        {},
        {},
        { typ: 'JWT' },
        { crit: ['b64'], b64: true },
        { crit: ['b64'], b64: false },
        { crit: ['b64'] },
        { crit: ['exp'], exp: 1 },
        { crit: [] },
        { b64: false },
        { kid: undefined },
      ),
    })
    .map(({ keyIndex, claims: payload, impostor: forged, extra }) => {
      const key = forged ? impostor : keys[keyIndex]!;
      // The impostor signs under a published kid of its algorithm.
      const header = JSON.parse(JSON.stringify({ alg: key.alg, kid: `key-${key.alg}`, ...extra })) as object;
      const input = `${b64(header)}.${b64(payload)}`;
      return `${input}.${signWith(key.alg, key.signer, input)}`;
    });

  type Mutation = (token: string) => string;
  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    { arbitrary: fc.constant<Mutation>((t) => t), weight: 8 },
    fc.record({ at: fc.nat(), ch: fc.constantFrom(...`${B64URL}.=+/ `) }).map(({ at, ch }) => (t: string) => {
      const i = at % t.length;
      return t.slice(0, i) + ch + t.slice(i + 1);
    }),
    // A character added: a segment whose length leaves 1 modulo 4 is no base64url at all, though Buffer decodes it.
    fc.record({ at: fc.nat(), ch: fc.constantFrom(...B64URL) }).map(({ at, ch }) => (t: string) => {
      const i = at % (t.length + 1);
      return t.slice(0, i) + ch + t.slice(i);
    }),
    fc.constantFrom(...B64URL).map((ch) => (t: string) => `${t}${ch}`),
    fc
      .record({
        alg: fc.constantFrom('none', 'HS256', 'ES256', 'RS256', 'PS256', 'EdDSA', 'ES384', 'ES512'),
        kid: fc.option(
          fc.constantFrom(...VERIFY_ALGORITHMS.map((a) => `key-${a}`), 'nope', 7 as unknown as string),
        ),
        crit: fc.boolean(),
      })
      .map(({ alg, kid, crit }) => (t: string) => {
        const header: Record<string, unknown> = { alg };
        if (kid !== null) header.kid = kid;
        if (crit) Object.assign(header, { crit: ['b64'], b64: true });
        return `${b64(header)}${t.slice(t.indexOf('.'))}`;
      }),
    fc.constant<Mutation>((t) => `${t}.extra`),
    fc.constant<Mutation>((t) => t.slice(0, t.lastIndexOf('.') + 1)),
    fc.constant<Mutation>((t) => t.replace(/\.[^.]*$/, '.')),
    fc.constant<Mutation>((t) => `${t}==`),
    fc.constant<Mutation>((t) => {
      // alg=none with the original payload and no signature.
      return `${b64({ alg: 'none' })}.${t.split('.')[1] ?? ''}.`;
    }),
  );

  it('issues a token exactly when jwtVerify accepts a well-formed subject token, never when it refuses', async () => {
    let accepted = 0;
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(signed, fc.array(mutation, { maxLength: 2 }), async (original, mutations) => {
        const token = mutations.reduce((t, m) => m(t), original);
        const jose = await joseAccepts(token);
        const expected = jose && COMPACT.test(token);
        expect(await exchangeAccepts(token), token).to.equal(expected);
        if (expected) accepted++;
        else refused++;
      }),
      { numRuns: 1000 },
    );
    // Both outcomes were exercised, so agreement is not vacuous.
    expect(accepted).to.be.greaterThan(50);
    expect(refused).to.be.greaterThan(50);
  });

  it('refuses, as jwtVerify does, every algorithm’s token with one character added to a segment', async () => {
    const nowS = Math.floor(NOW / 1000);
    for (const key of keys) {
      const input = `${b64({ alg: key.alg, kid: key.kid })}.${b64({ sub: 'user-1', iss: ISSUER, aud: 'exchange', exp: nowS + 60 })}`;
      const token = `${input}.${signWith(key.alg, key.signer, input)}`;
      expect(await exchangeAccepts(token), key.alg).to.equal(true);
      for (const at of [input.indexOf('.'), input.length, token.length]) {
        for (const ch of ['A', 'Q', 'g', 'w']) {
          const grown = token.slice(0, at) + ch + token.slice(at);
          expect(await joseAccepts(grown), `${key.alg} ${at} ${ch}`).to.equal(false);
          expect(await exchangeAccepts(grown), `${key.alg} ${at} ${ch}`).to.equal(false);
        }
      }
    }
  });
});
