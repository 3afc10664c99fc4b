import type { Logger } from 'pino';
import type { Capability, SharedPieces } from './capability.js';
import { systemClock, type Clock } from './clock.js';
import { MessageAuth } from './cluster/message-auth.js';
import type { Config } from './config.js';
import { createGradesModule } from './grades/grades-module.js';
import { healthRoutes, type ReadinessCheck } from './http/health.js';
import { HttpServer } from './http/server.js';
import { createPgPool } from './postgres/pg-pool.js';
import { createMetrics, type Metrics } from './metrics.js';
import { NatsClient } from './nats/connection.js';
import { Supervisor, type Component } from './supervisor.js';
import type { FetchJson } from './tokens/http-fetch.js';
import { createTokensModule, type TokensCapability } from './tokens/tokens-module.js';

/** Collaborators that tests may replace. */
export interface AppDependencies {
  readonly log: Logger;
  readonly clock?: Clock;
  readonly fetchJson?: FetchJson;
  /** Called when a component fails for good after start (a replica that cannot join): the process should stop. */
  readonly onFatal?: (err: unknown) => void;
}

/** A wired service: start it, stop it, read what it reports. */
export interface App {
  readonly supervisor: Supervisor;
  readonly metrics: Metrics;
  readonly capabilities: readonly Capability[];
  /** The tokens capability (its KeyStore included). */
  readonly tokens: TokensCapability;
  /** Ports and issuer, for the `ready` log line (after `start`). */
  summary(): Record<string, unknown>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Wires the service: the shared pieces (metrics, Postgres pool, NATS connection), then one module per capability,
 * then an HTTP server per listener the capabilities declare. Start order: Postgres pool, every capability's
 * foundations, NATS, every capability's services, the listeners. Stop runs the reverse, which is the shutdown
 * sequence: stop accepting HTTP, stop the services (grades outbox flushed, rotation and announcements stopped),
 * drain NATS, close the signing pool, flush pending key writes, end the Postgres pool.
 */
export async function createApp(config: Config, deps: AppDependencies): Promise<App> {
  const log = deps.log.child({ replica: config.replicaId });
  const metrics = createMetrics();
  const pgPool = config.database
    ? createPgPool({ ...config.database, applicationName: `token-exchange/${config.replicaId}` }, log)
    : undefined;
  const nats = config.nats
    ? new NatsClient({
        url: config.nats.url,
        name: `token-grades/${config.replicaId}`,
        startWaitMs: config.nats.connectWaitMs,
        retryMs: 500,
        ...(config.nats.auth ? { auth: config.nats.auth } : {}),
        ...(config.nats.tls ? { tls: config.nats.tls } : {}),
        log,
      })
    : undefined;
  const clusterAuth = config.clusterSecret
    ? new MessageAuth({
        current: config.clusterSecret.current,
        ...(config.clusterSecret.previous ? { previous: config.clusterSecret.previous } : {}),
      })
    : undefined;
  if (nats && !clusterAuth) {
    log.warn('CLUSTER_SECRET is not set: messages on NATS are not authenticated, so NATS must be trusted');
  }
  const shared: SharedPieces = {
    replicaId: config.replicaId,
    log,
    clock: deps.clock ?? systemClock,
    metrics,
    pgPool,
    nats,
    clusterAuth,
    onFatal: (err) => deps.onFatal?.(err),
  };

  const tokens = await createTokensModule(
    config,
    shared,
    deps.fetchJson ? { fetchJson: deps.fetchJson } : {},
  );
  const capabilities: Capability[] = [tokens, createGradesModule(config, shared)];

  // NATS is reported on every listener's readiness and required by none: tokens work without it, and grades say
  // themselves whether they have joined.
  const natsCheck: ReadinessCheck[] = nats
    ? [{ name: 'nats', check: () => ({ ready: true, detail: { state: nats.state } }) }]
    : [];
  const servers = capabilities.flatMap((capability) =>
    capability.listeners.map((listener) => {
      const server = new HttpServer({
        name: listener.name,
        host: config.host,
        port: listener.port,
        maxBodyBytes: listener.maxBodyBytes,
        limits: config.http,
        log,
        metrics,
        routes: listener.readiness
          ? [...listener.routes, ...healthRoutes([...listener.readiness, ...natsCheck], metrics)]
          : [...listener.routes],
      });
      return {
        name: `${listener.name}-http`,
        start: async () => {
          await server.start();
          listener.onListening?.(server.port);
        },
        stop: () => server.stop(),
      } satisfies Component;
    }),
  );

  const components: Component[] = [
    ...(pgPool ? [{ name: 'postgres-pool', start: () => Promise.resolve(), stop: () => pgPool.end() }] : []),
    ...capabilities.flatMap((c) => c.foundations),
    ...(nats ? [nats] : []),
    ...capabilities.flatMap((c) => c.services),
    ...servers,
  ];
  const supervisor = new Supervisor(components, log);
  return {
    supervisor,
    metrics,
    capabilities,
    tokens,
    summary: () => Object.assign({}, ...capabilities.map((c) => c.summary())) as Record<string, unknown>,
    start: () => supervisor.start(),
    stop: () => supervisor.stop(),
  };
}
