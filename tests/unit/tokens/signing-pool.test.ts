import { expect } from 'chai';
import { generateKeyPairSync, sign } from 'node:crypto';
import { createLocalJWKSet, jwtVerify, type JWK } from 'jose';
import { generateSigningKey, type SigningKey } from '../../../src/keys/signing-key.js';
import { ProofFailedError, SigningPool } from '../../../src/tokens/signing-pool.js';
import type { SignatureProof } from '../../../src/tokens/signing-protocol.js';

const LIFE = { activeMs: 3_600_000, tokenMaxTtlMs: 3_600_000, skewMs: 0 };

async function verifyWith(key: SigningKey, token: string) {
  return jwtVerify(token, createLocalJWKSet({ keys: [key.publicKey.jwk as unknown as JWK] }), {
    algorithms: [key.alg],
  });
}

describe('signing pool', () => {
  for (const workers of [0, 1]) {
    describe(workers === 0 ? 'inline (no workers)' : 'one worker thread', () => {
      let pool: SigningPool;
      beforeEach(() => {
        pool = new SigningPool({ workers, maxBatch: 16 });
      });
      afterEach(() => pool.close());

      for (const alg of ['ES256', 'EdDSA', 'RS256'] as const) {
        it(`signs ${alg} tokens that jose verifies, each with its own payload`, async () => {
          const key = await generateSigningKey(alg, Date.now(), LIFE, 'r1');
          const tokens = await Promise.all(Array.from({ length: 40 }, (_, i) => pool.sign(key, { n: i })));
          for (const [i, token] of tokens.entries()) {
            const { payload, protectedHeader } = await verifyWith(key, token);
            expect(payload.n).to.equal(i);
            expect(protectedHeader).to.deep.equal({ alg, kid: key.kid, typ: 'at+jwt' });
          }
        });
      }

      it('signs every request with the key it was asked for, also when keys change within one turn', async () => {
        const a = await generateSigningKey('ES256', Date.now(), LIFE, 'r1');
        const b = await generateSigningKey('ES256', Date.now(), LIFE, 'r1');
        const [ta, tb, ta2] = await Promise.all([
          pool.sign(a, { k: 'a' }),
          pool.sign(b, { k: 'b' }),
          pool.sign(a, { k: 'a2' }),
        ]);
        expect((await verifyWith(a, ta)).protectedHeader.kid).to.equal(a.kid);
        expect((await verifyWith(b, tb)).protectedHeader.kid).to.equal(b.kid);
        expect((await verifyWith(a, ta2)).payload.k).to.equal('a2');
      });

      it('signs a payload with a proof only when the proof verifies, within one mixed batch', async () => {
        const key = await generateSigningKey('ES256', Date.now(), LIFE, 'r1');
        const provider = [generateKeyPairSync('ec', { namedCurve: 'P-256' }), generateKeyPairSync('ed25519')];
        const proof = (i: 0 | 1, input: string, signedInput = input): SignatureProof => {
          const pair = provider[i]!;
          const signature =
            i === 0
              ? sign('sha256', Buffer.from(signedInput), { key: pair.privateKey, dsaEncoding: 'ieee-p1363' })
              : sign(null, Buffer.from(signedInput), pair.privateKey);
          return {
            key: pair.publicKey,
            alg: i === 0 ? 'ES256' : 'EdDSA',
            signingInput: input,
            signature: signature.toString('base64url'),
          };
        };
        const results = await Promise.allSettled([
          pool.sign(key, { n: 0 }, proof(0, 'a.b')),
          pool.sign(key, { n: 1 }, proof(0, 'a.b', 'a.c')), // signed something else
          pool.sign(key, { n: 2 }),
          pool.sign(key, { n: 3 }, proof(1, 'x.y')),
          pool.sign(key, { n: 4 }, { ...proof(1, 'x.y'), key: provider[0]!.publicKey }), // wrong key
          // A proof that cannot even be checked fails alone, not the batch it is in.
          pool.sign(key, { n: 5 }, { ...proof(0, 'a.b'), alg: 'HS256' as SignatureProof['alg'] }),
          pool.sign(key, { n: 6 }),
        ]);
        expect(results.map((r) => r.status)).to.deep.equal([
          'fulfilled',
          'rejected',
          'fulfilled',
          'fulfilled',
          'rejected',
          'rejected',
          'fulfilled',
        ]);
        for (const r of results) {
          if (r.status === 'rejected') expect(r.reason).to.be.instanceOf(ProofFailedError);
          else expect((await verifyWith(key, r.value)).payload.n).to.be.a('number');
        }
      });

      it('signs a payload with several proofs (subject and actor tokens) only when every one verifies', async () => {
        const key = await generateSigningKey('ES256', Date.now(), LIFE, 'r1');
        const subject = generateKeyPairSync('ed25519');
        const actor = generateKeyPairSync('ec', { namedCurve: 'P-256' });
        const subjectProof = (signed: string): SignatureProof => ({
          key: subject.publicKey,
          alg: 'EdDSA',
          signingInput: 's.p',
          signature: sign(null, Buffer.from(signed), subject.privateKey).toString('base64url'),
        });
        const actorProof = (signed: string): SignatureProof => ({
          key: actor.publicKey,
          alg: 'ES256',
          signingInput: 'a.p',
          signature: sign('sha256', Buffer.from(signed), {
            key: actor.privateKey,
            dsaEncoding: 'ieee-p1363',
          }).toString('base64url'),
        });
        const results = await Promise.allSettled([
          pool.sign(key, { n: 0 }, [subjectProof('s.p'), actorProof('a.p')]),
          pool.sign(key, { n: 1 }, [subjectProof('s.p'), actorProof('a.forged')]),
          pool.sign(key, { n: 2 }, [subjectProof('s.forged'), actorProof('a.p')]),
          pool.sign(key, { n: 3 }, subjectProof('s.p')),
        ]);
        expect(results.map((r) => r.status)).to.deep.equal([
          'fulfilled',
          'rejected',
          'rejected',
          'fulfilled',
        ]);
        expect(
          await Promise.all([
            pool.check([subjectProof('s.p'), actorProof('a.p')]),
            pool.check([subjectProof('s.p'), actorProof('a.forged')]),
          ]),
        ).to.deep.equal([true, false]);
      });

      it('checks a proof without signing anything, next to signing requests', async () => {
        const key = await generateSigningKey('ES256', Date.now(), LIFE, 'r1');
        const pair = generateKeyPairSync('ed25519');
        const proof = (signed: string): SignatureProof => ({
          key: pair.publicKey,
          alg: 'EdDSA',
          signingInput: 'h.p',
          signature: sign(null, Buffer.from(signed), pair.privateKey).toString('base64url'),
        });
        const [good, bad, token] = await Promise.all([
          pool.check(proof('h.p')),
          pool.check(proof('h.q')),
          pool.sign(key, { n: 1 }),
        ]);
        expect([good, bad]).to.deep.equal([true, false]);
        expect((await verifyWith(key, token)).payload.n).to.equal(1);
      });

      it('after close, refuses new work and has finished what was queued', async () => {
        const key = await generateSigningKey('ES256', Date.now(), LIFE, 'r1');
        const queued = pool.sign(key, { last: true });
        await pool.close();
        expect((await verifyWith(key, await queued)).payload.last).to.equal(true);
        expect(await pool.sign(key, {}).catch((e: unknown) => (e as Error).message)).to.equal(
          'signing pool is closed',
        );
      });
    });
  }

  it('reports the size of signing batches only, not of batches that only check proofs', async () => {
    const sizes: number[] = [];
    const pool = new SigningPool({ workers: 0, onBatch: (size) => sizes.push(size) });
    try {
      const key = await generateSigningKey('ES256', Date.now(), LIFE, 'r1');
      const pair = generateKeyPairSync('ed25519');
      const signature = sign(null, Buffer.from('h.p'), pair.privateKey).toString('base64url');
      const proof: SignatureProof = { key: pair.publicKey, alg: 'EdDSA', signingInput: 'h.p', signature };
      await Promise.all([pool.sign(key, { n: 1 }), pool.sign(key, { n: 2 }), pool.check(proof)]);
      expect(sizes).to.deep.equal([2]);
    } finally {
      await pool.close();
    }
  });

  it('runs the requested number of worker threads', async () => {
    const pool = new SigningPool({ workers: 2 });
    expect(pool.threads).to.equal(2);
    await pool.close();
  });
});
