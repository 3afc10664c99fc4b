import { expect } from 'chai';
import sinon from 'sinon';
import { KeySetSnapshot } from '../../../src/keys/key-set-snapshot.js';
import type { PublicKey } from '../../../src/keys/public-key.js';
import { PublicKeyReads, type KeySource } from '../../../src/keys/public-key-reads.js';
import { makeKey } from '../../support/keys.js';
import { fakeTime, T0 } from '../../support/time.js';

// Bounded lookups of unknown kids (T4, issue 14) at the edges mutation testing found unpinned.

const HOUR = 3_600_000;

describe('public key reads – pinned requirements', () => {
  let t: ReturnType<typeof fakeTime>;
  let postgres: PublicKey[];
  let queried: boolean | 'fail';
  let source: KeySource & { reload: sinon.SinonSpy<[], Promise<boolean>> };
  let queries: number;
  let reads: PublicKeyReads;

  beforeEach(() => {
    t = fakeTime();
    postgres = [];
    queried = true;
    queries = 0;
    const keys = {
      snapshot: KeySetSnapshot.build([], T0, 0),
      reload: sinon.spy((): Promise<boolean> => {
        if (queried === 'fail') return Promise.reject(new Error('key store stopped'));
        keys.snapshot = KeySetSnapshot.build(postgres, t.clock.now(), keys.snapshot.version + 1);
        return Promise.resolve(queried);
      }),
    };
    source = keys;
    reads = new PublicKeyReads({ keys: source, clock: t.clock, onPostgresQuery: () => queries++ });
  });
  afterEach(() => t.timers.restore());

  it('T4: a kid of 128 characters is looked up; one of 129 is answered as unknown at once', async () => {
    const longest = reads.find('k'.repeat(128));
    expect(longest).to.be.instanceOf(Promise);
    expect(await longest).to.equal(undefined);
    expect(reads.find('k'.repeat(129))).to.equal(undefined);
    expect(source.reload.callCount).to.equal(1);
  });

  it('T4: concurrent reads of one kid share the very same answer; distinct kids wait apart', async () => {
    const first = reads.find('a');
    expect(reads.find('a')).to.equal(first);
    expect(reads.waiting).to.equal(1);
    const second = reads.find('b');
    expect(reads.waiting).to.equal(2);
    await Promise.all([first, second]);
    expect(reads.waiting).to.equal(0);
  });

  it('T4: a reload that did not query Postgres (memory answered) is not counted as a query', async () => {
    queried = false;
    await reads.find('a');
    expect(source.reload.callCount).to.equal(1);
    expect(queries).to.equal(0);
    queried = true;
    await t.timers.tickAsync(1000);
    await reads.find('b');
    expect(queries).to.equal(1);
  });

  it('T4: a failed reload answers unknown and counts no query', async () => {
    queried = 'fail';
    expect(await reads.find('a')).to.equal(undefined);
    expect(queries).to.equal(0);
    expect(reads.negativeSize).to.equal(1);
  });

  it('T4: a kid found by the lookup is not remembered as unknown', async () => {
    const key = makeKey({ expiresAt: T0 + HOUR });
    postgres.push(key);
    expect((await reads.find(key.kid))?.key).to.equal(key);
    expect(reads.negativeSize).to.equal(0);
    const missing = reads.find('missing'); // waits for the next gap
    await t.timers.tickAsync(1000);
    expect(await missing).to.equal(undefined);
    expect(reads.negativeSize).to.equal(1);
  });
});
