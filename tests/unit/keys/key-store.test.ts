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
import { generateSigningKey } from '../../../src/keys/signing-key.js';

const HOUR = 3_600_000;
const INTERVALS = {
  flushIntervalMs: 1000,
  probeIntervalMs: 700,
  cleanupIntervalMs: 60_000,
  reloadIntervalMs: 30_000,
};

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
  const store = new KeyStore({ backend, ...INTERVALS, clock, log: silentLogger() });
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
      cached: track('cached', []),
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

/**
 * A well-formed public key (its kid is its thumbprint), generated now and expiring `lifetimeMs` later: keys that
 * come from Postgres or peers are checked like any other, so these tests use real ones.
 */
async function realKey(lifetimeMs: number, replicaId = 'test-replica') {
  const key = await generateSigningKey(
    'ES256',
    Date.now(),
    { activeMs: 0, tokenMaxTtlMs: lifetimeMs, skewMs: 0 },
    replicaId,
  );
  return key.publicKey;
}

describe('key store – the snapshot it serves', () => {
  let t: ReturnType<typeof build>;
  afterEach(async () => {
    await t.store.stop();
    t.timers.restore();
  });

  const kids = () => t.store.snapshot.keys.map((k) => k.kid);
  const jwksKids = () =>
    (JSON.parse(t.store.snapshot.jwks.toString()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);

  it('holds the keys loaded at start, serialised as a JWKS with a strong ETag', async () => {
    t = build();
    const key = await realKey(HOUR);
    t.pg.rows.set(key.kid, key);
    await t.store.start();
    expect(kids()).to.deep.equal([key.kid]);
    expect(JSON.parse(t.store.snapshot.jwks.toString())).to.deep.equal({ keys: [key.jwk] });
    expect(t.store.snapshot.etag).to.match(/^"[A-Za-z0-9_-]{43}"$/);
    expect(JSON.parse(t.store.snapshot.get(key.kid)!.body.toString())).to.deep.equal(key.jwk);
  });

  it('is rebuilt on a create and on a peer’s announcement, and a created key is served when create resolves', async () => {
    t = build();
    await t.store.start();
    const before = t.store.snapshot;
    const own = await realKey(HOUR);
    await t.store.create(own);
    const afterCreate = t.store.snapshot;
    expect(afterCreate.version).to.be.above(before.version);
    expect(afterCreate.etag).not.to.equal(before.etag);
    expect(kids()).to.deep.equal([own.kid]);
    // An announcement reaches the store as a create of a peer's key.
    const peer = await realKey(HOUR, 'peer');
    await t.store.create(peer);
    expect(t.store.snapshot.version).to.be.above(afterCreate.version);
    expect(jwksKids()).to.have.members([own.kid, peer.kid]);
  });

  it('serves the same bytes and ETag for the same keys whatever order they arrived in', async () => {
    t = build();
    await t.store.start();
    const a = await realKey(HOUR);
    const b = await realKey(HOUR, 'peer');
    await t.store.create(a);
    await t.store.create(b);
    const other = new KeyStore({
      backend: new MemoryOnlyBackend(new MemoryPublicKeyRepository(t.clock)),
      ...INTERVALS,
      clock: t.clock,
      log: silentLogger(),
    });
    await other.start();
    try {
      await other.create(b);
      await other.create(a);
      expect(other.snapshot.etag).to.equal(t.store.snapshot.etag);
      expect(other.snapshot.jwks.equals(t.store.snapshot.jwks)).to.be.true;
    } finally {
      await other.stop();
    }
  });

  it('is rebuilt by the periodic reload when another replica wrote a key straight into Postgres', async () => {
    t = build();
    await t.store.start();
    const version = t.store.snapshot.version;
    const written = await realKey(HOUR);
    t.pg.rows.set(written.kid, written);
    await t.timers.tickAsync(INTERVALS.reloadIntervalMs - 1);
    expect(kids()).to.deep.equal([]);
    await t.timers.tickAsync(1);
    expect(kids()).to.deep.equal([written.kid]);
    expect(t.store.snapshot.version).to.equal(version + 1);
  });

  it('does not reload while Postgres is marked unavailable; the recovery reloads instead', async () => {
    t = build();
    await t.store.start();
    t.pg.mode = 'down';
    await t.store.get('anything'); // marks Postgres unavailable
    const lists = t.pg.list.callCount;
    await t.timers.tickAsync(INTERVALS.reloadIntervalMs);
    expect(await t.store.reload()).to.be.false;
    expect(t.pg.list.callCount).to.equal(lists);
    const written = await realKey(HOUR);
    t.pg.rows.set(written.kid, written);
    t.pg.mode = 'up';
    await t.timers.tickAsync(INTERVALS.probeIntervalMs);
    expect(kids()).to.deep.equal([written.kid]);
  });

  it('drops a key the moment it expires, before any clean-up runs, and only then', async () => {
    t = build();
    await t.store.start();
    const short = await realKey(5000);
    const long = await realKey(HOUR);
    await t.store.create(short);
    await t.store.create(long);
    const version = t.store.snapshot.version;
    await t.timers.tickAsync(4999);
    expect(t.store.snapshot.version).to.equal(version);
    expect(kids()).to.have.members([short.kid, long.kid]);
    await t.timers.tickAsync(1);
    expect(kids()).to.deep.equal([long.kid]);
    expect(t.store.snapshot.get(short.kid)).to.be.undefined;
    expect(t.store.snapshot.version).to.equal(version + 1);
    // The clean-up that follows removes it from memory; the set served does not change again.
    await t.timers.tickAsync(INTERVALS.cleanupIntervalMs);
    expect(t.store.snapshot.version).to.equal(version + 1);
  });

  it('is not rebuilt when nothing changed: reads, flushes, probes, reloads and repeated creates leave it as it is', async () => {
    t = build();
    const key = await realKey(HOUR);
    t.pg.rows.set(key.kid, key);
    await t.store.start();
    const snapshot = t.store.snapshot;
    await t.store.get(key.kid);
    await t.store.list();
    await t.store.create(key);
    await t.store.reload();
    await t.store.ask({ type: 'flush' });
    await t.store.ask({ type: 'probe' });
    await t.timers.tickAsync(INTERVALS.reloadIntervalMs);
    expect(t.store.snapshot).to.equal(snapshot);
  });

  it('shares one reload between concurrent requests for one', async () => {
    t = build();
    await t.store.start();
    const lists = t.pg.list.callCount;
    const answers = await Promise.all(Array.from({ length: 50 }, () => t.store.reload()));
    expect(answers.every((a) => a)).to.be.true;
    expect(t.pg.list.callCount).to.equal(lists + 1);
  });
});
