import { generateKeyPairSync } from 'node:crypto';
import { expect } from 'chai';
import { calculateJwkThumbprint } from 'jose';
import type { PublicJwk, PublicKey, SigningAlg } from '../../../src/keys/public-key.js';
import { verifyPublicKey, type KeyTrustPolicy } from '../../../src/keys/verify-public-key.js';
import { makeTrustedKey } from '../../support/keys.js';

const NOW = Date.UTC(2026, 0, 1, 12);
const LIFETIME = 2 * 3_600_000;
const SKEW = 60_000;
const POLICY: KeyTrustPolicy = {
  algorithms: ['ES256', 'EdDSA', 'RS256'],
  keyLifetimeMs: LIFETIME,
  skewMs: SKEW,
};

/** `key` with JWK members replaced (undefined removes one), and its `kid` recomputed as the new thumbprint. */
async function withJwk(key: PublicKey, changes: Record<string, unknown>): Promise<PublicKey> {
  const jwk: Record<string, unknown> = { ...key.jwk, ...changes };
  for (const [k, v] of Object.entries(changes)) if (v === undefined) delete jwk[k];
  const kid = await calculateJwkThumbprint(jwk, 'sha256');
  return { ...key, kid, jwk: { ...jwk, kid } as unknown as PublicJwk };
}

describe('verify public key (SPEC X7)', () => {
  let es256: PublicKey;
  let eddsa: PublicKey;
  let rs256: PublicKey;

  before(async () => {
    es256 = await makeTrustedKey('ES256', NOW - 1000, LIFETIME);
    eddsa = await makeTrustedKey('EdDSA', NOW - 1000, LIFETIME);
    rs256 = await makeTrustedKey('RS256', NOW - 1000, LIFETIME);
  });

  async function reason(key: PublicKey, policy: KeyTrustPolicy = POLICY): Promise<string> {
    const verdict = await verifyPublicKey(key, policy, NOW);
    return verdict.trusted ? 'trusted' : verdict.reason;
  }

  it('trusts a genuine key of every algorithm the cluster signs with', async () => {
    for (const key of [es256, eddsa, rs256]) expect(await reason(key)).to.equal('trusted', key.alg);
  });

  it('refuses a record that is not a key record (a row whose jwk column holds anything)', async () => {
    for (const jwk of [null, [], 'x', 42]) {
      expect(await reason({ ...es256, jwk: jwk as unknown as PublicJwk })).to.equal('malformed');
    }
    expect(await reason({ ...es256, kid: 7 as unknown as string })).to.equal('malformed');
    expect(await reason({ ...es256, replicaId: undefined as unknown as string })).to.equal('malformed');
  });

  describe('dates', () => {
    it('refuses dates that are not whole milliseconds in a Date’s range, or an expiry before creation', async () => {
      expect(await reason({ ...es256, createdAt: NOW - 0.5 })).to.equal('bad_dates');
      expect(await reason({ ...es256, createdAt: -1, expiresAt: LIFETIME - 10 })).to.equal('bad_dates');
      expect(await reason({ ...es256, expiresAt: es256.createdAt })).to.equal('bad_dates');
      expect(await reason({ ...es256, expiresAt: Number.NaN })).to.equal('bad_dates');
      // Beyond a Date's range (and Postgres's): refused for its date, before any lifetime arithmetic.
      expect(await reason({ ...es256, createdAt: 8.64e15 - 10, expiresAt: 8.64e15 + 10 })).to.equal(
        'bad_dates',
      );
    });

    it('refuses a key created further ahead than the clock skew, and takes one within it', async () => {
      const ahead = { ...es256, createdAt: NOW + SKEW + 1, expiresAt: NOW + SKEW + 1 + LIFETIME };
      expect(await reason(ahead)).to.equal('created_in_future');
      expect(await reason({ ...ahead, createdAt: NOW + SKEW, expiresAt: NOW + SKEW + LIFETIME })).to.equal(
        'trusted',
      );
    });

    it('refuses an expiry beyond creation + key lifetime + skew (year 9999 included), and takes one at the bound', async () => {
      const bound = es256.createdAt + LIFETIME + SKEW;
      expect(await reason({ ...es256, expiresAt: bound + 1 })).to.equal('expiry_too_far');
      expect(await reason({ ...es256, expiresAt: Date.UTC(9999, 11, 31) })).to.equal('expiry_too_far');
      expect(await reason({ ...es256, expiresAt: bound })).to.equal('trusted');
    });
  });

  describe('members', () => {
    for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth']) {
      it(`refuses a JWK with the private member "${member}"`, async () => {
        expect(await reason(await withJwk(es256, { [member]: 'AQAB' }))).to.equal('private_member');
      });
    }

    it('refuses members this service does not publish for the key type', async () => {
      expect(await reason(await withJwk(es256, { key_ops: ['verify'] }))).to.equal('unknown_member');
      expect(await reason(await withJwk(es256, { x5c: ['AAAA'] }))).to.equal('unknown_member');
      expect(await reason(await withJwk(eddsa, { y: eddsa.jwk.x }))).to.equal('unknown_member');
      expect(await reason(await withJwk(es256, { n: 'AQAB' }))).to.equal('unknown_member');
    });
  });

  describe('algorithm and key type', () => {
    it('refuses an algorithm the cluster does not sign with, even one this service knows', async () => {
      const onlyEdDsa: KeyTrustPolicy = { ...POLICY, algorithms: ['EdDSA'] };
      expect(await reason(es256, onlyEdDsa)).to.equal('algorithm');
      expect(await reason(eddsa, onlyEdDsa)).to.equal('trusted');
      const hs256 = {
        ...es256,
        alg: 'HS256' as SigningAlg,
        jwk: { ...es256.jwk, alg: 'HS256' as SigningAlg },
      };
      expect(await reason(hs256)).to.equal('algorithm');
    });

    it('refuses a record whose kid, alg or use differ from its JWK’s', async () => {
      expect(await reason({ ...es256, jwk: { ...es256.jwk, kid: eddsa.kid } })).to.equal('header_mismatch');
      expect(await reason({ ...es256, jwk: { ...es256.jwk, alg: 'EdDSA' } })).to.equal('header_mismatch');
      expect(await reason(await withJwk(es256, { use: 'enc' }))).to.equal('header_mismatch');
    });

    it('refuses a key type or curve that does not fit the algorithm', async () => {
      const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ format: 'jwk' });
      expect(await reason(await withJwk(es256, { crv: 'P-384', x: p384.x, y: p384.y }))).to.equal('key_type');
      expect(await reason(await withJwk(eddsa, { crv: 'X25519' }))).to.equal('key_type');
      expect(await reason(await withJwk(es256, { kty: 'OKP', y: undefined }))).to.equal('key_type');
    });

    it('refuses material that is not a valid key: a point off the curve, a short coordinate, RSA under 2048 bits', async () => {
      expect(await reason(await withJwk(es256, { y: es256.jwk.x }))).to.equal('key_material');
      expect(await reason(await withJwk(eddsa, { x: (eddsa.jwk.x ?? '').slice(0, 40) }))).to.equal(
        'key_material',
      );
      const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
      expect(await reason(await withJwk(rs256, { n: small.n, e: small.e }))).to.equal('key_material');
    });
  });

  describe('kid', () => {
    it('refuses a kid that is not the RFC 7638 thumbprint of the key', async () => {
      const other = eddsa.kid;
      expect(await reason({ ...es256, kid: other, jwk: { ...es256.jwk, kid: other } })).to.equal(
        'kid_mismatch',
      );
      const chosen = 'my-own-kid';
      expect(await reason({ ...es256, kid: chosen, jwk: { ...es256.jwk, kid: chosen } })).to.equal(
        'kid_mismatch',
      );
    });
  });
});
