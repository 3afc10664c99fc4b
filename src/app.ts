import type { Logger } from 'pino';
import { Counter, Gauge } from 'prom-client';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import { healthRoutes } from './http/health.js';
import { HttpServer } from './http/server.js';
import { createFaultTolerantRepository } from './keys/fault-tolerant-repository.js';
import { KeyStore, MemoryOnlyBackend, type KeyStoreBackend } from './keys/key-store.js';
import { MemoryPublicKeyRepository } from './keys/memory-repository.js';
import { createPgPool } from './keys/pg-pool.js';
import { PostgresPublicKeyRepository } from './keys/postgres-repository.js';
import { createMetrics, type Metrics } from './metrics.js';
import { Supervisor, type Component } from './supervisor.js';
import { KeyRotation } from './tokens/key-rotation.js';
import { keyRoutes } from './tokens/key-routes.js';

/** Collaborators that tests may replace. */
export interface AppDependencies {
  readonly log: Logger;
  readonly clock?: Clock;
}

/** A wired service: start it, stop it, find its ports. */
export interface App {
  readonly supervisor: Supervisor;
  readonly keyStore: KeyStore;
  readonly keyRotation: KeyRotation;
  readonly metrics: Metrics;
  /** The bound tokens port (after `start`). */
  tokensPort(): number;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Wires the service from its configuration. Start order: Postgres pool, KeyStore, key rotation, HTTP. Stop runs
 * the reverse: stop accepting HTTP, stop rotating, flush pending key writes, end the Postgres pool.
 */
export function createApp(config: Config, deps: AppDependencies): App {
  const clock = deps.clock ?? systemClock;
  const log = deps.log.child({ replica: config.replicaId });
  const metrics = createMetrics();
  const components: Component[] = [];

  const failures = new Counter({
    name: 'keystore_postgres_failures_total',
    help: 'Postgres calls of the key store that failed or timed out, by operation.',
    labelNames: ['operation'] as const,
    registers: [metrics.registry],
  });

  let backend: KeyStoreBackend;
  if (config.database) {
    const db = config.database;
    const pgPool = createPgPool({ ...db, applicationName: `token-exchange/${config.replicaId}` }, log);
    components.push({ name: 'postgres-pool', start: () => Promise.resolve(), stop: () => pgPool.end() });
    backend = createFaultTolerantRepository({
      postgres: new PostgresPublicKeyRepository({ pool: pgPool, schema: db.schema, clock }),
      clock,
      timeoutMs: config.keyStore.pgTimeoutMs,
      loadTimeoutMs: db.connectTimeoutMs,
      log: log.child({ component: 'public-keys' }),
      hooks: { onPostgresFailure: (operation) => failures.inc({ operation }) },
    });
  } else {
    log.warn('DATABASE_URL is not set: public keys live in this process only');
    backend = new MemoryOnlyBackend(new MemoryPublicKeyRepository(clock));
  }

  const keyStore = new KeyStore({ backend, ...config.keyStore, log });
  components.push(keyStore);

  const keyRotation = new KeyRotation({
    alg: config.signing.alg,
    rotationIntervalMs: config.signing.rotationIntervalS * 1000,
    tokenMaxTtlMs: config.signing.tokenMaxTtlS * 1000,
    skewMs: config.signing.clockSkewS * 1000,
    replicaId: config.replicaId,
    keyStore,
    clock,
    log,
  });
  components.push(keyRotation);

  new Gauge({
    name: 'keystore_pending_writes',
    help: 'Public keys held in memory and waiting to be written to Postgres.',
    registers: [metrics.registry],
    collect() {
      this.set(keyStore.state.pending);
    },
  });
  new Gauge({
    name: 'keystore_postgres_available',
    help: '1 while the key store calls Postgres on callers behalf, 0 while it serves from memory.',
    registers: [metrics.registry],
    collect() {
      this.set(keyStore.state.postgresAvailable ? 1 : 0);
    },
  });

  const tokensHttp = new HttpServer({
    name: 'tokens',
    host: config.host,
    port: config.tokens.port,
    maxBodyBytes: config.tokens.maxBodyBytes,
    log,
    metrics,
    routes: [
      ...healthRoutes(
        [
          {
            name: 'key-store',
            check: () => ({ ready: keyStore.status === 'running', detail: keyStore.state }),
          },
          {
            name: 'signing-key',
            check: () => ({
              ready: keyRotation.activeKid !== undefined,
              detail: { kid: keyRotation.activeKid },
            }),
          },
        ],
        metrics,
      ),
      ...keyRoutes(keyStore, clock),
    ],
  });
  components.push({ name: 'tokens-http', start: () => tokensHttp.start(), stop: () => tokensHttp.stop() });

  const supervisor = new Supervisor(components, log);
  return {
    supervisor,
    keyStore,
    keyRotation,
    metrics,
    tokensPort: () => tokensHttp.port,
    start: () => supervisor.start(),
    stop: () => supervisor.stop(),
  };
}
