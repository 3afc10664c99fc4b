import { expect } from 'chai';
import type pg from 'pg';
import { systemClock } from '../../src/clock.js';
import {
  createFaultTolerantRepository,
  type FaultTolerantPublicKeyRepository,
} from '../../src/keys/fault-tolerant-repository.js';
import { KeyStore } from '../../src/keys/key-store.js';
import { createPgPool } from '../../src/postgres/pg-pool.js';
import { PostgresPublicKeyRepository } from '../../src/keys/postgres-repository.js';
import { silentLogger } from '../../src/log.js';
import { makeKey } from '../support/keys.js';
import {
  databaseAddress,
  directPool,
  dropSchema,
  storedKids,
  TEST_DATABASE_URL,
  uniqueSchema,
  urlVia,
} from '../support/postgres.js';
import { TcpFaultProxy } from '../support/tcp-proxy.js';

const HOUR = 3_600_000;
const TIMEOUT = 300;

/** Polls `check` until it holds or `ms` pass; resolves with how long it took. */
async function eventually(check: () => Promise<boolean>, ms: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > ms) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('key store across a real Postgres outage (fault proxy)', () => {
  let admin: pg.Pool;
  let proxy: TcpFaultProxy;
  let pool: pg.Pool;
  let schema: string;

  function repository(): FaultTolerantPublicKeyRepository {
    return createFaultTolerantRepository({
      postgres: new PostgresPublicKeyRepository({ pool, schema, clock: systemClock }),
      clock: systemClock,
      timeoutMs: TIMEOUT,
      loadTimeoutMs: 1500,
      log: silentLogger(),
    });
  }

  beforeEach(async () => {
    admin = directPool();
    schema = uniqueSchema('outage');
    proxy = new TcpFaultProxy(databaseAddress(TEST_DATABASE_URL));
    await proxy.start();
    pool = createPgPool(
      {
        url: urlVia(proxy.port),
        poolMax: 4,
        queryTimeoutMs: 1000,
        connectTimeoutMs: 1000,
        applicationName: 'test',
      },
      silentLogger(),
    );
  });
  afterEach(async () => {
    await proxy.stop();
    await pool.end();
    await dropSchema(admin, schema);
    await admin.end();
  });

  it('runs the standard scenario against a real Postgres whose connections are cut and restored', async () => {
    const repo = repository();
    expect(await repo.loadAll()).to.be.true;
    const first = makeKey({ expiresAt: Date.now() + HOUR });
    const second = makeKey({ expiresAt: Date.now() + HOUR });

    await repo.create(first); // 1
    expect(await storedKids(admin, schema)).to.deep.equal([first.kid]);

    await proxy.setMode('refuse'); // 2
    expect(await repo.get(first.kid)).to.deep.equal(first);
    expect(repo.postgresAvailable).to.be.false;

    await repo.create(second); // 3
    expect(await repo.get(second.kid)).to.deep.equal(second);
    expect(repo.pendingCount).to.equal(1);

    expect((await repo.flushPending()).remaining).to.equal(1); // 4
    expect(await storedKids(admin, schema)).to.deep.equal([first.kid]);

    await proxy.setMode('pass'); // 5
    expect((await repo.flushPending()).written).to.deep.equal([second.kid]);

    expect(await storedKids(admin, schema)).to.have.members([first.kid, second.kid]); // 6
    expect(await repo.get(second.kid)).to.deep.equal(second);
    expect(repo.postgresAvailable).to.be.true;
  });

  it('with Postgres stalled, only the first read waits for the timeout; the rest answer from memory', async () => {
    const repo = repository();
    await repo.loadAll();
    const key = makeKey({ expiresAt: Date.now() + HOUR });
    await repo.create(key);
    await proxy.setMode('stall');

    let started = Date.now();
    expect(await repo.get(key.kid)).to.deep.equal(key);
    expect(Date.now() - started).to.be.at.least(TIMEOUT - 20);

    started = Date.now();
    for (let i = 0; i < 200; i++) expect(await repo.get(key.kid)).to.deep.equal(key);
    // 200 reads in less than one timeout: no per-call stall.
    expect(Date.now() - started).to.be.below(TIMEOUT);
  });

  for (const fault of ['refuse', 'stall'] as const) {
    it(`loses no key across an outage (${fault}); every pending key reaches Postgres within one flush interval of recovery`, async () => {
      const flushIntervalMs = 400;
      const store = new KeyStore({
        backend: repository(),
        flushIntervalMs,
        probeIntervalMs: 150,
        cleanupIntervalMs: 60_000,
        log: silentLogger(),
      });
      await store.start();
      const before = makeKey({ expiresAt: Date.now() + HOUR });
      await store.create(before);

      await proxy.setMode(fault);
      const during = [];
      for (let i = 0; i < 5; i++) {
        const key = makeKey({ expiresAt: Date.now() + HOUR });
        during.push(key);
        await store.create(key);
        expect(await store.get(key.kid)).to.deep.equal(key);
      }
      expect(await store.get(before.kid)).to.deep.equal(before);
      expect(store.state.pending).to.equal(5);
      await new Promise((r) => setTimeout(r, flushIntervalMs + 100)); // at least one flush round fails
      expect(store.state.pending).to.equal(5);

      await proxy.setMode('pass');
      const expected = [before, ...during].map((k) => k.kid).sort();
      // One interval, plus the round's own queries and a scheduling margin for a loaded machine. Recovery flushes
      // first and reloads every key after, so the keys are stored a moment before Postgres is marked available.
      await eventually(
        async () =>
          (await storedKids(admin, schema)).join() === expected.join() &&
          store.state.pending === 0 &&
          store.state.postgresAvailable,
        flushIntervalMs + 1500,
      ).catch(async (err: Error) => {
        const stored = await storedKids(admin, schema);
        throw new Error(
          `${err.message}: stored ${stored.length}/${expected.length}, state ${JSON.stringify(store.state)}`,
        );
      });
      for (const key of during) expect(await store.get(key.kid)).to.deep.equal(key);
      await store.stop();
    });
  }
});
