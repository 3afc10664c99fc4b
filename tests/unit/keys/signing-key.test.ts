import { expect } from 'chai';
import { createPublicKey, verify, sign, type JsonWebKey } from 'node:crypto';
import { calculateJwkThumbprint } from 'jose';
import { generateSigningKey } from '../../../src/keys/signing-key.js';

const LIFETIME = { activeMs: 3_600_000, tokenMaxTtlMs: 900_000, skewMs: 60_000 };

describe('signing key generation', () => {
  for (const alg of ['ES256', 'EdDSA', 'RS256'] as const) {
    it(`${alg}: kid is the RFC 7638 thumbprint, the JWK is public only, and it verifies what the private key signs`, async () => {
      const key = await generateSigningKey(alg, 1000, LIFETIME, 'r1');
      expect(key.kid).to.equal(await calculateJwkThumbprint(key.publicKey.jwk, 'sha256'));
      expect(key.publicKey.jwk).to.include({ kid: key.kid, alg, use: 'sig' });
      for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'])
        expect(key.publicKey.jwk).not.to.have.property(member);
      const data = Buffer.from('payload');
      const digest = alg === 'EdDSA' ? null : 'sha256';
      const signature = sign(digest, data, key.privateKey);
      const publicKey = createPublicKey({ key: key.publicKey.jwk as unknown as JsonWebKey, format: 'jwk' });
      expect(verify(digest, data, publicKey, signature)).to.be.true;
    });
  }

  it('expires when the last token it can sign expires, plus the skew leeway', async () => {
    const key = await generateSigningKey('ES256', 1000, LIFETIME, 'r1');
    expect(key.publicKey.createdAt).to.equal(1000);
    expect(key.publicKey.expiresAt).to.equal(1000 + 3_600_000 + 900_000 + 60_000);
    expect(key.publicKey.replicaId).to.equal('r1');
  });

  it('gives every key its own kid', async () => {
    const a = await generateSigningKey('ES256', 0, LIFETIME, 'r1');
    const b = await generateSigningKey('ES256', 0, LIFETIME, 'r1');
    expect(a.kid).not.to.equal(b.kid);
  });
});
