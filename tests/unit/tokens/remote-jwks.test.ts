import { expect } from 'chai';
import sinon from 'sinon';
import { silentLogger } from '../../../src/log.js';
import { FetchError, type FetchJson } from '../../../src/tokens/http-fetch.js';
import { generateKeyPairSync } from 'node:crypto';
import { exportJWK } from 'jose';
import {
  ProviderUnavailableError,
  RemoteJwks,
  UnknownKeyError,
  UnusableKeyError,
} from '../../../src/tokens/remote-jwks.js';
import { TestIdp } from '../../support/idp.js';

const MIN = 60_000;

describe('provider key cache', () => {
  let idp: TestIdp;
  let now: number;
  let fetchJson: sinon.SinonStub<Parameters<FetchJson>, ReturnType<FetchJson>>;

  before(async () => {
    idp = new TestIdp('k1');
    await idp.start();
    await idp.stop(); // only its key is needed; fetches are faked
  });

  function jwks(opts: Partial<ConstructorParameters<typeof RemoteJwks>[0]> = {}): RemoteJwks {
    return new RemoteJwks({
      provider: 'acme',
      source: { jwksUri: 'http://127.0.0.1:1/jwks' },
      fetchJson,
      clock: { now: () => now },
      cacheMaxAgeMs: 5 * MIN,
      refetchCooldownMs: 30_000,
      staleMaxMs: 60 * MIN,
      timeoutMs: 1000,
      log: silentLogger(),
      ...opts,
    });
  }

  beforeEach(() => {
    now = 1_000_000;
    fetchJson = sinon
      .stub<Parameters<FetchJson>, ReturnType<FetchJson>>()
      .resolves({ keys: [idp.publicJwk] });
  });

  it('fetches once and serves from cache until the cache age passes', async () => {
    const cache = jwks();
    const key = await cache.getKey('k1', 'ES256');
    expect(key.type).to.equal('public');
    await cache.getKey('k1', 'ES256');
    expect(fetchJson.callCount).to.equal(1);
    now += 5 * MIN;
    await cache.getKey('k1', 'ES256');
    expect(fetchJson.callCount).to.equal(2);
  });

  it('shares one fetch among concurrent callers', async () => {
    const cache = jwks();
    await Promise.all(Array.from({ length: 10 }, () => cache.getKey('k1', 'ES256')));
    expect(fetchJson.callCount).to.equal(1);
  });

  it('refetches on an unknown kid, at most once per cooldown', async () => {
    const cache = jwks();
    await cache.getKey('k1', 'ES256');
    now += 30_000;
    const first = await cache.getKey('forged', 'ES256').catch((e: unknown) => e);
    expect(first).to.be.instanceOf(UnknownKeyError);
    expect(fetchJson.callCount).to.equal(2);
    for (let i = 0; i < 20; i++) await cache.getKey(`forged-${i}`, 'ES256').catch(() => undefined);
    expect(fetchJson.callCount).to.equal(2);
    now += 30_000;
    await cache.getKey('forged', 'ES256').catch(() => undefined);
    expect(fetchJson.callCount).to.equal(3);
  });

  it('finds a key added by the provider on its next rotation through the unknown-kid refetch', async () => {
    const cache = jwks({ refetchCooldownMs: 0 });
    await cache.getKey('k1', 'ES256');
    fetchJson.resolves({ keys: [idp.publicJwk, { ...idp.publicJwk, kid: 'k2' }] });
    expect((await cache.getKey('k2', 'ES256')).type).to.equal('public');
  });

  it('refuses a key whose alg differs from the token header', async () => {
    const err = await jwks()
      .getKey('k1', 'RS256')
      .catch((e: unknown) => e);
    expect(err).to.be.instanceOf(UnknownKeyError);
  });

  it('hands out a node:crypto public key, imported once and fitted to the algorithm', async () => {
    const cache = jwks();
    const key = await cache.getKey('k1', 'ES256');
    expect(key.type).to.equal('public');
    expect(key.asymmetricKeyDetails?.namedCurve).to.equal('prime256v1');
    expect(await cache.getKey('k1', 'ES256')).to.equal(key);
  });

  it('finds no key for an algorithm its type or curve does not fit, and refuses an RSA key under 2048 bits', async () => {
    const { publicKey: weak } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    fetchJson.resolves({
      keys: [
        { ...idp.publicJwk, kid: 'p256', alg: undefined },
        { ...(await exportJWK(weak)), kid: 'rsa1024' },
      ],
    });
    const cache = jwks();
    for (const [kid, alg] of [
      ['p256', 'ES384'],
      ['p256', 'RS256'],
      ['rsa1024', 'ES256'],
    ] as const) {
      const err = await cache.getKey(kid, alg).catch((e: unknown) => e);
      expect(err, `${kid} as ${alg}`).to.be.instanceOf(UnknownKeyError);
    }
    for (const alg of ['RS256', 'PS256']) {
      const err = await cache.getKey('rsa1024', alg).catch((e: unknown) => e);
      expect(err, `rsa1024 as ${alg}`).to.be.instanceOf(UnusableKeyError);
    }
  });

  it('uses no key whose use is other than sig, whose key_ops lack verify, or whose ext is not a boolean (as jose)', async () => {
    // 'used', 'UnknownKeyError' (not a candidate), or 'UnusableKeyError' (a candidate whose import fails, as
    // jose's does: a public key whose key_ops name `sign`).
    const variants: [string, Record<string, unknown>, string][] = [
      ['use-sig', { use: 'sig' }, 'used'],
      ['use-foo', { use: 'foo' }, 'UnknownKeyError'],
      ['use-enc', { use: 'enc' }, 'UnknownKeyError'],
      ['use-number', { use: 1 }, 'UnknownKeyError'],
      ['ops-verify', { key_ops: ['verify'] }, 'used'],
      ['ops-both', { key_ops: ['sign', 'verify'] }, 'UnusableKeyError'],
      ['ops-empty', { key_ops: [] }, 'UnknownKeyError'],
      ['ops-sign', { key_ops: ['sign'] }, 'UnknownKeyError'],
      ['ops-string', { key_ops: 'verify' }, 'UnknownKeyError'],
      ['ops-repeated', { key_ops: ['verify', 'verify'] }, 'UnknownKeyError'],
      ['ext-true', { ext: true }, 'used'],
      ['ext-string', { ext: 'true' }, 'UnknownKeyError'],
    ];
    fetchJson.resolves({
      keys: variants.map(([kid, extra]) => ({ ...idp.publicJwk, use: undefined, kid, ...extra })),
    });
    const cache = jwks();
    for (const [kid, , expected] of variants) {
      const outcome = await cache.getKey(kid, 'ES256').then(
        () => 'used',
        (e: unknown) => (e as Error).name,
      );
      expect(outcome, kid).to.equal(expected);
    }
  });

  it('never lets a token name a kid for a key published without one', async () => {
    const anonymous = { ...idp.publicJwk, kid: undefined };
    fetchJson.resolves({ keys: [anonymous] });
    const cache = jwks();
    for (const kid of ['#0', '0', '', 'undefined']) {
      expect(await cache.getKey(kid, 'ES256').catch((e: unknown) => e), kid).to.be.instanceOf(
        UnknownKeyError,
      );
    }
    expect((await cache.getKey(undefined, 'ES256')).type).to.equal('public');
  });

  it('picks, for a token without kid, the one key whose type, curve and alg fit; none or several is unknown', async () => {
    const p256 = { ...idp.publicJwk, kid: undefined, alg: undefined };
    const { publicKey: rsa } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rsaJwk = await exportJWK(rsa);
    fetchJson.resolves({ keys: [p256, rsaJwk] });
    const cache = jwks();
    expect((await cache.getKey(undefined, 'ES256')).asymmetricKeyType).to.equal('ec');
    expect((await cache.getKey(undefined, 'PS256')).asymmetricKeyType).to.equal('rsa');
    expect(await cache.getKey(undefined, 'ES384').catch((e: unknown) => e)).to.be.instanceOf(UnknownKeyError);
    // Two keys that fit: jose refuses to choose, and so does the cache; the same for two keys under one kid.
    fetchJson.resolves({
      keys: [p256, { ...p256 }, { ...rsaJwk, kid: 'twice' }, { ...rsaJwk, kid: 'twice' }],
    });
    now += 5 * MIN;
    expect(await cache.getKey(undefined, 'ES256').catch((e: unknown) => e)).to.be.instanceOf(UnknownKeyError);
    expect(await cache.getKey('twice', 'RS256').catch((e: unknown) => e)).to.be.instanceOf(UnknownKeyError);
    // One kid shared by keys of two types still names one key per algorithm.
    fetchJson.resolves({
      keys: [
        { ...p256, kid: 'shared' },
        { ...rsaJwk, kid: 'shared' },
      ],
    });
    now += 5 * MIN;
    expect((await cache.getKey('shared', 'ES256')).asymmetricKeyType).to.equal('ec');
    expect((await cache.getKey('shared', 'RS256')).asymmetricKeyType).to.equal('rsa');
  });

  it('during a provider outage serves the last good keys for staleMax, then fails closed', async () => {
    const cache = jwks();
    await cache.getKey('k1', 'ES256');
    fetchJson.rejects(new FetchError('down'));
    now += 30 * MIN;
    expect((await cache.getKey('k1', 'ES256')).type).to.equal('public');
    now += 30 * MIN + 1;
    const err = await cache.getKey('k1', 'ES256').catch((e: unknown) => e);
    expect(err).to.be.instanceOf(ProviderUnavailableError);
  });

  it('answers an unknown kid during a provider outage as unavailable, with the time until the next fetch', async () => {
    const cache = jwks();
    await cache.getKey('k1', 'ES256');
    fetchJson.rejects(new FetchError('down'));
    now += 30_000;
    const first = await cache.getKey('k2', 'ES256').catch((e: unknown) => e);
    expect(first).to.be.instanceOf(ProviderUnavailableError);
    expect((first as ProviderUnavailableError).retryAfterS).to.equal(30);
    expect(fetchJson.callCount).to.equal(2);
    // Within the cooldown the provider is not asked again, and the kid still cannot be judged.
    now += 10_000;
    const second = await cache.getKey('k2', 'ES256').catch((e: unknown) => e);
    expect(second).to.be.instanceOf(ProviderUnavailableError);
    expect((second as ProviderUnavailableError).retryAfterS).to.equal(20);
    expect(fetchJson.callCount).to.equal(2);
    // A key of the last good copy is still served meanwhile.
    expect((await cache.getKey('k1', 'ES256')).type).to.equal('public');
  });

  it('judges an unknown kid normally once the provider’s keys are fetched again', async () => {
    const cache = jwks();
    await cache.getKey('k1', 'ES256');
    fetchJson.rejects(new FetchError('down'));
    now += 30_000;
    expect(await cache.getKey('k2', 'ES256').catch((e: unknown) => e)).to.be.instanceOf(
      ProviderUnavailableError,
    );
    fetchJson.resolves({ keys: [idp.publicJwk] });
    now += 30_000;
    expect(await cache.getKey('k2', 'ES256').catch((e: unknown) => e)).to.be.instanceOf(UnknownKeyError);
    // And a key the provider added during the outage is found.
    fetchJson.resolves({ keys: [idp.publicJwk, { ...idp.publicJwk, kid: 'k3' }] });
    now += 30_000;
    expect((await cache.getKey('k3', 'ES256')).type).to.equal('public');
  });

  it('fails closed at once when it never had keys', async () => {
    fetchJson.rejects(new FetchError('down'));
    expect(
      await jwks()
        .getKey('k1', 'ES256')
        .catch((e: unknown) => e),
    ).to.be.instanceOf(ProviderUnavailableError);
  });

  it('treats a malformed document like an outage', async () => {
    fetchJson.resolves({ nope: true });
    expect(
      await jwks()
        .getKey('k1', 'ES256')
        .catch((e: unknown) => e),
    ).to.be.instanceOf(ProviderUnavailableError);
  });

  it('finds the JWKS through OIDC discovery', async () => {
    fetchJson.callsFake((url) =>
      Promise.resolve(
        url.endsWith('/.well-known/openid-configuration')
          ? { issuer: 'http://127.0.0.1:1', jwks_uri: 'http://127.0.0.1:1/keys' }
          : { keys: [idp.publicJwk] },
      ),
    );
    await jwks({ source: { discoveryIssuer: 'http://127.0.0.1:1/' } }).getKey('k1', 'ES256');
    expect(fetchJson.firstCall.args[0]).to.equal('http://127.0.0.1:1/.well-known/openid-configuration');
    expect(fetchJson.secondCall.args[0]).to.equal('http://127.0.0.1:1/keys');
  });

  it('never uses private or encryption keys in a JWKS', async () => {
    fetchJson.resolves({
      keys: [
        { ...idp.publicJwk, kid: 'enc', use: 'enc' },
        { ...idp.publicJwk, kid: 'priv', d: 'x' },
      ],
    });
    const cache = jwks();
    expect(await cache.getKey('enc', 'ES256').catch((e: unknown) => e)).to.be.instanceOf(UnknownKeyError);
    expect(await cache.getKey('priv', 'ES256').catch((e: unknown) => e)).to.be.instanceOf(UnusableKeyError);
    // A private key still counts, as in jose: beside it, a token without kid finds no single key.
    const anonymous = { ...idp.publicJwk, kid: undefined };
    fetchJson.resolves({ keys: [anonymous, { ...anonymous, d: 'x' }] });
    now += 5 * MIN;
    expect(await cache.getKey(undefined, 'ES256').catch((e: unknown) => e)).to.be.instanceOf(UnknownKeyError);
  });
});
