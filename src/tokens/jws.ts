import { sign, type KeyObject } from 'node:crypto';
import type { SigningAlg } from '../keys/public-key.js';

/** The compact-JWS header segment for a key, encoded once per key rather than once per token. */
export function encodedHeader(alg: SigningAlg, kid: string): string {
  return Buffer.from(JSON.stringify({ alg, kid, typ: 'JWT' })).toString('base64url');
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
