import { constants, sign, verify, type KeyObject } from 'node:crypto';
import type { SigningAlg } from '../keys/public-key.js';

/**
 * The `typ` of every token this service signs: RFC 9068 §2.1 access tokens, which a resource server can tell
 * apart from ID tokens and other JWTs by this header alone.
 */
export const ACCESS_TOKEN_TYP = 'at+jwt';

/** The compact-JWS header segment for a key, encoded once per key rather than once per token. */
export function encodedHeader(alg: SigningAlg, kid: string): string {
  return Buffer.from(JSON.stringify({ alg, kid, typ: ACCESS_TOKEN_TYP })).toString('base64url');
}

/**
 * Signs `payloadJson` as a compact JWS with node:crypto directly: ES256 as the raw r‖s pair RFC 7518 wants
 * (`ieee-p1363`), RS256 as PKCS#1 v1.5 with SHA-256, EdDSA as Ed25519.
 */
export function signCompact(alg: SigningAlg, header: string, key: KeyObject, payloadJson: string): string {
  const input = `${header}.${Buffer.from(payloadJson).toString('base64url')}`;
  let signature: Buffer;
  switch (alg) {
    case 'ES256':
      signature = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
      break;
    case 'RS256':
      signature = sign('sha256', Buffer.from(input), key);
      break;
    case 'EdDSA':
      signature = sign(null, Buffer.from(input), key);
      break;
    default: {
      const unknown: never = alg;
      throw new Error(`unsupported algorithm ${String(unknown)}`);
    }
  }
  return `${input}.${signature.toString('base64url')}`;
}

/** Algorithms accepted on external subject tokens: asymmetric only, so a public key can never act as an HMAC key. */
export const VERIFY_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'EdDSA',
] as const;
export type VerifyAlg = (typeof VERIFY_ALGORITHMS)[number];

const DIGEST: Record<VerifyAlg, string | null> = {
  RS256: 'sha256',
  RS384: 'sha384',
  RS512: 'sha512',
  PS256: 'sha256',
  PS384: 'sha384',
  PS512: 'sha512',
  ES256: 'sha256',
  ES384: 'sha384',
  EdDSA: null,
};

/**
 * Checks a compact JWS signature with node:crypto: `signingInput` is `header.payload` as received, `signature` the
 * third segment (base64url, already checked to hold only base64url characters). The caller has checked that `key`
 * fits `alg` (RemoteJwks imports each key for one algorithm). ECDSA signatures are the raw r‖s pair RFC 7518
 * §3.4 defines (a wrong length fails), RSA-PSS uses a salt as long as the digest (RFC 7518 §3.5).
 */
export function verifySignature(
  alg: VerifyAlg,
  key: KeyObject,
  signingInput: string,
  signature: string,
): boolean {
  const input = Buffer.from(signingInput);
  const sig = Buffer.from(signature, 'base64url');
  switch (alg) {
    case 'ES256':
    case 'ES384':
      return verify(DIGEST[alg], input, { key, dsaEncoding: 'ieee-p1363' }, sig);
    case 'PS256':
    case 'PS384':
    case 'PS512':
      return verify(
        DIGEST[alg],
        input,
        { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST },
        sig,
      );
    case 'RS256':
    case 'RS384':
    case 'RS512':
    case 'EdDSA':
      return verify(DIGEST[alg], input, key, sig);
    default: {
      const unknown: never = alg;
      throw new Error(`unsupported algorithm ${String(unknown)}`);
    }
  }
}
