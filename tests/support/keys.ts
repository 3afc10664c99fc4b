import type { PublicKey } from '../../src/keys/public-key.js';

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
