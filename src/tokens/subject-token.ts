import { UnsecuredJWT, type JWTClaimVerificationOptions, type JWTPayload } from 'jose';
import type { VerifyAlg } from './jws.js';
import { OAuthError } from './oauth-error.js';

/** A compact JWS read apart, nothing verified yet. */
export interface CompactJwt {
  readonly header: Readonly<Record<string, unknown>>;
  /** The payload as decoded, unverified: good only for choosing the provider whose checks then apply. */
  readonly claims: Readonly<Record<string, unknown>>;
  /** `header.payload`, the bytes the signature covers. */
  readonly signingInput: string;
  readonly payloadSegment: string;
  readonly signature: string;
}

const SEGMENT = /^[A-Za-z0-9_-]+$/;
/** The protected header of an unsecured JWT, under which jose's claim checks run on a verified payload. */
const NONE_HEADER = Buffer.from('{"alg":"none"}').toString('base64url');

function jsonObject(segment: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads a compact JWS strictly: three non-empty segments of base64url characters only, whose first two decode to
 * JSON objects. Anything else is `undefined`. Each segment is decoded once; the signature is checked later (in the
 * signing worker, see `SignatureProof`).
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
  const header = jsonObject(headerSegment);
  const claims = jsonObject(payloadSegment);
  if (!header || !claims) return undefined;
  return { header, claims, signingInput: token.slice(0, second), payloadSegment, signature };
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

/**
 * Checks the claims of a payload segment with jose's own claim-set validation (`iss`, `aud`, `exp`/`nbf`/`iat`
 * with the clock tolerance, required claims), so these checks mean exactly what they mean in `jwtVerify`. Its
 * failures are jose's errors (`JWTExpired`, `JWTClaimValidationFailed`, `JWTInvalid`). The signature is not
 * checked here: the caller issues nothing unless it verifies.
 */
export function checkClaims(payloadSegment: string, options: JWTClaimVerificationOptions): JWTPayload {
  return UnsecuredJWT.decode(`${NONE_HEADER}.${payloadSegment}.`, options).payload;
}
