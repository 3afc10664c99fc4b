import { expect } from 'chai';
import type pg from 'pg';
import { systemClock } from '../../src/clock.js';
import { StorageDataError, StorageError } from '../../src/errors.js';
import { createFaultTolerantRepository } from '../../src/keys/fault-tolerant-repository.js';
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

/** Polls `check` until it holds or `ms` pass. */
async function eventually(check: () => Promise<boolean>, ms: number): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > ms) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A key Postgres refuses for its data: a NUL byte in a text column (SQLSTATE 22021). */
function nulKey() {
  return makeKey({ expiresAt: Date.now() + HOUR, replicaId: 'bad\u0000replica' });
}

describe('key store – keys Postgres refuses for their data (real Postgres)', () => {
  let admin: pg.Pool;
  let proxy: TcpFaultProxy;
  let pool: pg.Pool;
  let schema: string;
  let postgres: PostgresPublicKeyRepository;

  beforeEach(async () => {
    admin = directPool();
    schema = uniqueSchema('dataerr');
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
    postgres = new PostgresPublicKeyRepository({ pool, schema, clock: systemClock });
  });
  afterEach(async () => {
    await proxy.stop();
    await pool.end();
    await dropSchema(admin, schema);
    await admin.end();
  });

  it('the Postgres repository tells a refused record (SQLSTATE 22) from an unavailable store', async () => {
    const nul = await postgres.create(nulKey()).catch((err: unknown) => err);
    expect(nul).to.be.instanceOf(StorageDataError).and.to.include({ sqlState: '22021' });
    // A date before 4713 BC is beyond Postgres's range (a Date can hold it).
    const ancient = makeKey({ expiresAt: Date.now() + HOUR, createdAt: -8.64e15 });
    const date = await postgres.create(ancient).catch((err: unknown) => err);
    expect(date).to.be.instanceOf(StorageDataError);
    expect((date as StorageDataError).sqlState).to.match(/^22/);

    await proxy.setMode('refuse');
    const down = await postgres.ping().catch((err: unknown) => err);
    expect(down).to.be.instanceOf(StorageError).and.not.to.be.instanceOf(StorageDataError);
  });

  it('a refused key at the head of pending writes leaves later keys free to reach Postgres within one flush interval', async () => {
    const flushIntervalMs = 400;
    const store = new KeyStore({
      backend: createFaultTolerantRepository({
        postgres,
        clock: systemClock,
        timeoutMs: TIMEOUT,
        loadTimeoutMs: 1500,
        log: silentLogger(),
      }),
      flushIntervalMs,
      // Longer than the test: the flush round alone must recover.
      probeIntervalMs: 60_000,
      cleanupIntervalMs: 60_000,
      log: silentLogger(),
    });
    await store.start();
    try {
      await proxy.setMode('refuse');
      const bad = nulKey();
      await store.create(bad);
      const later = [];
      for (let i = 0; i < 3; i++) {
        const key = makeKey({ expiresAt: Date.now() + HOUR });
        later.push(key);
        await store.create(key);
      }
      expect(store.state.pending).to.equal(4);

      await proxy.setMode('pass');
      const expected = later.map((k) => k.kid).sort();
      await eventually(
        async () =>
          (await storedKids(admin, schema)).join() === expected.join() &&
          store.state.pending === 0 &&
          store.state.postgresAvailable,
        flushIntervalMs + 1500,
      );
      // Set aside, not lost: the refused key still serves from memory while it is valid.
      expect(await store.get(bad.kid)).to.deep.equal(bad);
      expect(store.state.writesStuck).to.be.false;

      // And once Postgres is available, a refused key does not make it unavailable.
      expect(await store.create(nulKey())).to.be.false;
      const after = makeKey({ expiresAt: Date.now() + HOUR });
      expect(await store.create(after)).to.be.true;
      expect(store.state).to.include({ postgresAvailable: true, pending: 0 });
      expect(await storedKids(admin, schema)).to.include(after.kid);
    } finally {
      await store.stop();
    }
  });
});
