import { expect } from 'chai';
import sinon from 'sinon';
import { FaultTolerantPublicKeyRepository } from '../../../src/keys/fault-tolerant-repository.js';
import { KeyStore, MemoryOnlyBackend, type KeyStoreBackend } from '../../../src/keys/key-store.js';
import { MemoryPublicKeyRepository } from '../../../src/keys/memory-repository.js';
import { PendingWrites } from '../../../src/keys/pending-writes.js';
import { silentLogger } from '../../../src/log.js';
import { FakePostgres } from '../../support/fake-postgres.js';
import { makeKey } from '../../support/keys.js';
import { fakeTime, T0 } from '../../support/time.js';

const HOUR = 3_600_000;
const INTERVALS = { flushIntervalMs: 1000, probeIntervalMs: 700, cleanupIntervalMs: 60_000 };

function build(timeoutMs = 500) {
  const { timers, clock } = fakeTime();
  const pg = new FakePostgres(clock);
  const memory = new MemoryPublicKeyRepository(clock);
  const pending = new PendingWrites(clock);
  const backend = new FaultTolerantPublicKeyRepository({
    postgres: pg,
    memory,
    pending,
    clock,
    timeoutMs,
    log: silentLogger(),
  });
  const store = new KeyStore({ backend, ...INTERVALS, log: silentLogger() });
  return { timers, clock, pg, memory, pending, backend, store };
}

describe('key store actor', () => {
  let t: ReturnType<typeof build>;
  afterEach(async () => {
    await t.store.stop();
    t.timers.restore();
  });

  it('loads every key from Postgres when it starts', async () => {
    t = build();
    const key = makeKey({ expiresAt: T0 + HOUR });
    t.pg.rows.set(key.kid, key);
    await t.store.start();
    t.pg.mode = 'down';
    expect(await t.store.get(key.kid)).to.deep.equal(key);
  });

  it('timer messages never pile up behind a stalled Postgres: a caller waits for one round at most', async () => {
    t = build();
    t.pg.mode = 'down';
    await t.store.start();
    await t.store.create(makeKey({ expiresAt: T0 + HOUR }));
    t.pg.mode = 'stall';
    // Each probe and flush costs a 500 ms timeout, longer than the probe interval: ticks would stack up.
    await t.timers.tickAsync(20 * INTERVALS.probeIntervalMs);
    expect(t.store.backlog).to.be.at.most(2);
    const key = makeKey({ expiresAt: T0 + HOUR });
    const created = t.store.create(key);
    await t.timers.tickAsync(2 * 500);
    expect(await created).to.be.false;
    t.pg.mode = 'up'; // so that stopping's last flush round answers
    await t.timers.tickAsync(500);
  });

  it('a key Postgres refuses for its data is not reported stored, so it never counts as published', async () => {
    t = build();
    await t.store.start();
    const bad = makeKey({ expiresAt: T0 + HOUR });
    t.pg.refusedKids.add(bad.kid);
    expect(await t.store.create(bad)).to.be.false;
    expect(await t.store.create(makeKey({ expiresAt: T0 + HOUR }))).to.be.true;
    expect(t.store.state).to.include({ postgresAvailable: true, pending: 0, writesStuck: false });
  });

  it('the probe finds a Postgres that answers but refuses writes: the store reports its writes stuck', async () => {
    t = build();
    t.pg.mode = 'down';
    await t.store.start();
    await t.store.create(makeKey({ expiresAt: T0 + HOUR }));
    t.pg.mode = 'up';
    t.pg.failWrites = new Error('permission denied for table public_keys');
    await t.timers.tickAsync(INTERVALS.probeIntervalMs);
    expect(t.store.state).to.include({ postgresAvailable: false, pending: 1, writesStuck: true });
    t.pg.failWrites = undefined;
    await t.timers.tickAsync(INTERVALS.flushIntervalMs);
    expect(t.store.state).to.include({ postgresAvailable: true, pending: 0, writesStuck: false });
  });

  it('starts with Postgres unreachable and serves what it creates (FT7)', async () => {
    t = build();
    t.pg.mode = 'down';
    await t.store.start();
    const key = makeKey({ expiresAt: T0 + HOUR });
    await t.store.create(key);
    expect(await t.store.get(key.kid)).to.deep.equal(key);
    expect(t.store.state).to.include({ durable: true, postgresAvailable: false, pending: 1 });
  });

  it('flushes pending writes at the flush interval: a key created during an outage reaches Postgres within one interval after it returns', async () => {
    t = build();
    await t.store.start();
    t.pg.mode = 'down';
    const key = makeKey({ expiresAt: T0 + HOUR });
    await t.store.create(key);
    await t.timers.tickAsync(INTERVALS.flushIntervalMs);
    expect(t.pg.rows.has(key.kid)).to.be.false;
    t.pg.mode = 'up';
    await t.timers.tickAsync(INTERVALS.flushIntervalMs);
    expect(t.pg.rows.get(key.kid)).to.deep.equal(key);
    expect(t.store.state).to.include({ postgresAvailable: true, pending: 0 });
  });

  it('probes at the probe interval and serves from Postgres again once it answers', async () => {
    t = build();
    await t.store.start();
    t.pg.mode = 'down';
    await t.store.get('missing');
    t.pg.mode = 'up';
    await t.timers.tickAsync(INTERVALS.probeIntervalMs - 1);
    expect(t.pg.ping.called).to.be.false;
    await t.timers.tickAsync(1);
    expect(t.pg.ping.calledOnce).to.be.true;
    expect(t.store.state.postgresAvailable).to.be.true;
  });

  it('deletes expired keys at the cleanup interval', async () => {
    t = build();
    await t.store.start();
    const key = makeKey({ expiresAt: T0 + 1000 });
    await t.store.create(key);
    await t.timers.tickAsync(INTERVALS.cleanupIntervalMs);
    expect(t.pg.rows.has(key.kid)).to.be.false;
    expect(t.memory.size).to.equal(0);
  });

  it('never runs two operations at once (FT9)', async () => {
    const active: string[] = [];
    let overlaps = 0;
    const track =
      <T>(name: string, value: T) =>
      async (): Promise<T> => {
        if (active.length > 0) overlaps++;
        active.push(name);
        await new Promise((r) => setImmediate(r));
        active.pop();
        return value;
      };
    const backend: KeyStoreBackend = {
      durable: true,
      postgresAvailable: true,
      pendingCount: 0,
      writesStuck: false,
      isPending: () => false,
      isSetAside: () => false,
      loadAll: track('loadAll', true),
      flushPending: track('flush', { written: [], dropped: [], rejected: [], remaining: 0 }),
      probe: track('probe', true),
      create: track('create', undefined),
      get: track('get', undefined),
      list: track('list', []),
      deleteExpired: track('deleteExpired', 0),
    };
    const timers = sinon.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    t = { timers, store: new KeyStore({ backend, ...INTERVALS, log: silentLogger() }) } as ReturnType<
      typeof build
    >;
    await t.store.start();
    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      calls.push(t.store.create(makeKey({ expiresAt: T0 + HOUR })), t.store.get('k'), t.store.list());
      timers.tick(INTERVALS.flushIntervalMs); // timer messages join the same mailbox
    }
    await Promise.all(calls);
    await t.store.stop();
    expect(overlaps).to.equal(0);
  });

  it('loses no key when creates, flushes, gets and cleanups interleave across an outage (FT9)', async () => {
    t = build(50);
    await t.store.start();
    const created = [];
    const work: Promise<unknown>[] = [];
    for (let round = 0; round < 30; round++) {
      t.pg.mode = round % 3 === 0 ? 'down' : round % 3 === 1 ? 'stall' : 'up';
      const key = makeKey({ expiresAt: T0 + HOUR });
      created.push(key);
      work.push(t.store.create(key), t.store.get(key.kid), t.store.ask({ type: 'flush' }));
      work.push(t.store.ask({ type: 'deleteExpired' }), t.store.ask({ type: 'probe' }));
      await t.timers.tickAsync(60);
    }
    t.pg.mode = 'up';
    await t.timers.tickAsync(5 * INTERVALS.flushIntervalMs);
    await Promise.all(work);
    for (const key of created) {
      expect(t.pg.rows.get(key.kid), key.kid).to.deep.equal(key);
      expect(t.memory.getNow(key.kid), key.kid).to.deep.equal(key);
    }
    expect(t.store.state).to.include({ postgresAvailable: true, pending: 0 });
  });

  it('on stop, finishes queued messages, then runs one last flush', async () => {
    t = build();
    await t.store.start();
    t.pg.mode = 'down';
    const key = makeKey({ expiresAt: T0 + HOUR });
    const creating = t.store.create(key);
    t.pg.mode = 'down';
    const stopping = t.store.stop();
    await creating;
    t.pg.mode = 'up';
    await stopping;
    expect(t.pg.rows.get(key.kid)).to.deep.equal(key);
    expect(t.timers.countTimers()).to.equal(0);
  });

  it('works without a durable store', async () => {
    const { timers, clock } = fakeTime();
    const store = new KeyStore({
      backend: new MemoryOnlyBackend(new MemoryPublicKeyRepository(clock)),
      ...INTERVALS,
      log: silentLogger(),
    });
    t = { timers, store } as ReturnType<typeof build>;
    await store.start();
    const key = makeKey({ expiresAt: T0 + 1000 });
    await store.create(key);
    expect(await store.list()).to.deep.equal([key]);
    await timers.tickAsync(INTERVALS.cleanupIntervalMs);
    expect(await store.get(key.kid)).to.be.undefined;
    expect(store.state).to.include({ durable: false, pending: 0 });
  });
});
