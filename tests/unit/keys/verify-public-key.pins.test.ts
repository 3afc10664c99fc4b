import { generateKeyPairSync } from 'node:crypto';
import { expect } from 'chai';
import { calculateJwkThumbprint } from 'jose';
import type { PublicJwk, PublicKey, SigningAlg } from '../../../src/keys/public-key.js';
import { verifyPublicKey, type KeyTrustPolicy } from '../../../src/keys/verify-public-key.js';
import { makeTrustedKey } from '../../support/keys.js';

// Key verification (X7) at the edges mutation testing found unpinned: the date bounds, and the detail each
// refusal logs (bounded in length, since the refused record came from outside).

const NOW = Date.UTC(2026, 0, 1, 12);
const LIFETIME = 2 * 3_600_000;
const SKEW = 60_000;
const MAX_INSTANT = 8.64e15;
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

describe('verify public key – pinned requirements', () => {
  let es256: PublicKey;
  let rs256: PublicKey;

  before(async () => {
    es256 = await makeTrustedKey('ES256', NOW - 1000, LIFETIME);
    rs256 = await makeTrustedKey('RS256', NOW - 1000, LIFETIME);
  });

  /** "reason: detail", or "trusted". */
  async function verdict(key: PublicKey, now = NOW, policy = POLICY): Promise<string> {
    const v = await verifyPublicKey(key, policy, now);
    return v.trusted ? 'trusted' : `${v.reason}: ${v.detail}`;
  }

  it('X7: dates at their bounds: created at 0 and expiring at the last instant a Date holds are plausible', async () => {
    expect(await verdict({ ...es256, createdAt: 0, expiresAt: LIFETIME })).to.equal('trusted');
    const late = { ...es256, createdAt: MAX_INSTANT - LIFETIME, expiresAt: MAX_INSTANT };
    expect(await verdict(late, MAX_INSTANT)).to.equal('trusted');
    expect(await verdict({ ...late, expiresAt: MAX_INSTANT + 1 }, MAX_INSTANT)).to.equal(
      `bad_dates: createdAt ${MAX_INSTANT - LIFETIME}, expiresAt ${MAX_INSTANT + 1}`,
    );
  });

  it('X7: each refusal says why, with numbers a reader can check', async () => {
    expect(await verdict({ ...es256, jwk: null as unknown as PublicJwk })).to.equal(
      'malformed: not a key record',
    );
    expect(await verdict({ ...es256, createdAt: NOW + SKEW + 5, expiresAt: NOW + SKEW + 10 })).to.equal(
      `created_in_future: created ${SKEW + 5} ms ahead of this replica's clock`,
    );
    expect(await verdict({ ...es256, createdAt: NOW, expiresAt: NOW + LIFETIME + SKEW + 1 })).to.equal(
      `expiry_too_far: lives ${LIFETIME + SKEW + 1} ms; at most ${LIFETIME + SKEW} ms allowed`,
    );
    expect(await verdict({ ...es256, jwk: { ...es256.jwk, d: 'secret' } as unknown as PublicJwk })).to.equal(
      'private_member: private member "d"',
    );
    expect(await verdict({ ...es256, jwk: { ...es256.jwk, kid: 'other' } })).to.equal(
      'header_mismatch: kid, alg or use differ between the record and its JWK',
    );
    expect(await verdict({ ...es256, kid: 'mine', jwk: { ...es256.jwk, kid: 'mine' } })).to.equal(
      'kid_mismatch: kid is not the RFC 7638 thumbprint of the key',
    );
    expect(await verdict(await withJwk(es256, { y: es256.jwk.x }))).to.equal(
      'key_material: not a valid ES256 public key',
    );
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
    expect(await verdict(await withJwk(rs256, { n: small.n, e: small.e }))).to.equal(
      'key_material: RSA modulus of 1024 bits',
    );
  });

  it('X7: what the refused record chose itself is cut short in the detail', async () => {
    const alg = 'A'.repeat(40) as SigningAlg;
    expect(await verdict({ ...es256, alg, jwk: { ...es256.jwk, alg } })).to.equal(
      `algorithm: algorithm ${'A'.repeat(16)}`,
    );
    const member = 'm'.repeat(40);
    expect(await verdict({ ...es256, jwk: { ...es256.jwk, [member]: 1 } })).to.equal(
      `unknown_member: member "${'m'.repeat(16)}"`,
    );
    const kty = 'K'.repeat(20);
    const crv = 'C'.repeat(40);
    expect(await verdict({ ...es256, jwk: { ...es256.jwk, kty, crv } })).to.equal(
      `key_type: ${'K'.repeat(8)}/${'C'.repeat(16)} for ES256`,
    );
  });
});
