import { expect } from 'chai';
import type { Logger } from 'pino';
import { StorageError } from '../../../src/errors.js';
import sinon from 'sinon';
import type { Clock } from '../../../src/clock.js';
import { FaultTolerantPublicKeyRepository } from '../../../src/keys/fault-tolerant-repository.js';
import { MemoryPublicKeyRepository } from '../../../src/keys/memory-repository.js';
import { PendingWrites } from '../../../src/keys/pending-writes.js';
import type { PublicKey } from '../../../src/keys/public-key.js';
import { silentLogger } from '../../../src/log.js';
import { FakePostgres } from '../../support/fake-postgres.js';
import { makeKey } from '../../support/keys.js';
import { fakeTime, T0 } from '../../support/time.js';

// Behaviours of the fault-tolerant repository that mutation testing found unpinned: each test names the
// requirement of SPEC.md it holds in place.

const HOUR = 3_600_000;
const TIMEOUT = 500;

interface Fixture {
  timers: sinon.SinonFakeTimers;
  clock: Clock;
  pg: FakePostgres;
  memory: MemoryPublicKeyRepository;
  pending: PendingWrites;
  log: Logger;
  warn: sinon.SinonSpy;
  error: sinon.SinonSpy;
  info: sinon.SinonSpy;
  repo: FaultTolerantPublicKeyRepository;
}

function setup(memory?: MemoryPublicKeyRepository): Fixture {
  const { timers, clock } = fakeTime();
  const pg = new FakePostgres(clock);
  const mem = memory ?? new MemoryPublicKeyRepository(clock);
  const pending = new PendingWrites(clock);
  const log = silentLogger();
  const warn = sinon.spy(log, 'warn');
  const error = sinon.spy(log, 'error');
  const info = sinon.spy(log, 'info');
  const repo = new FaultTolerantPublicKeyRepository({
    postgres: pg,
    memory: mem,
    pending,
    clock,
    timeoutMs: TIMEOUT,
    log,
  });
  return { timers, clock, pg, memory: mem, pending, log, warn, error, info, repo };
}

/** The `err` of every "postgres call failed" warning, in order. */
function failedErrors(f: Fixture): string[] {
  return f.warn
    .getCalls()
    .filter((call) => call.args[1] === 'postgres call failed')
    .map((call) => (call.args[0] as { err: string }).err);
}

/** The `operation` of every "postgres call failed" warning, in order. */
function failedOperations(f: Fixture): string[] {
  return f.warn
    .getCalls()
    .filter((call) => call.args[1] === 'postgres call failed')
    .map((call) => (call.args[0] as { operation: string }).operation);
}

describe('fault-tolerant repository – pinned requirements', () => {
  let f: Fixture;
  beforeEach(() => {
    f = setup();
  });
  afterEach(() => {
    f.timers.restore();
    sinon.restore();
  });

  describe('FT4/T4 list', () => {
    it('FT4/T4: list while Postgres is up serves keys other replicas wrote and backfills memory with them', async () => {
      const ours = makeKey({ expiresAt: T0 + HOUR });
      const theirs = makeKey({ expiresAt: T0 + 2 * HOUR });
      await f.repo.create(ours);
      f.pg.rows.set(theirs.kid, theirs); // written by another replica
      const listed = await f.repo.list();
      expect(listed.map((k) => k.kid).sort()).to.deep.equal([ours.kid, theirs.kid].sort());
      expect(f.pg.list.calledOnce).to.be.true;
      expect(f.memory.getNow(theirs.kid)).to.deep.equal(theirs);
    });

    it('FT4/T4: list never returns an expired key, even one Postgres let through', async () => {
      const stale = makeKey({ expiresAt: T0 - 1 });
      const fresh = makeKey({ expiresAt: T0 + HOUR });
      f.pg.filterExpired = false;
      f.pg.rows.set(stale.kid, stale);
      f.pg.rows.set(fresh.kid, fresh);
      expect((await f.repo.list()).map((k) => k.kid)).to.deep.equal([fresh.kid]);
    });

    it('FT4/T4: the memory repository lists only unexpired keys, oldest first', async () => {
      const aging = makeKey({ expiresAt: T0 + 1000 });
      const fresh = makeKey({ expiresAt: T0 + HOUR });
      await f.memory.create(aging);
      await f.memory.create(fresh);
      expect(await f.memory.list()).to.deep.equal([aging, fresh]);
      f.timers.tick(999);
      expect(await f.memory.list()).to.deep.equal([aging, fresh]);
      f.timers.tick(1);
      expect(await f.memory.list()).to.deep.equal([fresh]);
      expect(await f.memory.get(aging.kid)).to.be.undefined;
      expect(f.memory.size).to.equal(2); // still held until deleteExpired
    });

    it('FT4: a key found in Postgres is answered from memory’s copy once backfilled', async () => {
      const key = makeKey({ expiresAt: T0 + HOUR });
      f.pg.rows.set(key.kid, key);
      const got = await f.repo.get(key.kid);
      expect(got).to.equal(f.memory.getNow(key.kid));
    });

    it('FT4: list falls back to memory when Postgres fails, and the failure is reported as "list"', async () => {
      const key = makeKey({ expiresAt: T0 + HOUR });
      await f.memory.create(key);
      f.pg.mode = 'down';
      expect(await f.repo.list()).to.deep.equal([key]);
      expect(f.repo.postgresAvailable).to.be.false;
      expect(failedOperations(f)).to.deep.equal(['list']);
    });

    it('T4: cached() lists memory only, never calling Postgres', async () => {
      const key = makeKey({ expiresAt: T0 + HOUR });
      await f.memory.create(key);
      f.pg.rows.set('other', makeKey({ kid: 'other', expiresAt: T0 + HOUR }));
      expect(await f.repo.cached()).to.deep.equal([key]);
      expect(f.pg.totalCalls).to.equal(0);
    });
  });

  describe('FT3/FT9 pending writes', () => {
    it('FT3/FT9: a pending key that reached Postgres directly leaves pending writes and is not written again', async () => {
      const key = makeKey({ expiresAt: T0 + HOUR });
      f.pending.add(key); // waiting from an earlier outage
      await f.repo.create(key); // Postgres is up: written directly
      expect(f.pending.has(key.kid)).to.be.false;
      expect(f.repo.isPending(key.kid)).to.be.false;
      const writes = f.pg.create.callCount;
      await f.repo.flushPending();
      expect(f.pg.create.callCount).to.equal(writes);
    });

    it('FT9: a kid already waiting keeps its first value; a second add does not replace it', async () => {
      const first = makeKey({ expiresAt: T0 + HOUR });
      const later = { ...first, expiresAt: T0 + 2 * HOUR };
      f.pending.add(first);
      f.pending.add(later);
      expect(f.pending.size).to.equal(1);
      await f.repo.flushPending();
      expect(f.pg.rows.get(first.kid)).to.deep.equal(first);
    });

    it('FT3: a flush round writes keys oldest first and reports what it wrote', async () => {
      const keys = [1, 2, 3].map(() => makeKey({ expiresAt: T0 + HOUR }));
      for (const key of keys) f.pending.add(key);
      const result = await f.repo.flushPending();
      expect(f.pg.create.getCalls().map((c) => c.args[0].kid)).to.deep.equal(keys.map((k) => k.kid));
      expect(result).to.deep.equal({
        written: keys.map((k) => k.kid),
        dropped: [],
        rejected: [],
        remaining: 0,
      });
      expect(f.info.calledWithMatch({ written: keys.map((k) => k.kid) }, 'pending keys flushed')).to.be.true;
    });

    it('FT3: a failed round reports the error and what is left; nothing pending makes no Postgres call', async () => {
      expect(await f.repo.flushPending()).to.deep.equal({
        written: [],
        dropped: [],
        rejected: [],
        remaining: 0,
      });
      expect(f.pg.totalCalls).to.equal(0);
      f.pending.add(makeKey({ expiresAt: T0 + HOUR }));
      f.pg.mode = 'down';
      const result = await f.repo.flushPending();
      expect(result.remaining).to.equal(1);
      expect(result.error).to.be.instanceOf(Error);
      expect(failedOperations(f)).to.deep.equal(['flush']);
      // A round that wrote and dropped nothing has nothing to report.
      expect(f.info.called).to.be.false;
    });

    it('FT3: a round that only dropped expired keys reports them', async () => {
      const due = makeKey({ expiresAt: T0 + 1000 });
      f.pending.add(due);
      f.timers.tick(1000);
      await f.repo.flushPending();
      expect(f.info.args).to.deep.equal([
        [{ written: [], dropped: [due.kid], remaining: 0 }, 'pending keys flushed'],
      ]);
    });

    it('FT3: a key expiring exactly now is dropped, one a millisecond younger is written', async () => {
      const due = makeKey({ expiresAt: T0 + 1000 });
      const young = makeKey({ expiresAt: T0 + 1001 });
      f.pending.add(due);
      f.pending.add(young);
      f.timers.tick(1000);
      const result = await f.repo.flushPending();
      expect(result.dropped).to.deep.equal([due.kid]);
      expect(result.written).to.deep.equal([young.kid]);
    });

    it('FT6: a flush that empties the queue while Postgres was available does not reload every key', async () => {
      f.pending.add(makeKey({ expiresAt: T0 + HOUR }));
      await f.repo.flushPending();
      expect(f.pg.list.called).to.be.false;
    });

    it('FT6: a flush that leaves keys waiting after an outage does not recover yet', async () => {
      f.pg.mode = 'down';
      await f.repo.create(makeKey({ expiresAt: T0 + HOUR }));
      await f.repo.create(makeKey({ expiresAt: T0 + HOUR }));
      f.pg.mode = 'up';
      let writes = 0;
      const create = f.pg.create;
      f.pg.rows.clear();
      // Only the first write of the round succeeds.
      sinon.replace(
        f.pg,
        'create',
        sinon.fake((key: PublicKey) => (writes++ === 0 ? create(key) : Promise.reject(new Error('flaky')))),
      );
      const result = await f.repo.flushPending();
      expect(result.remaining).to.equal(1);
      expect(f.pg.list.called).to.be.false;
      expect(f.repo.postgresAvailable).to.be.false;
    });
  });

  describe('FT5 deleteExpired logging', () => {
    it('FT5: a failing memory store is logged as an error, and pending writes are still cleaned', async () => {
      f.timers.restore();
      const memory = new MemoryPublicKeyRepository({ now: () => T0 });
      sinon.stub(memory, 'deleteExpired').rejects(new Error('boom'));
      f = setup(memory);
      f.pending.add(makeKey({ expiresAt: T0 + 1000 }));
      f.timers.tick(1000);
      expect(await f.repo.deleteExpired()).to.equal(0);
      expect(f.pending.size).to.equal(0);
      expect(f.error.calledOnce).to.be.true;
      const [fields, message] = f.error.firstCall.args as [{ err: unknown }, string];
      expect(message).to.equal('memory deleteExpired failed');
      expect(JSON.stringify(fields.err)).to.contain('boom');
    });

    it('FT5: a failing Postgres is logged with the operation "deleteExpired" and memory is still cleaned', async () => {
      const stale = makeKey({ expiresAt: T0 + 1000 });
      await f.memory.create(stale);
      f.timers.tick(1000);
      f.pg.mode = 'down';
      expect(await f.repo.deleteExpired()).to.equal(1);
      expect(failedOperations(f)).to.deep.equal(['deleteExpired']);
      expect(f.warn.calledWith('postgres marked unavailable; serving keys from memory')).to.be.true;
    });

    it('FT5/FT6: an outage is announced once, however many calls fail during it', async () => {
      const onAvailabilityChange = sinon.spy();
      f.timers.restore();
      f = setup();
      const repo = new FaultTolerantPublicKeyRepository({
        postgres: f.pg,
        memory: f.memory,
        pending: f.pending,
        clock: f.clock,
        timeoutMs: TIMEOUT,
        log: f.log,
        hooks: { onAvailabilityChange },
      });
      f.pg.mode = 'down';
      await repo.get('x');
      await repo.deleteExpired();
      await repo.deleteExpired();
      expect(failedOperations(f)).to.deep.equal(['get', 'deleteExpired', 'deleteExpired']);
      const announced = f.warn
        .getCalls()
        .filter((c) => c.args[0] === 'postgres marked unavailable; serving keys from memory');
      expect(announced).to.have.length(1);
      expect(onAvailabilityChange.args).to.deep.equal([[false]]);
      f.pg.mode = 'up';
      expect(await repo.probe()).to.be.true;
      expect(onAvailabilityChange.args).to.deep.equal([[false], [true]]);
      expect(
        f.warn
          .getCalls()
          .filter((c) => c.args[0] === 'postgres marked unavailable; serving keys from memory'),
      ).to.have.length(1);
    });

    it('FT2/FT5: a stalled call is logged as a timeout naming the Postgres operation', async () => {
      f.pg.mode = 'stall';
      const getting = f.repo.get('x');
      await f.timers.tickAsync(TIMEOUT);
      await getting;
      const deleting = f.repo.deleteExpired();
      await f.timers.tickAsync(TIMEOUT);
      await deleting;
      expect(failedErrors(f)).to.deep.equal([
        `TimeoutError: postgres get timed out after ${TIMEOUT} ms`,
        `TimeoutError: postgres deleteExpired timed out after ${TIMEOUT} ms`,
      ]);
    });

    it('FT5: what each store removed is logged', async () => {
      const stale = makeKey({ expiresAt: T0 + 1000 });
      f.pg.rows.set(stale.kid, stale);
      f.pending.add(stale);
      f.timers.tick(1000);
      await f.repo.deleteExpired();
      expect(f.info.calledWith({ removed: 1 }, 'expired keys deleted from postgres')).to.be.true;
      expect(f.info.calledWith({ dropped: [stale.kid] }, 'expired pending keys dropped')).to.be.true;
    });

    it('FT5: nothing to delete logs nothing', async () => {
      await f.repo.deleteExpired();
      expect(f.info.called).to.be.false;
      expect(f.warn.called).to.be.false;
    });
  });

  describe('FT6 probe', () => {
    it('FT6: a failed ping is reported as "ping" and does not fall through to a reload', async () => {
      f.pg.mode = 'down';
      await f.repo.get('x');
      expect(await f.repo.probe()).to.be.false;
      expect(f.pg.ping.calledOnce).to.be.true;
      expect(f.pg.list.called).to.be.false;
      expect(failedOperations(f)).to.deep.equal(['get', 'ping']);
    });

    it('FT6: a reload that fails after a good ping is reported as "reload"', async () => {
      f.pg.mode = 'down';
      await f.repo.get('x');
      f.pg.mode = 'up';
      f.pg.list = sinon.spy(() => Promise.reject<PublicKey[]>(new Error('still flaky')));
      expect(await f.repo.probe()).to.be.false;
      expect(failedOperations(f)).to.deep.equal(['get', 'reload']);
    });

    it('FT6: the reload after recovery is bounded by the timeout', async () => {
      f.pg.mode = 'down';
      await f.repo.get('x');
      f.pg.mode = 'up';
      f.pg.list = sinon.spy(() => new Promise<PublicKey[]>(() => undefined));
      const probing = f.repo.probe();
      await f.timers.tickAsync(TIMEOUT);
      expect(await probing).to.be.false;
      expect(failedOperations(f)).to.deep.equal(['get', 'reload']);
      expect(failedErrors(f)[1]).to.equal(`TimeoutError: postgres list timed out after ${TIMEOUT} ms`);
    });

    it('FT6: recovery logs how many keys were reloaded', async () => {
      f.pg.mode = 'down';
      await f.repo.get('x');
      f.pg.rows.set('k', makeKey({ kid: 'k', expiresAt: T0 + HOUR }));
      f.pg.mode = 'up';
      expect(await f.repo.probe()).to.be.true;
      expect(f.info.calledWith({ keys: 1 }, 'postgres is back; keys reloaded')).to.be.true;
    });
  });

  describe('FT7 start-up', () => {
    it('FT7: loadAll waits for its own, longer deadline and logs what it loaded', async () => {
      f.timers.restore();
      const { timers, clock } = fakeTime();
      const pg = new FakePostgres(clock);
      const log = silentLogger();
      const info = sinon.spy(log, 'info');
      const repo = new FaultTolerantPublicKeyRepository({
        postgres: pg,
        memory: new MemoryPublicKeyRepository(clock),
        pending: new PendingWrites(clock),
        clock,
        timeoutMs: TIMEOUT,
        loadTimeoutMs: 3 * TIMEOUT,
        log,
      });
      f.timers = timers;
      let answer: (keys: PublicKey[]) => void = () => undefined;
      pg.list = sinon.spy(() => new Promise<PublicKey[]>((resolve) => (answer = resolve)));
      const loading = repo.loadAll();
      await timers.tickAsync(2 * TIMEOUT);
      answer([makeKey({ expiresAt: T0 + HOUR })]);
      expect(await loading).to.be.true;
      expect(pg.list.calledOnce).to.be.true;
      expect(repo.postgresAvailable).to.be.true;
      expect(info.calledWith({ keys: 1 }, 'public keys loaded from postgres')).to.be.true;
    });

    it('FT7: a failed load is reported as "loadAll"', async () => {
      f.pg.mode = 'down';
      expect(await f.repo.loadAll()).to.be.false;
      expect(failedOperations(f)).to.deep.equal(['loadAll']);
    });

    it('FT7: a stalled load is logged as a timeout of the Postgres list', async () => {
      f.pg.mode = 'stall';
      const loading = f.repo.loadAll();
      await f.timers.tickAsync(TIMEOUT);
      expect(await loading).to.be.false;
      expect(failedErrors(f)).to.deep.equal([`TimeoutError: postgres list timed out after ${TIMEOUT} ms`]);
    });
  });

  describe('FT3/FT9 set-aside keys and stuck writes', () => {
    it('FT3: a key Postgres refuses for its data is set aside, logged, and forgotten once it expires', async () => {
      const refused = makeKey({ expiresAt: T0 + 1000 });
      f.pg.refusedKids.add(refused.kid);
      f.pending.add(refused);
      await f.repo.flushPending();
      expect(f.repo.isSetAside(refused.kid)).to.be.true;
      expect(f.pending.size).to.equal(0);
      expect(
        f.error.calledWithMatch(
          { kid: refused.kid },
          'postgres refused a public key for its data; set aside (it stays in memory and serves while valid)',
        ),
      ).to.be.true;
      f.timers.tick(999);
      await f.repo.deleteExpired();
      expect(f.repo.isSetAside(refused.kid)).to.be.true;
      f.timers.tick(1);
      await f.repo.deleteExpired();
      expect(f.repo.isSetAside(refused.kid)).to.be.false;
    });

    it('FT6: stuck writes are logged once per episode, and a round that leaves keys waiting keeps them stuck', async () => {
      f.pg.mode = 'down';
      await f.repo.create(makeKey({ expiresAt: T0 + HOUR }));
      f.pg.mode = 'up';
      f.pg.failWrites = new StorageError('permission denied for table public_keys');
      const stuckLogs = () =>
        f.error.getCalls().filter((c) => c.args[1] === 'postgres answers but refuses pending key writes');
      expect(await f.repo.probe()).to.be.false;
      expect(stuckLogs()).to.have.length(1); // at the first probe that finds it
      expect(await f.repo.probe()).to.be.false;
      const stuck = f.error
        .getCalls()
        .filter((c) => c.args[1] === 'postgres answers but refuses pending key writes');
      expect(stuck).to.have.length(1);
      expect(stuck[0]!.args[0]).to.deep.equal({
        remaining: 1,
        err: 'StorageError: permission denied for table public_keys',
      });
      await f.repo.flushPending();
      expect(f.repo.writesStuck).to.be.true;
    });

    it('FT9: memory keeps the first entry of a kid; a second create does not replace it', async () => {
      const first = makeKey({ expiresAt: T0 + HOUR });
      await f.memory.create(first);
      await f.memory.create({ ...first, expiresAt: T0 + 2 * HOUR });
      expect(f.memory.getNow(first.kid)).to.equal(first);
    });

    it('FT3: removing one pending key leaves the others waiting, in order', () => {
      const keys = [1, 2, 3].map(() => makeKey({ expiresAt: T0 + HOUR }));
      for (const key of keys) f.pending.add(key);
      f.pending.delete(keys[1]!.kid);
      expect(f.pending.kids()).to.deep.equal([keys[0]!.kid, keys[2]!.kid]);
      expect(f.pending.size).to.equal(2);
    });
  });

  describe('FT6 flush while unavailable', () => {
    it('FT6: a flush round with nothing pending while Postgres is unavailable calls nothing (no reload)', async () => {
      f.pg.mode = 'down';
      await f.repo.get('x');
      f.pg.mode = 'up';
      const calls = f.pg.totalCalls;
      await f.repo.flushPending();
      expect(f.pg.totalCalls).to.equal(calls);
      expect(f.repo.postgresAvailable).to.be.false;
    });
  });
});
