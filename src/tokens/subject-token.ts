import { isUtf8 } from 'node:buffer';
import { errors, type JWTPayload } from 'jose';
import type { VerifyAlg } from './jws.js';
import { OAuthError } from './oauth-error.js';

/** A compact JWS read apart, nothing verified yet. */
export interface CompactJwt {
  readonly header: Readonly<Record<string, unknown>>;
  /** The payload as decoded, unverified: good only for choosing the provider whose checks then apply. */
  readonly claims: Readonly<Record<string, unknown>>;
  /** Whether the payload's bytes are valid UTF-8, which jose demands of a claims set. */
  readonly payloadIsUtf8: boolean;
  /** `header.payload`, the bytes the signature covers. */
  readonly signingInput: string;
  readonly signature: string;
}

const SEGMENT = /^[A-Za-z0-9_-]+$/;

/** JSON text as jose reads it: UTF-8 with a leading byte order mark dropped, as `TextDecoder` does. */
function jsonObject(bytes: Buffer): Record<string, unknown> | undefined {
  try {
    let text = bytes.toString('utf8');
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads a compact JWS strictly: three non-empty segments of base64url characters only (the whole segment: a
 * character outside the alphabet anywhere, first and last included, refuses it, where Buffer would skip it), of
 * lengths base64url can have, whose first two decode to JSON objects, the header from valid UTF-8. Anything else is `undefined`. Each segment is decoded once; the
 * signature is checked later (in the signing worker, see `SignatureProof`).
 */
export function readCompactJwt(token: string): CompactJwt | undefined {
  const first = token.indexOf('.');
  const second = token.indexOf('.', first + 1);
  if (first < 0 || second < 0 || token.indexOf('.', second + 1) >= 0) return undefined;
  const headerSegment = token.slice(0, first);
  const payloadSegment = token.slice(first + 1, second);
  const signature = token.slice(second + 1);
  if (!SEGMENT.test(headerSegment) || !SEGMENT.test(payloadSegment) || !SEGMENT.test(signature)) {
    return undefined;
  }
  // Unpadded base64url never leaves 1 modulo 4 (RFC 4648 §5). Buffer would decode such a segment anyway, dropping
  // its last character, so a signature with one character added would still verify; jose refuses it.
  if (headerSegment.length % 4 === 1 || payloadSegment.length % 4 === 1 || signature.length % 4 === 1) {
    return undefined;
  }
  // jose reads the protected header strictly as UTF-8 (the payload's UTF-8 is checked with the claims, later).
  const headerBytes = Buffer.from(headerSegment, 'base64url');
  if (!isUtf8(headerBytes)) return undefined;
  const header = jsonObject(headerBytes);
  const payload = Buffer.from(payloadSegment, 'base64url');
  const claims = jsonObject(payload);
  if (!header || !claims) return undefined;
  return { header, claims, payloadIsUtf8: isUtf8(payload), signingInput: token.slice(0, second), signature };
}

/**
 * Checks a subject token's protected header against a provider's explicit algorithm allow-list (RFC 8725 §3.1):
 * `alg` must be one of `allowed` (all asymmetric, so `none` and HMAC never pass), `kid` a string if present. The
 * only critical extension understood is the one jose understands, `b64` (RFC 7797), and only as `true`, the
 * ordinary encoding (JWTs never use an unencoded payload); any other `crit` is refused (RFC 7515 §4.1.11).
 */
export function checkHeader(
  header: Readonly<Record<string, unknown>>,
  allowed: readonly VerifyAlg[],
): { alg: VerifyAlg; kid: string | undefined } {
  const { alg, kid } = header;
  if (typeof alg !== 'string' || !(allowed as readonly string[]).includes(alg)) {
    throw new OAuthError('invalid_request', 'subject_token algorithm is not allowed');
  }
  if (header.crit !== undefined && !onlyEncodedPayload(header)) {
    throw new OAuthError(
      'invalid_request',
      'subject_token has critical header parameters that are not supported',
    );
  }
  if (kid !== undefined && typeof kid !== 'string') {
    throw new OAuthError('invalid_request', 'subject_token "kid" is not a string');
  }
  return { alg: alg as VerifyAlg, kid };
}

/** `crit` names `b64` alone, and `b64` is `true`. */
function onlyEncodedPayload(header: Readonly<Record<string, unknown>>): boolean {
  const { crit } = header;
  return (
    Array.isArray(crit) && crit.length > 0 && crit.every((name) => name === 'b64') && header.b64 === true
  );
}

/** What the claims of a subject token must satisfy: a subset of jose's `JWTClaimVerificationOptions`. */
export interface ClaimChecks {
  readonly issuer: string;
  /** The token's `aud` must name at least one of these. */
  readonly audience: readonly string[];
  /** Leeway for `exp` and `nbf`, in seconds. */
  readonly clockTolerance: number;
  /** Claims that must be present, besides `iss` and `aud`. */
  readonly requiredClaims: readonly string[];
  /** Milliseconds since the epoch. */
  readonly now: number;
}

/**
 * Checks the claims of a subject token as jose's `jwtVerify` does with the same options, on the payload
 * `readCompactJwt` has already decoded (jose's `UnsecuredJWT.decode` would decode it a second time, a tenth of an
 * exchange's main-thread time): a claims set that is not valid UTF-8, the required claims (`iss`, `aud`, then
 * `requiredClaims`, in jose's order), the issuer, the audience, `iat`/`nbf`/`exp` being numbers, `nbf` and `exp`
 * with the tolerance. A failure throws jose's own error with jose's message, claim and reason (`JWTInvalid`,
 * `JWTClaimValidationFailed`, `JWTExpired`); a unit property test holds the two to the same answers. The
 * signature is not checked here: the caller issues nothing unless it verifies.
 */
export function checkClaims(jwt: CompactJwt, o: ClaimChecks): JWTPayload {
  const claims = jwt.claims as JWTPayload;
  if (!jwt.payloadIsUtf8) throw new errors.JWTInvalid('JWT Claims Set must be a top-level JSON object');
  // jose's order: `iss`, `aud`, then the required claims from last to first (checking one twice changes nothing).
  requirePresent(claims, 'iss');
  requirePresent(claims, 'aud');
  for (let i = o.requiredClaims.length - 1; i >= 0; i--)
    requirePresent(claims, o.requiredClaims[i] as string);
  if (claims.iss !== o.issuer) unexpected(claims, 'iss');
  const { aud } = claims;
  const audienceMatches =
    typeof aud === 'string'
      ? o.audience.includes(aud)
      : Array.isArray(aud) && o.audience.some((a) => (aud as unknown[]).includes(a));
  if (!audienceMatches) unexpected(claims, 'aud');
  const nowS = Math.floor(o.now / 1000);
  numericDate(claims, 'iat');
  const nbf = numericDate(claims, 'nbf');
  if (nbf !== undefined && nbf > nowS + o.clockTolerance) {
    throw new errors.JWTClaimValidationFailed(
      '"nbf" claim timestamp check failed',
      claims,
      'nbf',
      'check_failed',
    );
  }
  const exp = numericDate(claims, 'exp');
  if (exp !== undefined && exp <= nowS - o.clockTolerance) {
    throw new errors.JWTExpired('"exp" claim timestamp check failed', claims, 'exp', 'check_failed');
  }
  return claims;
}

function requirePresent(claims: JWTPayload, claim: string): void {
  if (!Object.hasOwn(claims, claim)) {
    throw new errors.JWTClaimValidationFailed(`missing required "${claim}" claim`, claims, claim, 'missing');
  }
}

function unexpected(claims: JWTPayload, claim: string): never {
  throw new errors.JWTClaimValidationFailed(
    `unexpected "${claim}" claim value`,
    claims,
    claim,
    'check_failed',
  );
}

/** A NumericDate claim: absent, or a number. */
function numericDate(claims: JWTPayload, claim: 'iat' | 'nbf' | 'exp'): number | undefined {
  const value = claims[claim];
  if (value === undefined) return undefined;
  if (typeof value !== 'number') {
    throw new errors.JWTClaimValidationFailed(`"${claim}" claim must be a number`, claims, claim, 'invalid');
  }
  return value;
}
