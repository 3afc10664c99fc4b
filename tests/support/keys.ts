import { generateKeyPairSync } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { PublicJwk, PublicKey, SigningAlg } from '../../src/keys/public-key.js';

let counter = 0;

/** A syntactically valid public key record whose `kid` is unique in the test run. */
export function makeKey(overrides: Partial<PublicKey> & { expiresAt: number }): PublicKey {
  counter++;
  const kid = overrides.kid ?? `kid-${process.pid}-${counter}`;
  return {
    kid,
    alg: 'ES256',
    jwk: { kty: 'EC', kid, alg: 'ES256', use: 'sig', crv: 'P-256', x: `x${counter}`, y: `y${counter}` },
    createdAt: overrides.expiresAt - 3_600_000,
    replicaId: 'test-replica',
    ...overrides,
  };
}

/**
 * A genuine public key record of `alg` (fresh key pair, `kid` = RFC 7638 thumbprint), created at `createdAt` and
 * living `lifetimeMs`: one that key verification trusts.
 */
export async function makeTrustedKey(
  alg: SigningAlg,
  createdAt: number,
  lifetimeMs: number,
  replicaId = 'peer-replica',
): Promise<PublicKey> {
  const pair =
    alg === 'ES256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : alg === 'EdDSA'
        ? generateKeyPairSync('ed25519')
        : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const exported = pair.publicKey.export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(exported, 'sha256');
  const jwk = { ...exported, kid, alg, use: 'sig' } as unknown as PublicJwk;
  return { kid, alg, jwk, createdAt, expiresAt: createdAt + lifetimeMs, replicaId };
}
