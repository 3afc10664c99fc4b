import { generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { toPublicJwk, type PublicKey, type SigningAlg } from './public-key.js';

/** A freshly generated key pair. The private half never leaves process memory (T5). */
export interface SigningKey {
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly privateKey: KeyObject;
  readonly publicKey: PublicKey;
}

/** When a key stops being used and how long its tokens may live; together they bound its expiry. */
export interface KeyLifetime {
  /** How long the key signs before the next one takes over (ms). */
  readonly activeMs: number;
  /** The longest lifetime of a token this service issues (ms). */
  readonly tokenMaxTtlMs: number;
  /** Clock-skew leeway granted to verifiers (ms). */
  readonly skewMs: number;
}

/** How long a key lives: from creation to the last moment a token signed with it can be valid, plus leeway. */
export function keyLifetimeMs(lifetime: KeyLifetime): number {
  return lifetime.activeMs + lifetime.tokenMaxTtlMs + lifetime.skewMs;
}

/**
 * Generates a key pair. The `kid` is the RFC 7638 thumbprint of the public key, so it is stable and derived from
 * the key. Expiry = the last moment a token signed with it can be valid (end of its active period plus the
 * longest token lifetime) plus the clock-skew leeway.
 */
export async function generateSigningKey(
  alg: SigningAlg,
  now: number,
  lifetime: KeyLifetime,
  replicaId: string,
): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyObjects(alg);
  const jwk = publicKey.export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(jwk, 'sha256');
  return {
    kid,
    alg,
    privateKey,
    publicKey: {
      kid,
      alg,
      jwk: toPublicJwk(jwk, kid, alg),
      createdAt: now,
      expiresAt: now + keyLifetimeMs(lifetime),
      replicaId,
    },
  };
}

const generate = promisify(generateKeyPair);

/** node:crypto key objects, which the signing workers can use directly. */
function generateKeyObjects(alg: SigningAlg): Promise<{ publicKey: KeyObject; privateKey: KeyObject }> {
  switch (alg) {
    case 'ES256':
      return generate('ec', { namedCurve: 'P-256' });
    case 'EdDSA':
      return generate('ed25519');
    case 'RS256':
      return generate('rsa', { modulusLength: 2048 });
    default: {
      const unknown: never = alg;
      throw new Error(`unsupported algorithm ${String(unknown)}`);
    }
  }
}
