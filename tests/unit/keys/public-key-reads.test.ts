import { expect } from 'chai';
import sinon from 'sinon';
import type { Clock } from '../../../src/clock.js';
import { FaultTolerantPublicKeyRepository } from '../../../src/keys/fault-tolerant-repository.js';
import { KeySetSnapshot } from '../../../src/keys/key-set-snapshot.js';
import { KeyStore } from '../../../src/keys/key-store.js';
import { MemoryPublicKeyRepository } from '../../../src/keys/memory-repository.js';
import { PendingWrites } from '../../../src/keys/pending-writes.js';
import type { PublicKey } from '../../../src/keys/public-key.js';
import { PublicKeyReads, type KeySource } from '../../../src/keys/public-key-reads.js';
import type { Pingable, PublicKeyRepository } from '../../../src/keys/repository.js';
import { silentLogger } from '../../../src/log.js';
import { FakePostgres } from '../../support/fake-postgres.js';
import { makeKey } from '../../support/keys.js';
import { fakeTime, T0 } from '../../support/time.js';

const HOUR = 3_600_000;

/** A key source whose reloads the test settles by hand, and whose "Postgres" is a list the test fills. */
class FakeSource implements KeySource {
  snapshot: KeySetSnapshot;
  readonly postgres: PublicKey[] = [];
  reload = sinon.spy((): Promise<boolean> => {
    return new Promise<boolean>((resolve) => {
      this.#waiting.push(() => {
        this.snapshot = KeySetSnapshot.build(this.postgres, this.clock.now(), this.snapshot.version + 1);
        resolve(true);
      });
    });
  });
  #waiting: (() => void)[] = [];

  constructor(private readonly clock: Clock) {
    this.snapshot = KeySetSnapshot.build([], clock.now(), 0);
  }

  /** Lets every reload asked for so far answer. */
  settle(): void {
    for (const answer of this.#waiting.splice(0)) answer();
  }
}

const randomKid = () => Math.random().toString(36).slice(2).padEnd(43, 'x');

describe('public key reads', () => {
  let t: ReturnType<typeof fakeTime>;
  let source: FakeSource;
  let reads: PublicKeyReads;
  let queries: number;

  beforeEach(() => {
    t = fakeTime();
    source = new FakeSource(t.clock);
    queries = 0;
    reads = new PublicKeyReads({
      keys: source,
      clock: t.clock,
      missReloadGapMs: 1000,
      negativeTtlMs: 5000,
      negativeMax: 100,
      onPostgresQuery: () => queries++,
    });
  });
  afterEach(() => t.timers.restore());

  it('answers a known kid from memory, synchronously, without a lookup', () => {
    const key = makeKey({ expiresAt: T0 + HOUR });
    source.snapshot = KeySetSnapshot.build([key], T0, 1);
    const found = reads.find(key.kid);
    expect(found).not.to.be.instanceOf(Promise);
    expect((found as { key: PublicKey }).key).to.equal(key);
    expect(source.reload.called).to.be.false;
  });

  it('N concurrent reads of one unknown kid cost one lookup, and all get its answer', async () => {
    const key = makeKey({ expiresAt: T0 + HOUR });
    const answers = Array.from({ length: 200 }, () => Promise.resolve(reads.find(key.kid)));
    expect(source.reload.callCount).to.equal(1);
    source.postgres.push(key); // written by a replica this one does not hear from
    source.settle();
    const found = await Promise.all(answers);
    expect(found.every((f) => f?.key === key)).to.be.true;
    expect(queries).to.equal(1);
    // Now in memory: later reads cost nothing.
    expect(reads.find(key.kid)).not.to.be.instanceOf(Promise);
    expect(source.reload.callCount).to.equal(1);
  });

  it('remembers a kid found nowhere for the negative TTL, then looks again', async () => {
    const kid = randomKid();
    const first = reads.find(kid);
    source.settle();
    expect(await first).to.be.undefined;
    await t.timers.tickAsync(4999);
    expect(reads.find(kid)).to.be.undefined; // synchronous: no lookup
    expect(source.reload.callCount).to.equal(1);
    await t.timers.tickAsync(1);
    const again = reads.find(kid);
    expect(again).to.be.instanceOf(Promise);
    source.settle();
    await again;
    expect(source.reload.callCount).to.equal(2);
  });

  it('a flood of random kids costs at most one lookup per gap, and every read is answered', async () => {
    const answered: Promise<unknown>[] = [];
    for (let ms = 0; ms < 10_000; ms += 10) {
      for (let i = 0; i < 20; i++) answered.push(Promise.resolve(reads.find(randomKid())));
      source.settle();
      await t.timers.tickAsync(10);
    }
    // The kids asked for in the last gap wait for one more lookup.
    await t.timers.tickAsync(1000);
    source.settle();
    const results = await Promise.all(answered);
    expect(results).to.have.length(20_000);
    expect(results.every((r) => r === undefined)).to.be.true;
    // 10 s of flood: one lookup at its start, then one per second.
    expect(source.reload.callCount).to.be.at.most(11);
    expect(queries).to.equal(source.reload.callCount);
  });

  it('a kid asked for between two lookups waits for the next one, and is found if it exists', async () => {
    const first = reads.find(randomKid());
    source.settle();
    await first;
    await t.timers.tickAsync(400);
    const key = makeKey({ expiresAt: T0 + HOUR });
    source.postgres.push(key);
    let found: unknown;
    void Promise.resolve(reads.find(key.kid)).then((f) => (found = f));
    await t.timers.tickAsync(599);
    expect(source.reload.callCount).to.equal(1);
    await t.timers.tickAsync(1);
    expect(source.reload.callCount).to.equal(2);
    source.settle();
    await t.timers.tickAsync(0);
    expect((found as { key: PublicKey } | undefined)?.key).to.equal(key);
  });

  it('lets at most maxWaiting distinct kids wait; more are answered as unknown at once', async () => {
    reads = new PublicKeyReads({ keys: source, clock: t.clock, maxWaiting: 50 });
    const waiting = Array.from({ length: 50 }, () => reads.find(randomKid()));
    expect(waiting.every((w) => w instanceof Promise)).to.be.true;
    expect(reads.waiting).to.equal(50);
    expect(reads.find(randomKid())).to.be.undefined;
    source.settle();
    await Promise.all(waiting.map((w) => Promise.resolve(w)));
    expect(reads.waiting).to.equal(0);
  });

  it('keeps the negative cache within its bound, forgetting the oldest kids first', async () => {
    const kids = Array.from({ length: 150 }, randomKid);
    for (const kid of kids) {
      const pending = reads.find(kid);
      source.settle();
      await pending;
      await t.timers.tickAsync(1000); // past the gap, so each kid gets its own lookup
    }
    expect(reads.negativeSize).to.equal(100);
    const lookups = source.reload.callCount;
    expect(reads.find(kids.at(-1)!)).to.be.undefined; // remembered
    expect(source.reload.callCount).to.equal(lookups);
  });

  it('never looks up a kid longer than any kid this service makes', () => {
    expect(reads.find('k'.repeat(129))).to.be.undefined;
    expect(source.reload.called).to.be.false;
  });

  it('a lookup that fails answers unknown, and the next gap looks again', async () => {
    source.reload = sinon.spy(() => Promise.reject(new Error('key store stopped')));
    expect(await reads.find(randomKid())).to.be.undefined;
    await t.timers.tickAsync(1000);
    expect(await reads.find(randomKid())).to.be.undefined;
    expect(source.reload.callCount).to.equal(2);
    expect(queries).to.equal(0);
  });
});

/** The fake Postgres, with every call taking `ms` of (fake) time, as a real round trip does. */
class SlowPostgres implements PublicKeyRepository, Pingable {
  constructor(
    readonly inner: FakePostgres,
    private readonly ms: number,
  ) {}
  #slow<T>(call: () => Promise<T>): Promise<T> {
    return new Promise((resolve) => setTimeout(resolve, this.ms)).then(call);
  }
  create(key: PublicKey) {
    return this.#slow(() => this.inner.create(key));
  }
  get(kid: string) {
    return this.#slow(() => this.inner.get(kid));
  }
  list() {
    return this.#slow(() => this.inner.list());
  }
  deleteExpired() {
    return this.#slow(() => this.inner.deleteExpired());
  }
  ping() {
    return this.#slow(() => this.inner.ping());
  }
}

describe('public key reads – with the key store', () => {
  it('a key creation is not delayed behind a flood of reads of unknown kids', async () => {
    const QUERY_MS = 10;
    const t = fakeTime();
    const pg = new FakePostgres(t.clock);
    const store = new KeyStore({
      backend: new FaultTolerantPublicKeyRepository({
        postgres: new SlowPostgres(pg, QUERY_MS),
        memory: new MemoryPublicKeyRepository(t.clock),
        pending: new PendingWrites(t.clock),
        clock: t.clock,
        timeoutMs: 500,
        log: silentLogger(),
      }),
      flushIntervalMs: 5000,
      probeIntervalMs: 2000,
      cleanupIntervalMs: 60_000,
      reloadIntervalMs: 30_000,
      clock: t.clock,
      log: silentLogger(),
    });
    const startingUp = store.start();
    await t.timers.tickAsync(QUERY_MS);
    await startingUp;
    const reads = new PublicKeyReads({ keys: store, clock: t.clock });
    try {
      const calls = pg.totalCalls;
      const flood: unknown[] = [];
      for (let i = 0; i < 5000; i++) flood.push(reads.find(randomKid()));
      const key = makeKey({ expiresAt: T0 + HOUR });
      const startedAt = t.clock.now();
      let doneAt: number | undefined;
      void store.create(key).then(() => (doneAt = t.clock.now()));
      while (doneAt === undefined) await t.timers.tickAsync(1);
      // At most one reload ahead of it, then its own insert: two round trips, far below the 50 ms.
      expect(doneAt - startedAt).to.be.at.most(2 * QUERY_MS);
      expect(pg.rows.has(key.kid)).to.be.true;
      await t.timers.tickAsync(QUERY_MS);
      await Promise.all(flood);
      expect(pg.totalCalls - calls).to.equal(2); // one reload for 5,000 reads, one insert
      expect(store.snapshot.get(key.kid)).not.to.be.undefined;
    } finally {
      const stopping = store.stop();
      await t.timers.tickAsync(QUERY_MS);
      await stopping;
      t.timers.restore();
    }
  });
});
