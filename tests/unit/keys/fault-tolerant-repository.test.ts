import { expect } from 'chai';
import sinon from 'sinon';
import type { Clock } from '../../../src/clock.js';
import { StorageError } from '../../../src/errors.js';
import {
  createFaultTolerantRepository,
  FaultTolerantPublicKeyRepository,
} from '../../../src/keys/fault-tolerant-repository.js';
import { MemoryPublicKeyRepository } from '../../../src/keys/memory-repository.js';
import { PendingWrites } from '../../../src/keys/pending-writes.js';
import type { PublicKey } from '../../../src/keys/public-key.js';
import { silentLogger } from '../../../src/log.js';
import { FakePostgres, type FakeMode } from '../../support/fake-postgres.js';
import { makeKey } from '../../support/keys.js';
import { fakeTime, T0 } from '../../support/time.js';

const HOUR = 3_600_000;
const TIMEOUT = 500;

interface Fixture {
  timers: sinon.SinonFakeTimers;
  clock: Clock;
  pg: FakePostgres;
  memory: MemoryPublicKeyRepository;
  pending: PendingWrites;
  repo: FaultTolerantPublicKeyRepository;
  hooks: {
    onAvailabilityChange: sinon.SinonSpy;
    onPostgresFailure: sinon.SinonSpy;
    onKeyRejected: sinon.SinonSpy;
  };
}

function setup(): Fixture {
  const { timers, clock } = fakeTime();
  const pg = new FakePostgres(clock);
  const memory = new MemoryPublicKeyRepository(clock);
  const pending = new PendingWrites(clock);
  const hooks = {
    onAvailabilityChange: sinon.spy(),
    onPostgresFailure: sinon.spy(),
    onKeyRejected: sinon.spy(),
  };
  const repo = new FaultTolerantPublicKeyRepository({
    postgres: pg,
    memory,
    pending,
    clock,
    timeoutMs: TIMEOUT,
    log: silentLogger(),
    hooks,
  });
  return { timers, clock, pg, memory, pending, repo, hooks };
}

/** Settles `work` while the fake clock runs past the repository's timeout, as a stalled call would need. */
async function settleStalled<T>(f: Fixture, work: Promise<T>): Promise<T> {
  await f.timers.tickAsync(TIMEOUT);
  return work;
}

describe('fault-tolerant repository – standard scenario (seed 000), one table-driven test', () => {
  // The six steps share one repository and run in order; each row sets Postgres's state, acts, and checks.
  const first = makeKey({ expiresAt: T0 + HOUR });
  const second = makeKey({ expiresAt: T0 + HOUR });
  let shared: Fixture;
  let got: PublicKey | undefined;
  const steps: {
    name: string;
    postgres: FakeMode;
    act: (s: Fixture) => Promise<void>;
    check: (s: Fixture) => void;
  }[] = [
    {
      name: '1. a key created while Postgres works lands in Postgres',
      postgres: 'up',
      act: (s) => s.repo.create(first),
      check: (s) => {
        expect(s.pg.rows.get(first.kid)).to.deep.equal(first);
        expect(s.pending.size).to.equal(0);
      },
    },
    {
      name: '2. the key read while Postgres is down comes from memory',
      postgres: 'down',
      act: async (s) => {
        got = await s.repo.get(first.kid);
      },
      check: (s) => {
        expect(got).to.deep.equal(first);
        expect(s.pg.get.calledOnceWith(first.kid)).to.be.true;
        expect(s.repo.postgresAvailable).to.be.false;
      },
    },
    {
      name: '3. a key created while Postgres is still down lands in memory and in pending writes',
      postgres: 'down',
      act: (s) => s.repo.create(second),
      check: (s) => {
        expect(s.memory.getNow(second.kid)).to.deep.equal(second);
        expect(s.pending.kids()).to.deep.equal([second.kid]);
        expect(s.pg.rows.has(second.kid)).to.be.false;
      },
    },
    {
      name: '4. the first flush, with Postgres still failing, leaves the key pending',
      postgres: 'down',
      act: async (s) => {
        const result = await s.repo.flushPending();
        expect(result.written).to.deep.equal([]);
      },
      check: (s) => {
        expect(s.pg.create.lastCall.args[0]).to.deep.equal(second);
        expect(s.pending.kids()).to.deep.equal([second.kid]);
        expect(s.pg.rows.has(second.kid)).to.be.false;
      },
    },
    {
      name: '5. the second flush writes the key to Postgres',
      postgres: 'up',
      act: async (s) => {
        const result = await s.repo.flushPending();
        expect(result.written).to.deep.equal([second.kid]);
      },
      check: (s) => {
        expect(s.pending.size).to.equal(0);
        expect(s.repo.postgresAvailable).to.be.true;
      },
    },
    {
      name: '6. the new key is in Postgres and still in memory',
      postgres: 'up',
      act: () => Promise.resolve(),
      check: (s) => {
        expect(s.pg.rows.get(second.kid)).to.deep.equal(second);
        expect(s.memory.getNow(second.kid)).to.deep.equal(second);
        expect(s.memory.getNow(first.kid)).to.deep.equal(first);
      },
    },
  ];

  before(() => {
    shared = setup();
  });
  after(() => shared.timers.restore());
  for (const step of steps) {
    it(step.name, async () => {
      shared.pg.mode = step.postgres;
      await step.act(shared);
      step.check(shared);
    });
  }
});

describe('fault-tolerant repository', () => {
  let f: Fixture;
  beforeEach(() => {
    f = setup();
  });
  afterEach(() => {
    f.timers.restore();
  });

  describe('create (FT2)', () => {
    it('writes memory first, then Postgres', async () => {
      const key = makeKey({ expiresAt: T0 + HOUR });
      const memoryCreate = sinon.spy(f.memory, 'create');
      await f.repo.create(key);
      expect(memoryCreate.calledBefore(f.pg.create)).to.be.true;
      expect(f.pg.rows.get(key.kid)).to.deep.equal(key);
    });

    it('a failing Postgres is not the caller’s error: the key waits in pending writes', async () => {
      f.pg.mode = 'down';
      const key = makeKey({ expiresAt: T0 + HOUR });
      await f.repo.create(key); // resolves
      expect(f.memory.getNow(key.kid)).to.deep.equal(key);
      expect(f.pending.has(key.kid)).to.be.true;
      expect(f.hooks.onPostgresFailure.calledWith('create')).to.be.true;
    });

    it('a stalled Postgres is given up on after the timeout, and the key waits in pending writes', async () => {
      f.pg.mode = 'stall';
      const key = makeKey({ expiresAt: T0 + HOUR });
      let settled = false;
      const done = f.repo.create(key).then(() => (settled = true));
      await f.timers.tickAsync(TIMEOUT - 1);
      expect(settled).to.be.false;
      await f.timers.tickAsync(1);
      await done;
      expect(f.pending.has(key.kid)).to.be.true;
      expect(f.repo.postgresAvailable).to.be.false;
    });
  });

  describe('pending writes (FT3)', () => {
    it('a key whose flush fails stays for the next round; the next round writes it', async () => {
      f.pg.mode = 'down';
      const key = makeKey({ expiresAt: T0 + HOUR });
      await f.repo.create(key);
      expect((await f.repo.flushPending()).remaining).to.equal(1);
      f.pg.mode = 'up';
      expect((await f.repo.flushPending()).written).to.deep.equal([key.kid]);
      expect(f.pg.rows.has(key.kid)).to.be.true;
    });

    it('a key that expired while pending is dropped and never written', async () => {
      f.pg.mode = 'down';
      const key = makeKey({ expiresAt: T0 + 1000 });
      await f.repo.create(key);
      f.timers.tick(1000);
      f.pg.mode = 'up';
      const attempts = f.pg.create.callCount;
      const result = await f.repo.flushPending();
      expect(result.dropped).to.deep.equal([key.kid]);
      expect(f.pg.create.callCount).to.equal(attempts);
      expect(f.pg.rows.has(key.kid)).to.be.false;
      expect(f.pending.size).to.equal(0);
    });

    it('writing a key Postgres already holds is not an error', async () => {
      const key = makeKey({ expiresAt: T0 + HOUR });
      f.pg.rows.set(key.kid, key);
      f.pending.add(key);
      const result = await f.repo.flushPending();
      expect(result.written).to.deep.equal([key.kid]);
      expect(f.pg.rows.size).to.equal(1);
    });

    it('a round stops at the first failure, so a stalled Postgres costs one timeout per round', async () => {
      f.pg.mode = 'down';
      const keys = [1, 2, 3].map(() => makeKey({ expiresAt: T0 + HOUR }));
      for (const key of keys) await f.repo.create(key);
      f.pg.mode = 'stall';
      const callsBefore = f.pg.create.callCount;
      const result = await settleStalled(f, f.repo.flushPending());
      expect(f.pg.create.callCount - callsBefore).to.equal(1);
      expect(result.remaining).to.equal(3);
      expect(f.pending.kids()).to.deep.equal(keys.map((k) => k.kid));
    });

    it('has no size limit', async () => {
      f.pg.mode = 'down';
      for (let i = 0; i < 5000; i++) await f.repo.create(makeKey({ expiresAt: T0 + HOUR }));
      expect(f.repo.pendingCount).to.equal(5000);
    });
  });

  describe('get (FT4)', () => {
    it('asks Postgres first and backfills memory with what it finds', async () => {
      const key = makeKey({ expiresAt: T0 + HOUR });
      f.pg.rows.set(key.kid, key);
      expect(await f.repo.get(key.kid)).to.deep.equal(key);
      expect(f.memory.getNow(key.kid)).to.deep.equal(key);
    });

    it('consults memory when Postgres answers "not found" (a pending key is not in Postgres yet)', async () => {
      const key = makeKey({ expiresAt: T0 + HOUR });
      f.pending.add(key);
      await f.memory.create(key);
      expect(await f.repo.get(key.kid)).to.deep.equal(key);
      expect(f.pg.get.calledOnce).to.be.true;
      expect(f.repo.postgresAvailable).to.be.true;
    });

    it('never overwrites the memory entry with Postgres’s copy', async () => {
      const inMemory = makeKey({ kid: 'same', expiresAt: T0 + 2 * HOUR });
      const inPostgres = { ...inMemory, expiresAt: T0 + HOUR };
      await f.memory.create(inMemory);
      f.pg.rows.set('same', inPostgres);
      expect(await f.repo.get('same')).to.deep.equal(inMemory);
      expect(f.memory.getNow('same')).to.deep.equal(inMemory);
    });

    it('never returns an expired key, from Postgres or from memory', async () => {
      const stale = makeKey({ expiresAt: T0 - 1 });
      f.pg.filterExpired = false; // a Postgres copy that slipped through must still be refused
      f.pg.rows.set(stale.kid, stale);
      expect(await f.repo.get(stale.kid)).to.be.undefined;
      const aging = makeKey({ expiresAt: T0 + 1000 });
      await f.memory.create(aging);
      f.timers.tick(1000);
      expect(await f.repo.get(aging.kid)).to.be.undefined;
    });

    it('answers from memory when Postgres fails', async () => {
      const key = makeKey({ expiresAt: T0 + HOUR });
      await f.memory.create(key);
      f.pg.mode = 'down';
      expect(await f.repo.get(key.kid)).to.deep.equal(key);
    });
  });

  describe('deleteExpired (FT5)', () => {
    it('cleans Postgres, memory and pending writes', async () => {
      const stale = makeKey({ expiresAt: T0 + 1000 });
      const fresh = makeKey({ expiresAt: T0 + HOUR });
      f.pg.rows.set(stale.kid, stale);
      await f.memory.create(stale);
      await f.memory.create(fresh);
      f.pending.add(stale);
      f.timers.tick(1000);
      expect(await f.repo.deleteExpired()).to.equal(1);
      expect(f.pg.rows.has(stale.kid)).to.be.false;
      expect(f.memory.size).to.equal(1);
      expect(f.pending.size).to.equal(0);
    });

    it('tries Postgres first even while it is marked unavailable, and its failure does not fail the caller', async () => {
      f.pg.mode = 'down';
      await f.repo.get('anything'); // marks unavailable
      const stale = makeKey({ expiresAt: T0 + 1000 });
      await f.memory.create(stale);
      f.pending.add(stale);
      f.timers.tick(1000);
      const memoryDelete = sinon.spy(f.memory, 'deleteExpired');
      expect(await f.repo.deleteExpired()).to.equal(1);
      expect(f.pg.deleteExpired.calledBefore(memoryDelete)).to.be.true;
      expect(f.pending.size).to.equal(0);
    });

    it('a failing memory store is logged and pending writes are still cleaned', async () => {
      const memory = new MemoryPublicKeyRepository(f.clock);
      sinon.stub(memory, 'deleteExpired').rejects(new Error('boom'));
      const pending = new PendingWrites(f.clock);
      const repo = new FaultTolerantPublicKeyRepository({
        postgres: f.pg,
        memory,
        pending,
        clock: f.clock,
        timeoutMs: TIMEOUT,
        log: silentLogger(),
      });
      pending.add(makeKey({ expiresAt: T0 + 1000 }));
      f.timers.tick(1000);
      expect(await repo.deleteExpired()).to.equal(0);
      expect(pending.size).to.equal(0);
      expect(f.pg.deleteExpired.calledOnce).to.be.true;
    });

    it('a stalled Postgres costs one timeout and the rest still runs', async () => {
      f.pg.mode = 'stall';
      const stale = makeKey({ expiresAt: T0 + 1000 });
      await f.memory.create(stale);
      f.timers.tick(1000);
      expect(await settleStalled(f, f.repo.deleteExpired())).to.equal(1);
    });
  });

  describe('availability (FT6)', () => {
    it('after one failure Postgres is not called on callers’ behalf: no timeout per call', async () => {
      const key = makeKey({ expiresAt: T0 + HOUR });
      await f.memory.create(key);
      f.pg.mode = 'stall';
      await settleStalled(f, f.repo.get(key.kid)); // the one timeout
      const calls = f.pg.totalCalls;
      for (let i = 0; i < 100; i++) {
        // No clock ticks: each call must settle without waiting for a timer.
        expect(await f.repo.get(key.kid)).to.deep.equal(key);
      }
      await f.repo.create(makeKey({ expiresAt: T0 + HOUR }));
      await f.repo.list();
      expect(f.pg.totalCalls).to.equal(calls);
      expect(f.hooks.onAvailabilityChange.calledOnceWith(false)).to.be.true;
    });

    it('the probe pings at its interval while nothing is pending and recovers by reloading every key', async () => {
      f.pg.mode = 'down';
      await f.repo.get('x');
      expect(await f.repo.probe()).to.be.false;
      expect(f.pg.ping.calledOnce).to.be.true;

      const elsewhere = makeKey({ expiresAt: T0 + HOUR }); // written by another replica during the outage
      f.pg.rows.set(elsewhere.kid, elsewhere);
      f.pg.mode = 'up';
      expect(await f.repo.probe()).to.be.true;
      expect(f.repo.postgresAvailable).to.be.true;
      expect(f.memory.getNow(elsewhere.kid)).to.deep.equal(elsewhere);
      expect(f.hooks.onAvailabilityChange.lastCall.args).to.deep.equal([true]);
    });

    it('the probe runs while keys are pending: a ping that answers flushes them, then reloads', async () => {
      f.pg.mode = 'down';
      const key = makeKey({ expiresAt: T0 + HOUR });
      await f.repo.create(key);
      expect(await f.repo.probe()).to.be.false;
      f.pg.mode = 'up';
      expect(await f.repo.probe()).to.be.true;
      expect(f.pg.ping.lastCall.calledBefore(f.pg.create.lastCall)).to.be.true;
      expect(f.pg.create.lastCall.calledBefore(f.pg.list.lastCall)).to.be.true;
      expect(f.repo.postgresAvailable).to.be.true;
      expect(f.pg.rows.has(key.kid)).to.be.true;
      expect(f.pending.size).to.equal(0);
    });

    it('writes are stuck while Postgres answers pings but refuses pending writes, and unstuck once they go through', async () => {
      f.pg.mode = 'down';
      const key = makeKey({ expiresAt: T0 + HOUR });
      await f.repo.create(key);
      f.pg.mode = 'up';
      f.pg.failWrites = new StorageError('permission denied for table public_keys');
      expect(await f.repo.probe()).to.be.false;
      expect(f.repo.writesStuck).to.be.true;
      expect(f.repo.postgresAvailable).to.be.false;
      expect(f.pending.has(key.kid)).to.be.true;

      f.pg.failWrites = undefined;
      expect(await f.repo.probe()).to.be.true;
      expect(f.repo.writesStuck).to.be.false;
      expect(f.pg.rows.has(key.kid)).to.be.true;
    });

    it('an outage is not stuck writes: a ping that fails clears the mark', async () => {
      f.pg.mode = 'down';
      await f.repo.create(makeKey({ expiresAt: T0 + HOUR }));
      f.pg.mode = 'up';
      f.pg.failWrites = new StorageError('permission denied');
      await f.repo.probe();
      f.pg.mode = 'down';
      await f.repo.probe();
      expect(f.repo.writesStuck).to.be.false;
    });

    it('is a no-op while Postgres is available', async () => {
      expect(await f.repo.probe()).to.be.true;
      expect(f.pg.totalCalls).to.equal(0);
    });

    it('stays unavailable if the reload after a good ping fails', async () => {
      f.pg.mode = 'down';
      await f.repo.get('x');
      f.pg.mode = 'up';
      f.pg.list = sinon.spy(() => Promise.reject<PublicKey[]>(new Error('still flaky')));
      expect(await f.repo.probe()).to.be.false;
      expect(f.repo.postgresAvailable).to.be.false;
    });
  });

  describe('keys Postgres refuses for their data (SQLSTATE 22/23)', () => {
    it('a key refused on create stays in memory and serves, is not pending, and Postgres stays available', async () => {
      const bad = makeKey({ expiresAt: T0 + HOUR });
      f.pg.refusedKids.add(bad.kid);
      await f.repo.create(bad);
      expect(f.pending.has(bad.kid)).to.be.false;
      expect(f.repo.postgresAvailable).to.be.true;
      expect(f.hooks.onAvailabilityChange.called).to.be.false;
      expect(f.hooks.onPostgresFailure.called).to.be.false;
      expect(f.hooks.onKeyRejected.calledOnceWith(bad.kid)).to.be.true;
      expect(await f.repo.get(bad.kid)).to.deep.equal(bad);
      expect(f.repo.isSetAside(bad.kid)).to.be.true;
    });

    it('a refused key at the head of pending writes is set aside and the keys behind it are written in the same round', async () => {
      f.pg.mode = 'down';
      const bad = makeKey({ expiresAt: T0 + HOUR });
      const later = [makeKey({ expiresAt: T0 + HOUR }), makeKey({ expiresAt: T0 + HOUR })];
      for (const key of [bad, ...later]) await f.repo.create(key);
      f.pg.mode = 'up';
      f.pg.refusedKids.add(bad.kid);
      const result = await f.repo.flushPending();
      expect(result.written).to.deep.equal(later.map((k) => k.kid));
      expect(result.rejected.map((r) => r.kid)).to.deep.equal([bad.kid]);
      expect(f.pending.size).to.equal(0);
      expect(f.repo.postgresAvailable).to.be.true;
      expect(f.hooks.onKeyRejected.calledOnceWith(bad.kid)).to.be.true;
      // Set aside, not lost: it still serves from memory while it is valid.
      expect(await f.repo.get(bad.kid)).to.deep.equal(bad);
      expect((await f.repo.flushPending()).written).to.deep.equal([]);
      expect(f.pg.create.withArgs(bad).callCount).to.equal(2); // the create and one flush, never again
    });

    it('a kid Postgres refuses to look up (a NUL byte in the URL) is answered from memory and leaves Postgres available', async () => {
      f.pg.refusedKids.add('bad\u0000kid');
      expect(await f.repo.get('bad\u0000kid')).to.be.undefined;
      expect(f.repo.postgresAvailable).to.be.true;
    });
  });

  describe('keys read from Postgres pass the gate (SPEC X7)', () => {
    function gated(admit: (key: PublicKey) => boolean) {
      const gate = { admit: sinon.spy((key: PublicKey, _source: string) => Promise.resolve(admit(key))) };
      const repo = new FaultTolerantPublicKeyRepository({
        postgres: f.pg,
        memory: f.memory,
        pending: f.pending,
        clock: f.clock,
        timeoutMs: TIMEOUT,
        log: silentLogger(),
        gate,
      });
      return { gate, repo };
    }

    it('a row the gate refuses is neither stored in memory nor served, by loadAll, list or get', async () => {
      const forged = makeKey({ expiresAt: T0 + HOUR });
      const genuine = makeKey({ expiresAt: T0 + HOUR });
      f.pg.rows.set(forged.kid, forged);
      f.pg.rows.set(genuine.kid, genuine);
      const { gate, repo } = gated((key) => key.kid !== forged.kid);
      expect(await repo.loadAll()).to.be.true;
      expect((await repo.list()).map((k) => k.kid)).to.deep.equal([genuine.kid]);
      expect(await repo.get(forged.kid)).to.be.undefined;
      expect(f.memory.getNow(forged.kid)).to.be.undefined;
      expect(gate.admit.alwaysCalledWith(sinon.match.any, 'postgres')).to.be.true;
    });

    it('a key memory already holds is served as memory holds it, without a check', async () => {
      const mine = makeKey({ expiresAt: T0 + HOUR });
      await f.memory.create(mine);
      f.pg.rows.set(mine.kid, { ...mine, expiresAt: T0 + 2 * HOUR });
      const { gate, repo } = gated(() => false);
      expect(await repo.get(mine.kid)).to.deep.equal(mine);
      expect(await repo.list()).to.deep.equal([mine]);
      expect(gate.admit.called).to.be.false;
    });
  });

  describe('start-up (FT7)', () => {
    it('loads every unexpired key from Postgres into memory', async () => {
      const keys = [makeKey({ expiresAt: T0 + HOUR }), makeKey({ expiresAt: T0 + 2 * HOUR })];
      const stale = makeKey({ expiresAt: T0 - 1 });
      for (const key of [...keys, stale]) f.pg.rows.set(key.kid, key);
      expect(await f.repo.loadAll()).to.be.true;
      f.pg.mode = 'down';
      expect(await f.memory.list()).to.deep.equal(keys);
    });

    it('starts with Postgres unreachable: marked unavailable, and a new key goes to memory and pending writes', async () => {
      f.pg.mode = 'stall';
      expect(await settleStalled(f, f.repo.loadAll())).to.be.false;
      expect(f.repo.postgresAvailable).to.be.false;
      const key = makeKey({ expiresAt: T0 + HOUR });
      await f.repo.create(key);
      expect(f.memory.getNow(key.kid)).to.deep.equal(key);
      expect(f.pending.has(key.kid)).to.be.true;
      expect(f.pg.create.called).to.be.false;
    });
  });

  describe('time (FT8)', () => {
    it('the production wiring passes its clock down to memory and pending writes', async () => {
      let now = T0;
      const clock = { now: () => now };
      const pg = new FakePostgres(clock);
      pg.mode = 'down';
      const repo = createFaultTolerantRepository({
        postgres: pg,
        clock,
        timeoutMs: TIMEOUT,
        log: silentLogger(),
      });
      const key = makeKey({ expiresAt: T0 + 1000 });
      await repo.create(key);
      expect(await repo.get(key.kid)).to.deep.equal(key);
      now = T0 + 1000;
      expect(await repo.get(key.kid)).to.be.undefined;
      pg.mode = 'up';
      expect((await repo.flushPending()).dropped).to.deep.equal([key.kid]);
    });
  });
});
