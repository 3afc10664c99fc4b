import { expect } from 'chai';
import type pg from 'pg';
import { StorageError } from '../../src/errors.js';
import { createPgPool } from '../../src/postgres/pg-pool.js';
import { PostgresPublicKeyRepository } from '../../src/keys/postgres-repository.js';
import { silentLogger } from '../../src/log.js';
import { makeKey } from '../support/keys.js';
import { closedPort } from '../support/tcp-proxy.js';
import {
  directPool,
  dropSchema,
  storedKids,
  TEST_DATABASE_URL,
  uniqueSchema,
  urlVia,
} from '../support/postgres.js';

const HOUR = 3_600_000;

describe('postgres repository (real Postgres)', () => {
  const schema = uniqueSchema('pgrepo');
  let now = Date.now();
  const clock = { now: () => now };
  let pool: pg.Pool;
  let admin: pg.Pool;
  let repo: PostgresPublicKeyRepository;

  before(() => {
    admin = directPool();
    pool = createPgPool(
      {
        url: TEST_DATABASE_URL,
        poolMax: 4,
        queryTimeoutMs: 2000,
        connectTimeoutMs: 2000,
        applicationName: 'test',
      },
      silentLogger(),
    );
    repo = new PostgresPublicKeyRepository({ pool, schema, clock });
  });
  after(async () => {
    await dropSchema(admin, schema);
    await pool.end();
    await admin.end();
  });

  it('creates its schema on first use, and migrating again (even concurrently) changes nothing', async () => {
    const other = new PostgresPublicKeyRepository({ pool, schema, clock });
    await Promise.all([repo.migrate(), other.migrate(), repo.ping()]);
    const versions = await admin.query<{ version: number }>(
      `SELECT version FROM ${schema}.schema_migrations`,
    );
    expect(versions.rows.map((r) => r.version)).to.deep.equal([1]);
  });

  it('stores a key and reads it back exactly', async () => {
    const key = makeKey({ expiresAt: now + HOUR, createdAt: now });
    await repo.create(key);
    expect(await repo.get(key.kid)).to.deep.equal(key);
  });

  it('creating a kid twice is not an error and keeps the first row', async () => {
    const key = makeKey({ expiresAt: now + HOUR });
    await repo.create(key);
    await repo.create({ ...key, expiresAt: now + 2 * HOUR });
    expect((await repo.get(key.kid))?.expiresAt).to.equal(key.expiresAt);
  });

  it('get and list leave out expired keys; deleteExpired removes only those', async () => {
    const stale = makeKey({ expiresAt: now + 1000 });
    const fresh = makeKey({ expiresAt: now + HOUR });
    await repo.create(stale);
    await repo.create(fresh);
    now += 1000;
    expect(await repo.get(stale.kid)).to.be.undefined;
    expect((await repo.list()).map((k) => k.kid))
      .to.include(fresh.kid)
      .and.not.include(stale.kid);
    expect(await repo.deleteExpired()).to.equal(1);
    const kids = await storedKids(admin, schema);
    expect(kids).to.include(fresh.kid).and.not.include(stale.kid);
  });

  it('turns a pg failure into a StorageError that keeps the cause', async () => {
    const deadPool = createPgPool(
      {
        url: urlVia(await closedPort()),
        poolMax: 1,
        queryTimeoutMs: 1000,
        connectTimeoutMs: 1000,
        applicationName: 'test',
      },
      silentLogger(),
    );
    const dead = new PostgresPublicKeyRepository({ pool: deadPool, schema, clock });
    const err = await dead.get('x').catch((e: unknown) => e);
    expect(err).to.be.instanceOf(StorageError);
    expect((err as StorageError).cause).to.be.instanceOf(Error);
    await deadPool.end();
  });
});
