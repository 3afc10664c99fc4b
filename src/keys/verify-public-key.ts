import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { calculateJwkThumbprint } from 'jose';
import type { PublicKey, SigningAlg } from './public-key.js';

/** Why a public key was refused; a stable label for logs and the `keys_refused_total` metric. */
export type KeyRefusalReason =
  /** Not a key record at all: a `kid` or replica id that is not a string, a JWK that is not an object. */
  | 'malformed'
  /** `createdAt` or `expiresAt` is not a plausible instant, or the key expires before it is created. */
  | 'bad_dates'
  /** `createdAt` lies further in the future than the clock-skew leeway allows. */
  | 'created_in_future'
  /** `expiresAt` lies beyond `createdAt` + the key lifetime + the clock-skew leeway. */
  | 'expiry_too_far'
  /** The JWK carries a private member (`d`, `p`, `q`, `dp`, `dq`, `qi`, `k`, `oth`). */
  | 'private_member'
  /** The JWK carries a member this service never publishes for that key type. */
  | 'unknown_member'
  /** The algorithm is not one this cluster signs with. */
  | 'algorithm'
  /** The record's `kid`, `alg` or `use` disagree with the JWK's own. */
  | 'header_mismatch'
  /** The key type or curve does not fit the algorithm. */
  | 'key_type'
  /** The key material is not a valid public key of that type (off the curve, wrong length, RSA under 2048 bits). */
  | 'key_material'
  /** The `kid` is not the key's RFC 7638 thumbprint. */
  | 'kid_mismatch';

/** What a key must satisfy to be trusted; built once from the configuration. */
export interface KeyTrustPolicy {
  /** The algorithms this cluster signs with (a subset of `SIGNING_ALGS`). */
  readonly algorithms: readonly SigningAlg[];
  /** The longest a key may live, as `keyLifetimeMs` computes it for this cluster's settings. */
  readonly keyLifetimeMs: number;
  /** Clock-skew leeway between replicas (ms). */
  readonly skewMs: number;
}

/** The outcome of {@link verifyPublicKey}. */
export type KeyVerdict =
  | { readonly trusted: true }
  | { readonly trusted: false; readonly reason: KeyRefusalReason; readonly detail: string };

/** What each key type publishes, and the algorithm and curve it must have. */
const SHAPES: Record<SigningAlg, { kty: string; crv?: string; members: ReadonlySet<string> }> = {
  ES256: { kty: 'EC', crv: 'P-256', members: new Set(['kty', 'kid', 'alg', 'use', 'crv', 'x', 'y']) },
  EdDSA: { kty: 'OKP', crv: 'Ed25519', members: new Set(['kty', 'kid', 'alg', 'use', 'crv', 'x']) },
  RS256: { kty: 'RSA', members: new Set(['kty', 'kid', 'alg', 'use', 'n', 'e']) },
};

const PRIVATE_MEMBERS: ReadonlySet<string> = new Set(['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth']);
const MIN_RSA_BITS = 2048;
/** Dates are ms since the epoch and fit a JavaScript Date (and so Postgres's timestamptz). */
const MAX_INSTANT = 8.64e15;

function refuse(reason: KeyRefusalReason, detail: string): KeyVerdict {
  return { trusted: false, reason, detail };
}

/**
 * Decides whether a public key that came from outside this process (a peer's announcement, a Postgres row) may be
 * stored and served (SPEC X7). Pure: it reads only its arguments, so every rule is tested on its own. The key's
 * shape is assumed (zod, or a typed row); everything that decides trust is checked here, whatever the source:
 *
 * - dates: integers within a Date's range, `createdAt` < `expiresAt`, `createdAt` at most `skewMs` ahead of
 *   `now`, and `expiresAt` at most `keyLifetimeMs` + `skewMs` after `createdAt` (no writer picks its own expiry);
 * - members: public ones only, and only those this service publishes for the key type;
 * - algorithm: one this cluster signs with, matching the JWK's `alg`, `use: "sig"`, and the right key type and
 *   curve; the material must import as such a key (on the curve; RSA of at least 2048 bits);
 * - `kid`: equal to the JWK's `kid` and to its RFC 7638 SHA-256 thumbprint.
 *
 * Expired keys are not refused here: the stores never serve them anyway.
 */
export async function verifyPublicKey(
  key: PublicKey,
  policy: KeyTrustPolicy,
  now: number,
): Promise<KeyVerdict> {
  const jwk = key.jwk as unknown;
  if (
    typeof key.kid !== 'string' ||
    typeof key.replicaId !== 'string' ||
    typeof jwk !== 'object' ||
    jwk === null ||
    Array.isArray(jwk)
  ) {
    return refuse('malformed', 'not a key record');
  }
  const { createdAt, expiresAt } = key;
  if (
    !Number.isSafeInteger(createdAt) ||
    !Number.isSafeInteger(expiresAt) ||
    createdAt < 0 ||
    expiresAt > MAX_INSTANT ||
    expiresAt <= createdAt
  ) {
    return refuse('bad_dates', `createdAt ${String(createdAt)}, expiresAt ${String(expiresAt)}`);
  }
  if (createdAt > now + policy.skewMs) {
    return refuse('created_in_future', `created ${createdAt - now} ms ahead of this replica's clock`);
  }
  if (expiresAt - createdAt > policy.keyLifetimeMs + policy.skewMs) {
    return refuse(
      'expiry_too_far',
      `lives ${expiresAt - createdAt} ms; at most ${policy.keyLifetimeMs + policy.skewMs} ms allowed`,
    );
  }

  const members = Object.keys(jwk);
  const secret = members.find((m) => PRIVATE_MEMBERS.has(m));
  if (secret !== undefined) return refuse('private_member', `private member "${secret}"`);

  const alg = key.alg;
  const fields = jwk as Record<string, unknown>;
  if (!policy.algorithms.includes(alg)) return refuse('algorithm', `algorithm ${String(alg).slice(0, 16)}`);
  const shape = SHAPES[alg];
  const unknown = members.find((m) => !shape.members.has(m));
  if (unknown !== undefined) return refuse('unknown_member', `member "${unknown.slice(0, 16)}"`);
  if (fields.kid !== key.kid || fields.alg !== alg || fields.use !== 'sig') {
    return refuse('header_mismatch', 'kid, alg or use differ between the record and its JWK');
  }
  if (fields.kty !== shape.kty || fields.crv !== shape.crv) {
    return refuse(
      'key_type',
      `${String(fields.kty).slice(0, 8)}/${String(fields.crv).slice(0, 16)} for ${alg}`,
    );
  }

  try {
    const imported = createPublicKey({ key: fields as JsonWebKey, format: 'jwk' });
    const bits = imported.asymmetricKeyDetails?.modulusLength;
    if (shape.kty === 'RSA' && (bits === undefined || bits < MIN_RSA_BITS)) {
      return refuse('key_material', `RSA modulus of ${String(bits)} bits`);
    }
  } catch {
    return refuse('key_material', `not a valid ${alg} public key`);
  }

  const thumbprint = await calculateJwkThumbprint(fields, 'sha256');
  if (thumbprint !== key.kid) return refuse('kid_mismatch', 'kid is not the RFC 7638 thumbprint of the key');
  return { trusted: true };
}
