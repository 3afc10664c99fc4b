/**
 * Signing algorithms this service can issue tokens with: the one list that the configuration, the key schema
 * and key verification all read.
 */
export const SIGNING_ALGS = ['ES256', 'EdDSA', 'RS256'] as const;

/** One of {@link SIGNING_ALGS}. */
export type SigningAlg = (typeof SIGNING_ALGS)[number];

/** The public half of a key as RFC 7517 describes it; never holds private members. */
export interface PublicJwk {
  readonly kty: string;
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly use: 'sig';
  readonly crv?: string;
  readonly x?: string;
  readonly y?: string;
  readonly n?: string;
  readonly e?: string;
}

/**
 * A public key as the key store keeps it. Immutable: a `kid` is derived from the key material, so two records
 * with one `kid` describe the same key.
 */
export interface PublicKey {
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly jwk: PublicJwk;
  /** When the key was generated (ms since epoch). */
  readonly createdAt: number;
  /** The last moment a token signed with this key can still be valid, plus clock-skew leeway (ms since epoch). */
  readonly expiresAt: number;
  /** The replica that generated the key. */
  readonly replicaId: string;
}

/** True when `key` may no longer be served or used at time `now`. */
export function isExpired(key: PublicKey, now: number): boolean {
  return key.expiresAt <= now;
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

/** Copies only the public members of a JWK; throws if the input has none of a public key's shape. */
export function toPublicJwk(jwk: Record<string, unknown>, kid: string, alg: SigningAlg): PublicJwk {
  const out: Record<string, unknown> = { kty: jwk.kty, kid, alg, use: 'sig' };
  for (const member of ['crv', 'x', 'y', 'n', 'e'] as const) {
    if (typeof jwk[member] === 'string') out[member] = jwk[member];
  }
  for (const member of PRIVATE_MEMBERS) {
    if (member in out) throw new Error(`private JWK member "${member}" in a public key`);
  }
  if (typeof out.kty !== 'string') throw new Error('JWK has no kty');
  return out as unknown as PublicJwk;
}
