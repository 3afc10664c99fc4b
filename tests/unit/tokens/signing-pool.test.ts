import { expect } from 'chai';
import { createLocalJWKSet, jwtVerify, type JWK } from 'jose';
import { generateSigningKey, type SigningKey } from '../../../src/tokens/signing-key.js';
import { SigningPool } from '../../../src/tokens/signing-pool.js';

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
            expect(protectedHeader).to.deep.equal({ alg, kid: key.kid, typ: 'JWT' });
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

  it('runs the requested number of worker threads', async () => {
    const pool = new SigningPool({ workers: 2 });
    expect(pool.threads).to.equal(2);
    await pool.close();
  });
});
