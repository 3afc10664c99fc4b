import { expect } from 'chai';
import type pg from 'pg';
import { systemClock } from '../../src/clock.js';
import { HttpServer } from '../../src/http/server.js';
import { createFaultTolerantRepository } from '../../src/keys/fault-tolerant-repository.js';
import { KeyStore } from '../../src/keys/key-store.js';
import { createPgPool } from '../../src/postgres/pg-pool.js';
import { PostgresPublicKeyRepository } from '../../src/keys/postgres-repository.js';
import { PublicKeyReads } from '../../src/keys/public-key-reads.js';
import { silentLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';
import { keyRoutes } from '../../src/keys/key-routes.js';
import { generateSigningKey } from '../../src/keys/signing-key.js';
import { directPool, dropSchema, TEST_DATABASE_URL, uniqueSchema } from '../support/postgres.js';

const RELOAD_MS = 400;

/** One replica's public-key side: its key store on the real Postgres, and its key routes over HTTP. */
interface Replica {
  readonly pool: pg.Pool;
  readonly store: KeyStore;
  readonly http: HttpServer;
  /** Postgres queries the key routes caused. */
  readonly queries: () => number;
}

async function startReplica(schema: string): Promise<Replica> {
  const pool = createPgPool(
    {
      url: TEST_DATABASE_URL,
      poolMax: 2,
      queryTimeoutMs: 2000,
      connectTimeoutMs: 2000,
      applicationName: 'test',
    },
    silentLogger(),
  );
  const store = new KeyStore({
    backend: createFaultTolerantRepository({
      postgres: new PostgresPublicKeyRepository({ pool, schema, clock: systemClock }),
      clock: systemClock,
      timeoutMs: 500,
      loadTimeoutMs: 2000,
      log: silentLogger(),
    }),
    flushIntervalMs: 1000,
    probeIntervalMs: 1000,
    cleanupIntervalMs: 60_000,
    reloadIntervalMs: RELOAD_MS,
    clock: systemClock,
    log: silentLogger(),
  });
  await store.start();
  let queries = 0;
  const reads = new PublicKeyReads({ keys: store, clock: systemClock, onPostgresQuery: () => queries++ });
  const http = new HttpServer({
    name: 'tokens',
    host: '127.0.0.1',
    port: 0,
    maxBodyBytes: 1024,
    log: silentLogger(),
    metrics: createMetrics(),
    routes: keyRoutes(reads, systemClock, { activationDelayS: 300 }),
  });
  await http.start();
  return { pool, store, http, queries: () => queries };
}

async function stopReplica(r: Replica): Promise<void> {
  await r.http.stop();
  await r.store.stop();
  await r.pool.end();
}

async function jwksKids(r: Replica): Promise<string[]> {
  const res = await fetch(`http://127.0.0.1:${r.http.port}/.well-known/jwks.json`);
  return ((await res.json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
}

describe('key store – periodic reload from a real Postgres', () => {
  let admin: pg.Pool;
  let schema: string;
  const replicas: Replica[] = [];

  before(() => {
    admin = directPool();
  });
  after(async () => {
    await admin.end();
  });
  beforeEach(() => {
    schema = uniqueSchema('reload');
  });
  afterEach(async () => {
    await Promise.all(replicas.splice(0).map(stopReplica));
    await dropSchema(admin, schema);
  });

  it('a key written straight into Postgres (no NATS) appears in every replica’s JWKS within the reload interval', async () => {
    replicas.push(await startReplica(schema), await startReplica(schema));
    for (const r of replicas) expect(await jwksKids(r)).to.deep.equal([]);
    // Another replica, heard by nobody: only its row in Postgres.
    const { publicKey: key } = await generateSigningKey(
      'ES256',
      Date.now(),
      { activeMs: 60_000, tokenMaxTtlMs: 60_000, skewMs: 5_000 },
      'unheard',
    );
    await admin.query(
      `INSERT INTO ${schema}.public_keys (kid, alg, jwk, replica_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
      [
        key.kid,
        key.alg,
        JSON.stringify(key.jwk),
        key.replicaId,
        new Date(key.createdAt),
        new Date(key.expiresAt),
      ],
    );
    const written = Date.now();
    const seen = await Promise.all(
      replicas.map(async (r) => {
        for (;;) {
          if ((await jwksKids(r)).includes(key.kid)) return Date.now() - written;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }),
    );
    // Within one interval, with room for a reload's own round trip, the polling step and a loaded machine (CI runs
    // the suite beside other work), and well before a second interval would end.
    for (const ms of seen) expect(ms).to.be.below(1.5 * RELOAD_MS);
    // The JWKS requests themselves never asked Postgres anything.
    for (const r of replicas) expect(r.queries()).to.equal(0);
  });

  it('GET /keys/{kid} finds such a key at once, with one query shared by concurrent requests', async () => {
    const replica = await startReplica(schema);
    replicas.push(replica);
    const { publicKey: key } = await generateSigningKey(
      'ES256',
      Date.now(),
      { activeMs: 60_000, tokenMaxTtlMs: 60_000, skewMs: 5_000 },
      'unheard',
    );
    await admin.query(
      `INSERT INTO ${schema}.public_keys (kid, alg, jwk, replica_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
      [
        key.kid,
        key.alg,
        JSON.stringify(key.jwk),
        key.replicaId,
        new Date(key.createdAt),
        new Date(key.expiresAt),
      ],
    );
    const statuses = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const res = await fetch(`http://127.0.0.1:${replica.http.port}/keys/${key.kid}`);
        await res.arrayBuffer();
        return res.status;
      }),
    );
    expect(statuses.every((s) => s === 200)).to.be.true;
    expect(replica.queries()).to.equal(1);
  });
});
