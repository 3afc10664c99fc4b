import type pg from 'pg';
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { MessageAuth } from './cluster/message-auth.js';
import type { ReadinessCheck } from './http/health.js';
import type { Route } from './http/server.js';
import type { Metrics } from './metrics.js';
import type { NatsClient } from './nats/connection.js';
import type { Component } from './supervisor.js';

/**
 * What `src/app.ts` builds once and hands to every capability module: the process's logger, clock, metrics
 * registry and connections. A capability uses what it needs and owns none of them (the app starts and stops them).
 */
export interface SharedPieces {
  readonly replicaId: string;
  readonly log: Logger;
  readonly clock: Clock;
  readonly metrics: Metrics;
  /** Absent without `DATABASE_URL`. */
  readonly pgPool: pg.Pool | undefined;
  /** Absent without `NATS_URL`. */
  readonly nats: NatsClient | undefined;
  /** Seals and opens every message replicas exchange over NATS; absent without `CLUSTER_SECRET`. */
  readonly clusterAuth: MessageAuth | undefined;
  /** Called when a component fails for good after start: the process should stop. */
  readonly onFatal: (err: unknown) => void;
}

/** One HTTP listener a capability serves: the app creates the server and adds the health routes to it. */
export interface Listener {
  /** The server's name (a metrics label, a component name with `-http` appended, a log field). */
  readonly name: string;
  readonly port: number;
  readonly maxBodyBytes: number;
  readonly routes: readonly Route[];
  /** With checks, the listener also serves `/healthz`, `/readyz` (these checks) and `/metrics`. */
  readonly readiness?: readonly ReadinessCheck[];
  /** Called with the bound port once the listener accepts connections. */
  onListening?(port: number): void;
}

/**
 * A capability (tokens, grades): a function from its configuration and the shared pieces to this. The app starts
 * every module's `foundations`, then connects NATS, then every module's `services`, then the listeners; it stops
 * them in reverse, which is the shutdown order: stop accepting HTTP, stop the services (outboxes flushed), drain
 * NATS, then the foundations (worker pools closed, pending writes flushed), then the Postgres pool.
 */
export interface Capability {
  readonly name: string;
  /** State and workers that need no bus: started before NATS connects, stopped after it drained. */
  readonly foundations: readonly Component[];
  /** What talks to peers or acts by itself: started once NATS is up (or known absent), stopped before it drains. */
  readonly services: readonly Component[];
  readonly listeners: readonly Listener[];
  /** Fields for the process's `ready` log line (ports, issuer). */
  summary(): Record<string, unknown>;
}
