import { Counter, Histogram } from 'prom-client';
import type { SharedPieces } from '../capability.js';
import type { Config } from '../config.js';
import type { ReadinessCheck } from '../http/health.js';
import type { Route } from '../http/server.js';
import { readGauge } from '../metrics.js';
import type { Component } from '../supervisor.js';
import { createFaultTolerantRepository } from './fault-tolerant-repository.js';
import { KeyAdmission } from './key-admission.js';
import { NatsKeyAnnouncer } from './key-announcer.js';
import { KeyRotation, signingKeyLifetime } from './key-rotation.js';
import { keyRoutes } from './key-routes.js';
import { KeyStore, MemoryOnlyBackend, type KeyStoreBackend } from './key-store.js';
import { MemoryPublicKeyRepository } from './memory-repository.js';
import { PostgresPublicKeyRepository } from './postgres-repository.js';
import { PublicKeyReads } from './public-key-reads.js';
import { keyLifetimeMs } from './signing-key.js';

/** The settings our keys are made from. */
export type KeyLifecycleConfig = Pick<Config, 'replicaId' | 'database' | 'nats' | 'keyStore' | 'signing'>;

/** This replica's keys, wired: the KeyStore, its announcements to peers and the rotation of the signing key. */
export interface KeyLifecycle {
  readonly keyStore: KeyStore;
  readonly rotation: KeyRotation;
  /** Public keys as unauthenticated callers read them: from memory, unknown kids looked up within bounds. */
  readonly reads: PublicKeyReads;
  /** Need no bus: the KeyStore (memory, Postgres, pending writes). */
  readonly foundations: readonly Component[];
  /** Announcements (with NATS) and rotation, in start order. */
  readonly services: readonly Component[];
  /** `GET /keys/{kid}` and `GET /.well-known/jwks.json`. */
  readonly routes: readonly Route[];
  readonly readiness: readonly ReadinessCheck[];
}

/**
 * Builds "our keys" (T5, FT1–FT11, X1): the public-key repository (fault-tolerant over Postgres, or memory only),
 * the KeyStore actor that owns it, key announcements over the NATS key bucket, the rotation actor that holds the
 * signing key, the key routes, and the key store's metrics.
 */
export function createKeyLifecycle(config: KeyLifecycleConfig, shared: SharedPieces): KeyLifecycle {
  const { clock, log, metrics } = shared;
  const failures = new Counter({
    name: 'keystore_postgres_failures_total',
    help: 'Postgres calls of the key store that failed or timed out, by operation.',
    labelNames: ['operation'] as const,
    registers: [metrics.registry],
  });

  const skewMs = config.signing.clockSkewS * 1000;
  const lifetime = signingKeyLifetime({
    rotationIntervalMs: config.signing.rotationIntervalS * 1000,
    activationDelayMs: config.signing.activationDelayS * 1000,
    publishGraceMs: config.signing.publishGraceS * 1000,
    tokenMaxTtlMs: config.signing.tokenMaxTtlS * 1000,
    skewMs,
  });

  // Every key from outside this process (peers' announcements, Postgres rows) is verified before it is stored or
  // served (SPEC X7).
  const refusedKeys = new Counter({
    name: 'keys_refused_total',
    help: 'Public keys refused by key verification, by source (nats, postgres) and reason.',
    labelNames: ['source', 'reason'] as const,
    registers: [metrics.registry],
  });
  const gate = new KeyAdmission({
    policy: { algorithms: config.signing.acceptAlgs, keyLifetimeMs: keyLifetimeMs(lifetime), skewMs },
    clock,
    log: log.child({ component: 'key-admission' }),
    onRefused: (source, reason) => refusedKeys.inc({ source, reason }),
  });
  const rejectedKeys = new Counter({
    name: 'keystore_postgres_rejected_total',
    help: 'Public keys Postgres refused for their data, set aside from pending writes (kept in memory).',
    registers: [metrics.registry],
  });

  let backend: KeyStoreBackend;
  if (config.database && shared.pgPool) {
    backend = createFaultTolerantRepository({
      postgres: new PostgresPublicKeyRepository({
        pool: shared.pgPool,
        schema: config.database.schema,
        clock,
      }),
      clock,
      timeoutMs: config.keyStore.pgTimeoutMs,
      loadTimeoutMs: config.database.connectTimeoutMs,
      log: log.child({ component: 'public-keys' }),
      hooks: {
        onPostgresFailure: (operation) => failures.inc({ operation }),
        onKeyRejected: () => rejectedKeys.inc(),
      },
      gate,
    });
  } else {
    log.warn('DATABASE_URL is not set: public keys live in this process only');
    backend = new MemoryOnlyBackend(new MemoryPublicKeyRepository(clock));
  }
  const keyStoreOperations = new Histogram({
    name: 'keystore_operation_duration_seconds',
    help: 'Time from asking the key store to its answer, queueing in its mailbox included, by operation.',
    labelNames: ['operation'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [metrics.registry],
  });
  const keyStore = new KeyStore({
    backend,
    ...config.keyStore,
    clock,
    onOperation: (operation, seconds) => keyStoreOperations.observe({ operation }, seconds),
    log,
  });
  const keyRouteQueries = new Counter({
    name: 'keys_route_postgres_queries_total',
    help: 'Postgres queries caused by the public-key routes (reloads started by reads of unknown kids).',
    registers: [metrics.registry],
  });
  const reads = new PublicKeyReads({ keys: keyStore, clock, onPostgresQuery: () => keyRouteQueries.inc() });
  readGauge(
    metrics,
    'keystore_pending_writes',
    'Public keys held in memory and waiting to be written to Postgres.',
    () => keyStore.state.pending,
  );
  readGauge(
    metrics,
    'keystore_postgres_available',
    '1 while the key store calls Postgres on callers behalf, 0 while it serves from memory.',
    () => (keyStore.state.postgresAvailable ? 1 : 0),
  );

  const announcer =
    config.nats && shared.nats
      ? new NatsKeyAnnouncer({
          nats: shared.nats,
          bucket: config.nats.keysBucket,
          // Announcements live exactly as long as the keys they carry.
          ttlMs: keyLifetimeMs(lifetime),
          replicaId: config.replicaId,
          keyStore,
          gate,
          ...(shared.clusterAuth ? { auth: shared.clusterAuth } : {}),
          onRefused: (reason) => refusedKeys.inc({ source: 'nats', reason }),
          timeoutMs: config.keyStore.pgTimeoutMs,
          log,
        })
      : undefined;

  const rotation = new KeyRotation({
    alg: config.signing.alg,
    rotationIntervalMs: config.signing.rotationIntervalS * 1000,
    activationDelayMs: config.signing.activationDelayS * 1000,
    publishGraceMs: config.signing.publishGraceS * 1000,
    retryIntervalMs: config.signing.publishRetryMs,
    tokenMaxTtlMs: config.signing.tokenMaxTtlS * 1000,
    skewMs,
    replicaId: config.replicaId,
    keyStore,
    ...(announcer ? { announcer } : {}),
    startupHold: config.signing.startupHold,
    clock,
    log,
  });

  return {
    keyStore,
    rotation,
    reads,
    foundations: [keyStore],
    services: announcer ? [announcer, rotation] : [rotation],
    routes: keyRoutes(reads, clock, { activationDelayS: config.signing.activationDelayS }),
    readiness: [
      {
        name: 'key-store',
        // Not ready while Postgres answers yet refuses key writes (a fault waiting will not heal); an outage leaves
        // the replica ready, serving keys from memory.
        check: () => ({
          ready: keyStore.status === 'running' && !keyStore.state.writesStuck,
          detail: keyStore.state,
        }),
      },
      {
        name: 'signing-key',
        check: () => ({ ready: rotation.ready, detail: rotation.state }),
      },
      ...(announcer
        ? [{ name: 'key-bucket', check: () => ({ ready: true, detail: { watching: announcer.ready } }) }]
        : []),
    ],
  };
}
