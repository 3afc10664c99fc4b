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
 * the same answers: for validly signed tokens with claims good and bad, headers jose reads and refuses (`crit`
 * extensions, a protected header that is not UTF-8), keys published in every shape jose judges (`use`,
 * `key_ops`, `ext`, without `kid`, without `alg`, with a private member), a provider whose algorithm allow-list
 * is narrower than its keys, and those tokens mutated in every way fast-check finds (characters flipped or added
 * anywhere, characters outside base64url inserted anywhere, headers re-encoded with other algorithms, `none`,
 * HMAC, `crit`, other `kid`s, segments added or cut), the exchange issues a token exactly when `jwtVerify`
 * accepts the subject token, with one deliberate difference: jose tolerates `=` padding and whitespace in a
 * signature (its base64url decoder skips them), which RFC 7515 §2 leaves out of base64url, and the exchange
 * refuses both. So: never more lenient than jose, and as lenient on well-formed tokens.
 *
 * The run count and seed are fixed (`PROPERTY_SEED` explores another), and the test counts how often each kind of
 * input occurred, so a generator change that quietly stops producing a case fails here rather than passing.
 */
const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const ISSUER = 'https://idp.property.test';
const NOW = Date.UTC(2026, 10, 22, 12, 0, 0);
const SKEW_S = 30;
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** Characters outside base64url, among them those Buffer's decoder skips and those jose's skips (whitespace). */
const JUNK = ['!', '~', ' ', '*', '%', '$', '"', '\t', '\n', '=', '+', '/', 'é', '\u0000'];
/** A provider's allow-list narrower than the keys it publishes. */
const NARROW: readonly VerifyAlg[] = ['ES256', 'PS384', 'EdDSA'];
const RUNS = 1000;
const SEED = Number(process.env.PROPERTY_SEED ?? 20261127);

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

/** How a protected header's bytes are written: plain JSON, with a byte order mark, or with bytes that are not UTF-8. */
type HeaderBytes = 'plain' | 'bom' | 'latin1' | 'overlong' | 'surrogate';
const BAD_BYTES: Record<Exclude<HeaderBytes, 'plain' | 'bom'>, number[]> = {
  latin1: [0xe9],
  overlong: [0xc0, 0xaf],
  surrogate: [0xed, 0xa0, 0x80],
};

/** The header's base64url segment, its JSON written as `bytes` says (a bad sequence goes inside a string value). */
function encodeHeader(header: object, bytes: HeaderBytes): string {
  const json = JSON.stringify(header);
  if (bytes === 'plain') return Buffer.from(json).toString('base64url');
  if (bytes === 'bom')
    return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(json)]).toString('base64url');
  const raw = Buffer.concat([
    Buffer.from(`${json.slice(0, -1)},"x":"`),
    Buffer.from(BAD_BYTES[bytes]),
    Buffer.from('"}'),
  ]);
  return raw.toString('base64url');
}

/** Ways a provider may publish one key; `{}` leaves it as it is. */
const JWK_SHAPES: readonly Record<string, unknown>[] = [
  { use: 'enc' },
  { use: 'foo' },
  { use: 'sig' },
  { key_ops: ['verify'] },
  { key_ops: ['sign'] },
  { key_ops: [] },
  { key_ops: ['verify', 'verify'] },
  { ext: 'yes' },
  { kid: undefined },
  { alg: undefined },
  { kid: undefined, alg: undefined },
  { d: 'AAAA' },
];

describe('subject token verification agrees with jose jwtVerify (property)', function () {
  this.timeout(120_000);
  let keys: TestKey[];
  /** Signs with a key the provider does not publish, under a published kid. */
  let impostor: TestKey;
  /** What the provider publishes now; the services fetch it on every exchange. */
  let published: JWK[];
  /** Trusts every algorithm of VERIFY_ALGORITHMS. */
  let wide: TokenService;
  /** The same provider and keys, with an allow-list of {@link NARROW} only. */
  let narrow: TokenService;
  let signer: SigningPool;

  before(async () => {
    keys = [];
    for (const alg of VERIFY_ALGORITHMS) {
      const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
      const kid = `key-${alg}`;
      const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
      keys.push({ alg, kid, signer: KeyObject.from(privateKey), jwk });
    }
    published = keys.map((k) => k.jwk);
    const other = await generateKeyPair('ES256');
    impostor = { alg: 'ES256', kid: 'key-ES256', signer: KeyObject.from(other.privateKey), jwk: {} };
    signer = new SigningPool({ workers: 0 });
    const signingKey = await generateSigningKey(
      'ES256',
      NOW,
      { activeMs: 3_600_000, tokenMaxTtlMs: 3_600_000, skewMs: 60_000 },
      'r1',
    );
    const build = (algorithms: readonly VerifyAlg[]) => {
      const config = parseTokensConfig(
        {
          providers: [
            {
              name: 'prop',
              issuer: ISSUER,
              jwksUri: 'http://127.0.0.1:1/jwks',
              audiences: ['exchange'],
              algorithms: [...algorithms],
              targetAudiences: ['orders'],
            },
          ],
        },
        3600,
      );
      return new TokenService({
        issuer: () => 'https://tokens.property.test',
        providers: [
          {
            config: config.providers[0]!,
            jwks: new RemoteJwks({
              provider: 'prop',
              source: { jwksUri: 'http://127.0.0.1:1/jwks' },
              fetchJson: () => Promise.resolve({ keys: published }),
              clock: { now: () => NOW },
              // Fetched on every exchange, so each run's published keys are the ones used.
              cacheMaxAgeMs: 0,
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
    };
    wide = build(VERIFY_ALGORITHMS);
    narrow = build(NARROW);
  });
  after(() => signer.close());
  afterEach(() => {
    published = keys.map((k) => k.jwk);
  });

  async function joseAccepts(
    token: string,
    algorithms: readonly VerifyAlg[] = VERIFY_ALGORITHMS,
  ): Promise<boolean> {
    try {
      await jwtVerify(token, createLocalJWKSet({ keys: published }), {
        issuer: ISSUER,
        audience: 'exchange',
        algorithms: [...algorithms],
        clockTolerance: SKEW_S,
        requiredClaims: ['exp'],
        currentDate: new Date(NOW),
      });
      return true;
    } catch {
      return false;
    }
  }

  async function exchangeAccepts(token: string, service: TokenService = wide): Promise<boolean> {
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

  /** A validly signed token of `key` with `header` (alg and kid added unless given) and good claims. */
  function token(key: TestKey, header: Record<string, unknown> = {}, bytes: HeaderBytes = 'plain'): string {
    const nowS = Math.floor(NOW / 1000);
    const input = `${encodeHeader({ alg: key.alg, kid: key.kid, ...header }, bytes)}.${b64({ sub: 'user-1', iss: ISSUER, aud: 'exchange', exp: nowS + 60 })}`;
    return `${input}.${signWith(key.alg, key.signer, input)}`;
  }
  const keyOf = (alg: VerifyAlg) => keys.find((k) => k.alg === alg)!;

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

  /** One subject token, signed, with the keys its provider publishes and the allow-list that judges it. */
  interface Case {
    readonly token: string;
    readonly jwks: JWK[];
    readonly narrow: boolean;
    readonly headerBytes: HeaderBytes;
    readonly reshaped: boolean;
  }

  const signed: fc.Arbitrary<Case> = fc
    .record({
      keyIndex: fc.nat({ max: VERIFY_ALGORITHMS.length - 1 }),
      claims,
      impostor: fc.nat({ max: 4 }).map((n) => n === 0),
      // Header parameters a provider might sign: critical extensions jose knows and does not, no kid, a kid we
      // might have made up for a key published without one.
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
        { crit: ['b64', 'exp'], b64: true, exp: 1 },
        { crit: ['exp', 'b64'], b64: true, exp: 1 },
        { crit: ['b64', 'b64'], b64: true },
        { crit: [] },
        { b64: false },
        { kid: undefined },
        { kid: '#0' },
        { kid: '#3' },
      ),
      headerBytes: fc.oneof(
        { arbitrary: fc.constant<HeaderBytes>('plain'), weight: 12 },
        fc.constantFrom<HeaderBytes>('bom', 'latin1', 'overlong', 'surrogate'),
      ),
      // Most runs publish the keys as they are; the others change one or two keys' members.
      shapes: fc.oneof(
        { arbitrary: fc.constant<[number, number][]>([]), weight: 3 },
        fc.array(
          fc.tuple(fc.nat({ max: VERIFY_ALGORITHMS.length - 1 }), fc.nat({ max: JWK_SHAPES.length - 1 })),
          { minLength: 1, maxLength: 2 },
        ),
      ),
      narrow: fc.nat({ max: 3 }).map((n) => n === 0),
    })
    .map(({ keyIndex, claims: payload, impostor: forged, extra, headerBytes, shapes, narrow: isNarrow }) => {
      const key = forged ? impostor : keys[keyIndex]!;
      // The impostor signs under a published kid of its algorithm.
      const header = JSON.parse(JSON.stringify({ alg: key.alg, kid: `key-${key.alg}`, ...extra })) as object;
      const input = `${encodeHeader(header, headerBytes)}.${b64(payload)}`;
      const jwks = keys.map((k) => k.jwk);
      for (const [index, shape] of shapes) {
        jwks[index] = JSON.parse(JSON.stringify({ ...jwks[index], ...JWK_SHAPES[shape] })) as JWK;
      }
      return {
        token: `${input}.${signWith(key.alg, key.signer, input)}`,
        jwks,
        narrow: isNarrow,
        headerBytes,
        reshaped: shapes.length > 0,
      };
    });

  type Mutation = { readonly junk: boolean; readonly apply: (token: string) => string };
  const plain = (apply: (token: string) => string): Mutation => ({ junk: false, apply });
  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    { arbitrary: fc.constant(plain((t) => t)), weight: 8 },
    fc.record({ at: fc.nat(), ch: fc.constantFrom(...`${B64URL}.=+/ `) }).map(({ at, ch }) =>
      plain((t) => {
        const i = at % t.length;
        return t.slice(0, i) + ch + t.slice(i + 1);
      }),
    ),
    // A character added: a segment whose length leaves 1 modulo 4 is no base64url at all, though Buffer decodes it.
    fc.record({ at: fc.nat(), ch: fc.constantFrom(...B64URL) }).map(({ at, ch }) =>
      plain((t) => {
        const i = at % (t.length + 1);
        return t.slice(0, i) + ch + t.slice(i);
      }),
    ),
    fc.constantFrom(...B64URL).map((ch) => plain((t) => `${t}${ch}`)),
    // Characters outside base64url inserted anywhere, or at either end of a segment (where an unanchored pattern
    // would let them through and Buffer would skip them).
    fc
      .record({ at: fc.nat(), junk: fc.constantFrom(...JUNK), times: fc.integer({ min: 1, max: 3 }) })
      .map(({ at, junk, times }) => ({
        junk: true,
        apply: (t: string) => {
          const i = at % (t.length + 1);
          return t.slice(0, i) + junk.repeat(times) + t.slice(i);
        },
      })),
    fc
      .record({
        segment: fc.nat({ max: 2 }),
        end: fc.constantFrom('start', 'end'),
        junk: fc.constantFrom(...JUNK),
        times: fc.integer({ min: 1, max: 3 }),
      })
      .map(({ segment, end, junk, times }) => ({
        junk: true,
        apply: (t: string) => {
          const parts = t.split('.');
          const part = parts[segment] ?? '';
          parts[segment] = end === 'start' ? junk.repeat(times) + part : part + junk.repeat(times);
          return parts.join('.');
        },
      })),
    fc
      .record({
        alg: fc.constantFrom('none', 'HS256', 'ES256', 'RS256', 'PS256', 'EdDSA', 'ES384', 'ES512'),
        kid: fc.option(
          fc.constantFrom(...VERIFY_ALGORITHMS.map((a) => `key-${a}`), 'nope', '#0', 7 as unknown as string),
        ),
        crit: fc.boolean(),
      })
      .map(({ alg, kid, crit }) =>
        plain((t) => {
          const header: Record<string, unknown> = { alg };
          if (kid !== null) header.kid = kid;
          if (crit) Object.assign(header, { crit: ['b64'], b64: true });
          return `${b64(header)}${t.slice(t.indexOf('.'))}`;
        }),
      ),
    fc.constant(plain((t) => `${t}.extra`)),
    fc.constant(plain((t) => t.slice(0, t.lastIndexOf('.') + 1))),
    fc.constant(plain((t) => t.replace(/\.[^.]*$/, '.'))),
    fc.constant(plain((t) => `${t}==`)),
    // alg=none with the original payload and no signature.
    fc.constant(plain((t) => `${b64({ alg: 'none' })}.${t.split('.')[1] ?? ''}.`)),
  );

  it('issues a token exactly when jwtVerify accepts a well-formed subject token, never when it refuses', async () => {
    const seen = {
      runs: 0,
      accepted: 0,
      refused: 0,
      junk: 0,
      notUtf8: 0,
      reshaped: 0,
      narrow: 0,
      narrowAccepted: 0,
    };
    await fc.assert(
      fc.asyncProperty(signed, fc.array(mutation, { maxLength: 2 }), async (c, mutations) => {
        const subject = mutations.reduce((t, m) => m.apply(t), c.token);
        published = c.jwks;
        const algorithms = c.narrow ? NARROW : VERIFY_ALGORITHMS;
        const jose = await joseAccepts(subject, algorithms);
        const expected = jose && COMPACT.test(subject);
        expect(await exchangeAccepts(subject, c.narrow ? narrow : wide), subject).to.equal(expected);
        seen.runs++;
        if (expected) seen.accepted++;
        else seen.refused++;
        if (mutations.some((m) => m.junk)) seen.junk++;
        if (!['plain', 'bom'].includes(c.headerBytes)) seen.notUtf8++;
        if (c.reshaped) seen.reshaped++;
        if (c.narrow) seen.narrow++;
        if (c.narrow && expected) seen.narrowAccepted++;
      }),
      { numRuns: RUNS, seed: SEED },
    );
    // Every run ran, both outcomes and every kind of input were exercised, so agreement is not vacuous.
    expect(seen.runs).to.equal(RUNS);
    expect(seen.accepted, 'accepted').to.be.greaterThan(40);
    expect(seen.refused, 'refused').to.be.greaterThan(500);
    expect(seen.junk, 'non-base64url characters').to.be.greaterThan(50);
    expect(seen.notUtf8, 'headers that are not UTF-8').to.be.greaterThan(25);
    expect(seen.reshaped, 'keys published in other shapes').to.be.greaterThan(150);
    expect(seen.narrow, 'narrow allow-list').to.be.greaterThan(150);
    expect(seen.narrowAccepted, 'accepted under the narrow allow-list').to.be.greaterThan(0);
  });

  it('refuses, as jwtVerify does, every algorithm’s token with one character added to a segment', async () => {
    for (const key of keys) {
      const good = token(key);
      const input = good.slice(0, good.lastIndexOf('.'));
      expect(await exchangeAccepts(good), key.alg).to.equal(true);
      for (const at of [input.indexOf('.'), input.length, good.length]) {
        for (const ch of ['A', 'Q', 'g', 'w']) {
          const grown = good.slice(0, at) + ch + good.slice(at);
          expect(await joseAccepts(grown), `${key.alg} ${at} ${ch}`).to.equal(false);
          expect(await exchangeAccepts(grown), `${key.alg} ${at} ${ch}`).to.equal(false);
        }
      }
    }
  });

  it('refuses a character outside base64url at the start, end or middle of any segment (jose refuses ! and ~)', async () => {
    for (const key of keys) {
      const parts = token(key).split('.');
      for (let segment = 0; segment < 3; segment++) {
        const part = parts[segment]!;
        for (const junk of JUNK) {
          // One to three characters, so that some insertion leaves a length base64url can have.
          for (let times = 1; times <= 3; times++) {
            const extra = junk.repeat(times);
            for (const changed of [extra + part, part + extra, part.slice(0, 5) + extra + part.slice(5)]) {
              const bad = parts.map((p, i) => (i === segment ? changed : p)).join('.');
              const what = `${key.alg} segment ${segment} ${JSON.stringify(changed.slice(0, 8))}…`;
              expect(await exchangeAccepts(bad), what).to.equal(false);
              if (junk === '!' || junk === '~') expect(await joseAccepts(bad), what).to.equal(false);
            }
          }
        }
      }
    }
  });

  it('refuses a protected header that is not UTF-8, as jose does, and reads one with a byte order mark', async () => {
    for (const key of [keyOf('ES256'), keyOf('RS256'), keyOf('EdDSA')]) {
      for (const bytes of ['latin1', 'overlong', 'surrogate'] as const) {
        const bad = token(key, {}, bytes);
        expect(await joseAccepts(bad), `${key.alg} ${bytes}`).to.equal(false);
        expect(await exchangeAccepts(bad), `${key.alg} ${bytes}`).to.equal(false);
      }
      const bom = token(key, { x: 'é' }, 'bom');
      expect(await joseAccepts(bom), `${key.alg} bom`).to.equal(true);
      expect(await exchangeAccepts(bom), `${key.alg} bom`).to.equal(true);
    }
  });

  it('refuses an algorithm the provider does not allow, though the key it names would verify it', async () => {
    for (const key of keys) {
      const subject = token(key);
      const allowed = NARROW.includes(key.alg);
      expect(await exchangeAccepts(subject, wide), `${key.alg} wide`).to.equal(true);
      expect(await joseAccepts(subject, NARROW), `${key.alg} jose narrow`).to.equal(allowed);
      expect(await exchangeAccepts(subject, narrow), `${key.alg} narrow`).to.equal(allowed);
    }
  });

  it('refuses a crit that names any extension but b64, wherever it stands in the list', async () => {
    const key = keyOf('ES256');
    const cases: [Record<string, unknown>, boolean][] = [
      [{ crit: ['b64'], b64: true }, true],
      [{ crit: ['b64', 'b64'], b64: true }, true],
      [{ crit: ['b64', 'exp'], b64: true, exp: 1 }, false],
      [{ crit: ['exp', 'b64'], b64: true, exp: 1 }, false],
      [{ crit: ['b64', 'kid'], b64: true }, false],
      [{ crit: ['b64'], b64: false }, false],
      [{ crit: [] }, false],
    ];
    for (const [header, accepted] of cases) {
      const subject = token(key, header);
      expect(await joseAccepts(subject), `jose ${JSON.stringify(header)}`).to.equal(accepted);
      expect(await exchangeAccepts(subject), JSON.stringify(header)).to.equal(accepted);
    }
  });

  it('uses no published key whose use is not sig or whose key_ops lack verify, as jose', async () => {
    const key = keyOf('ES256');
    const subject = token(key);
    for (const [shape, usable] of [
      [{ use: 'sig' }, true],
      [{ use: 'enc' }, false],
      [{ use: 'foo' }, false],
      [{ key_ops: ['verify'] }, true],
      [{ key_ops: [] }, false],
      [{ key_ops: ['sign'] }, false],
      [{ key_ops: ['encrypt', 'wrapKey'] }, false],
      [{ ext: 'yes' }, false],
    ] as const) {
      published = keys.map((k) => (k === key ? ({ ...k.jwk, ...shape } as JWK) : k.jwk));
      expect(await joseAccepts(subject), `jose ${JSON.stringify(shape)}`).to.equal(usable);
      expect(await exchangeAccepts(subject), JSON.stringify(shape)).to.equal(usable);
    }
  });

  it('never matches a token’s kid to a key published without one, and picks the one fitting key for a token without', async () => {
    const key = keyOf('ES256');
    // Every key published without a kid: the token's must match none, whatever it names.
    published = keys.map((k) => ({ ...k.jwk, kid: undefined }));
    for (const kid of ['#0', '#6', '0', key.kid]) {
      const subject = token(key, { kid });
      expect(await joseAccepts(subject), `jose ${kid}`).to.equal(false);
      expect(await exchangeAccepts(subject), kid).to.equal(false);
    }
    const anonymous = token(key, { kid: undefined });
    expect(await joseAccepts(anonymous)).to.equal(true);
    expect(await exchangeAccepts(anonymous)).to.equal(true);
    // Without their alg, the six RSA keys all fit an RS256 token that names none: jose will not choose, nor we.
    published = published.map((jwk) => ({ ...jwk, alg: undefined }));
    const rsa = token(keyOf('RS256'), { kid: undefined });
    expect(await joseAccepts(rsa)).to.equal(false);
    expect(await exchangeAccepts(rsa)).to.equal(false);
    expect(await exchangeAccepts(token(keyOf('ES384'), { kid: undefined }))).to.equal(true);
  });
});
