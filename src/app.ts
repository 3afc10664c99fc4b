import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { Counter } from 'prom-client';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import { healthRoutes } from './http/health.js';
import { HttpServer } from './http/server.js';
import { createGradesMetrics } from './grades/grades-metrics.js';
import { GradesReplica } from './grades/grades-replica.js';
import { BasicAuth, getRoutes, setRoutes } from './grades/routes.js';
import { createFaultTolerantRepository } from './keys/fault-tolerant-repository.js';
import { KeyStore, MemoryOnlyBackend, type KeyStoreBackend } from './keys/key-store.js';
import { MemoryPublicKeyRepository } from './keys/memory-repository.js';
import { createPgPool } from './keys/pg-pool.js';
import { PostgresPublicKeyRepository } from './keys/postgres-repository.js';
import { BoundHistogram, createMetrics, readGauge, type Metrics } from './metrics.js';
import { NatsClient } from './nats/connection.js';
import { Supervisor, type Component } from './supervisor.js';
import { undiciFetchJson, type FetchJson } from './tokens/http-fetch.js';
import { NatsKeyAnnouncer } from './tokens/key-announcer.js';
import { KeyRotation, signingKeyLifetime } from './tokens/key-rotation.js';
import { keyLifetimeMs } from './tokens/signing-key.js';
import { keyRoutes } from './tokens/key-routes.js';
import { RemoteJwks } from './tokens/remote-jwks.js';
import { SigningPool } from './tokens/signing-pool.js';
import { tokenRoutes } from './tokens/token-routes.js';
import { TokenService, type Provider } from './tokens/token-service.js';
import { loadTokensConfig, type TokensConfig } from './tokens/tokens-config.js';

/** Collaborators that tests may replace. */
export interface AppDependencies {
  readonly log: Logger;
  readonly clock?: Clock;
  readonly fetchJson?: FetchJson;
  /** Called when a component fails for good after start (a replica that cannot join): the process should stop. */
  readonly onFatal?: (err: unknown) => void;
}

/** A wired service: start it, stop it, find its ports. */
export interface App {
  readonly supervisor: Supervisor;
  readonly keyStore: KeyStore;
  readonly keyRotation: KeyRotation;
  readonly metrics: Metrics;
  readonly grades: GradesReplica;
  /** The bound tokens port (after `start`). */
  tokensPort(): number;
  /** The bound grades ports (after `start`). */
  gradesPorts(): { set: number; get: number };
  /** The issuer URL tokens carry (after `start`). */
  issuer(): string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Wires the service from its configuration. Start order: Postgres pool, KeyStore, signing pool, NATS, key
 * announcements, grades replica, key rotation, HTTP (tokens, grades set, grades get). Stop runs the reverse, which
 * is the shutdown sequence: stop accepting HTTP, stop rotating, stop grades (outbox flushed), drain NATS, close
 * the signing pool, flush pending key writes, end the Postgres pool.
 */
export async function createApp(config: Config, deps: AppDependencies): Promise<App> {
  const clock = deps.clock ?? systemClock;
  const log = deps.log.child({ replica: config.replicaId });
  const metrics = createMetrics();
  const components: Component[] = [];
  const tokensConfig: TokensConfig = config.tokenIssuer.configPath
    ? await loadTokensConfig(config.tokenIssuer.configPath, config.signing.tokenMaxTtlS)
    : { providers: [], clients: [] };

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

  const batchSize = new BoundHistogram({
    name: 'signing_batch_size',
    help: 'Tokens per signing task sent to the worker pool.',
    labelNames: [],
    buckets: [1, 2, 4, 8, 16, 32, 64, 128],
    registers: [metrics.registry],
  }).labels();
  const signer = new SigningPool({
    workers: config.signing.workers,
    maxBatch: config.signing.maxBatch,
    pipelineDepth: config.signing.pipelineDepth,
    onBatch: (size) => batchSize.observe(size),
  });
  components.push({ name: 'signing-pool', start: () => Promise.resolve(), stop: () => signer.close() });

  const rotationIntervalMs = config.signing.rotationIntervalS * 1000;
  const publishGraceMs = config.signing.publishGraceS * 1000;
  const tokenMaxTtlMs = config.signing.tokenMaxTtlS * 1000;
  const skewMs = config.signing.clockSkewS * 1000;

  let nats: NatsClient | undefined;
  let announcer: NatsKeyAnnouncer | undefined;
  if (config.nats) {
    nats = new NatsClient({
      url: config.nats.url,
      name: `token-grades/${config.replicaId}`,
      startWaitMs: config.nats.connectWaitMs,
      retryMs: 1000,
      log,
    });
    components.push(nats);
    announcer = new NatsKeyAnnouncer({
      nats,
      bucket: config.nats.keysBucket,
      // Announcements live exactly as long as the keys they carry.
      ttlMs: keyLifetimeMs(signingKeyLifetime({ rotationIntervalMs, publishGraceMs, tokenMaxTtlMs, skewMs })),
      replicaId: config.replicaId,
      keyStore,
      timeoutMs: config.keyStore.pgTimeoutMs,
      log,
    });
    components.push(announcer);
  }

  let gradesPassword = config.grades.password;
  if (!gradesPassword) {
    gradesPassword = randomBytes(18).toString('base64url');
    // Logged once, on purpose: there is no built-in default, and an operator who set none needs this one.
    log.warn(
      { user: config.grades.user, generatedPassword: gradesPassword },
      'GRADES_PASSWORD is not set; generated one for this run',
    );
  }
  const gradesMetrics = createGradesMetrics(metrics);
  const grades = new GradesReplica({
    replicaId: config.replicaId,
    ...(nats ? { nats } : {}),
    stream: config.grades.stream,
    peers: config.grades.peers,
    peerAuthorization: BasicAuth.header(config.grades.user, gradesPassword),
    publishWindow: config.grades.publishWindow,
    joinAttempts: config.grades.joinAttempts,
    outboxDir: config.grades.outboxDir,
    restoreFrom: config.grades.restoreFrom,
    writeTimeoutMs: config.grades.writeTimeoutMs,
    metrics: gradesMetrics.sink,
    log,
    onFatal: (err) => deps.onFatal?.(err),
  });
  components.push(grades);

  const keyRotation = new KeyRotation({
    alg: config.signing.alg,
    rotationIntervalMs,
    publishGraceMs,
    retryIntervalMs: config.signing.publishRetryMs,
    tokenMaxTtlMs,
    skewMs,
    replicaId: config.replicaId,
    keyStore,
    ...(announcer ? { announcer } : {}),
    clock,
    log,
  });
  components.push(keyRotation);

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

  gradesMetrics.watch(grades);

  const fetchJson = deps.fetchJson ?? undiciFetchJson;
  const providers: Provider[] = tokensConfig.providers.map((p) => ({
    config: p,
    jwks: new RemoteJwks({
      provider: p.name,
      source: p.jwksUri ? { jwksUri: p.jwksUri } : { discoveryIssuer: p.issuer },
      fetchJson,
      clock,
      cacheMaxAgeMs: p.jwksCacheS * 1000,
      refetchCooldownMs: p.jwksRefetchCooldownS * 1000,
      staleMaxMs: p.jwksStaleS * 1000,
      timeoutMs: p.jwksTimeoutMs,
      log,
    }),
  }));

  let issuerUrl = config.tokenIssuer.issuer?.replace(/\/$/, '');
  const issuer = () => issuerUrl ?? 'http://127.0.0.1';
  const service = new TokenService({
    issuer,
    providers,
    clients: tokensConfig.clients,
    signer,
    activeKey: () => keyRotation.active,
    clock,
    skewS: config.signing.clockSkewS,
    defaultTtlS: config.tokenIssuer.defaultTtlS,
  });

  // Readiness is per capability: a load balancer in front of the tokens port must not drop a replica whose
  // grades part is still joining, and the other way round. NATS is reported on both, required by neither here
  // (tokens work without it; grades say whether they have joined).
  const natsCheck = nats
    ? [
        {
          name: 'nats',
          check: () => ({ ready: true, detail: { state: nats.state, keyBucket: announcer?.ready ?? false } }),
        },
      ]
    : [];
  const tokensReadiness = [
    {
      name: 'key-store',
      check: () => ({ ready: keyStore.status === 'running', detail: keyStore.state }),
    },
    {
      name: 'signing-key',
      check: () => ({ ready: keyRotation.active !== undefined, detail: keyRotation.state }),
    },
    ...natsCheck,
  ];
  const gradesReadiness = [
    { name: 'grades', check: () => ({ ready: grades.ready, detail: grades.stats }) },
    ...natsCheck,
  ];
  const gradesRoutes = {
    grades,
    auth: new BasicAuth(config.grades.user, gradesPassword),
    replicaId: config.replicaId,
  };
  const gradesSetHttp = new HttpServer({
    name: 'grades-set',
    host: config.host,
    port: config.grades.setPort,
    maxBodyBytes: config.grades.maxBodyBytes,
    log,
    metrics,
    routes: setRoutes(gradesRoutes),
  });
  const gradesGetHttp = new HttpServer({
    name: 'grades-get',
    host: config.host,
    port: config.grades.getPort,
    maxBodyBytes: 1024,
    log,
    metrics,
    routes: [...getRoutes(gradesRoutes), ...healthRoutes(gradesReadiness, metrics)],
  });

  const tokensHttp = new HttpServer({
    name: 'tokens',
    host: config.host,
    port: config.tokens.port,
    maxBodyBytes: config.tokens.maxBodyBytes,
    log,
    metrics,
    routes: [
      ...healthRoutes(tokensReadiness, metrics),
      ...keyRoutes(keyStore, clock),
      ...tokenRoutes({ service, issuer, alg: config.signing.alg, registry: metrics.registry, log }),
    ],
  });
  components.push({
    name: 'tokens-http',
    start: async () => {
      await tokensHttp.start();
      issuerUrl ??= `http://127.0.0.1:${tokensHttp.port}`;
    },
    stop: () => tokensHttp.stop(),
  });
  components.push({
    name: 'grades-set-http',
    start: () => gradesSetHttp.start(),
    stop: () => gradesSetHttp.stop(),
  });
  components.push({
    name: 'grades-get-http',
    start: () => gradesGetHttp.start(),
    stop: () => gradesGetHttp.stop(),
  });

  const supervisor = new Supervisor(components, log);
  return {
    supervisor,
    keyStore,
    keyRotation,
    metrics,
    grades,
    tokensPort: () => tokensHttp.port,
    gradesPorts: () => ({ set: gradesSetHttp.port, get: gradesGetHttp.port }),
    issuer,
    start: () => supervisor.start(),
    stop: () => supervisor.stop(),
  };
}
