import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Logger } from 'pino';
import { describeError } from '../errors.js';
import type { NatsClient } from '../nats/connection.js';
import { GradesActor } from './grades-actor.js';
import { joinCluster } from './join.js';
import {
  consumeStream,
  ensureStream,
  jetStreamPublisher,
  Outbox,
  streamRange,
  type StreamSettings,
} from './replication.js';

/** Where a replica is on its way to serving. */
export type GradesPhase =
  'starting' | 'waiting-for-nats' | 'joining' | 'catching-up' | 'ready' | 'failed' | 'stopped';

/** Settings of {@link GradesReplica}. */
export interface GradesReplicaOptions {
  readonly replicaId: string;
  /** Absent: a standalone replica (no replication, ready at once). */
  readonly nats?: NatsClient;
  readonly stream: StreamSettings;
  readonly peers: readonly string[];
  /** `Authorization` for peers' `/backup`. */
  readonly peerAuthorization: string;
  readonly publishWindow: number;
  readonly joinAttempts: number;
  readonly log: Logger;
  /** Called when joining fails for good: the supervisor shuts the process down. */
  readonly onFatal: (err: unknown) => void;
}

/**
 * One grades replica: the Grades actor, the outbox that publishes its writes, and the consumer that applies
 * everyone else's. Start-up (in the background once NATS is connected): create or check the stream, join from a
 * peer's backup (or the stream), consume from the backup's position, and report ready only when caught up (G8).
 */
export class GradesReplica {
  readonly name = 'grades';
  readonly actor: GradesActor;
  readonly #o: GradesReplicaOptions;
  readonly #outbox: Outbox | undefined;
  #phase: GradesPhase = 'starting';
  #stopConsumer: (() => Promise<void>) | undefined;
  #joinedFrom: string | undefined;

  constructor(options: GradesReplicaOptions) {
    this.#o = options;
    // The origin names this process, not just the replica: after a restart under the same REPLICA_ID, the
    // messages of the previous run are someone else's writes and must be applied, not skipped.
    const origin = `${options.replicaId}/${randomBytes(4).toString('hex')}`;
    const log = options.log.child({ component: 'grades' });
    if (options.nats) {
      const nats = options.nats;
      this.#outbox = new Outbox({
        subject: options.stream.subject,
        publisher: jetStreamPublisher(() => nats.connection),
        onConfirm: (n, seq) => this.actor.tell({ type: 'confirm', n, seq }),
        window: options.publishWindow,
        ackTimeoutMs: 2000,
        retryMs: 250,
        log,
      });
    }
    const outbox = this.#outbox;
    this.actor = new GradesActor({ origin, ...(outbox ? { publish: (m) => outbox.push(m) } : {}), log });
  }

  /** True once the replica serves reads and writes. */
  get ready(): boolean {
    return this.#phase === 'ready';
  }

  /** Phase, stream position, records and outbox size, for readiness and metrics. */
  get state(): Record<string, unknown> {
    return {
      phase: this.#phase,
      joinedFrom: this.#joinedFrom,
      outbox: this.#outbox?.size ?? 0,
      ...this.actor.state,
    };
  }

  /** Outbox size (writes not yet in the stream). */
  get outboxSize(): number {
    return this.#outbox?.size ?? 0;
  }

  async start(): Promise<void> {
    await this.actor.start();
    const nats = this.#o.nats;
    if (!nats) {
      this.#phase = 'ready';
      this.#o.log.warn('NATS_URL is not set: grades are not replicated');
      return;
    }
    this.#phase = 'waiting-for-nats';
    nats.onConnected((nc) => {
      this.#outbox?.kick();
      if (this.#phase === 'waiting-for-nats') void this.#join(nc);
    });
  }

  /** Stops consuming, gives the outbox a moment to publish what it holds, then stops the actor. */
  async stop(): Promise<void> {
    const previous = this.#phase;
    this.#phase = 'stopped';
    await this.#stopConsumer?.();
    if (this.#outbox && previous !== 'failed') {
      if (!(await this.#outbox.flush(2000))) {
        this.#o.log.error({ unpublished: this.#outbox.size }, 'stopping with writes not yet replicated');
      }
      this.#outbox.stop();
    }
    await this.actor.stop();
  }

  async #join(nc: NatsConnection): Promise<void> {
    const log = this.#o.log;
    try {
      this.#phase = 'joining';
      await ensureStream(nc, this.#o.stream, log);
      const joined = await joinCluster({
        peers: this.#o.peers,
        authorization: this.#o.peerAuthorization,
        actor: this.actor,
        range: () => streamRange(nc, this.#o.stream.name),
        attempts: this.#o.joinAttempts,
        retryMs: 1000,
        timeoutMs: 30_000,
        log,
      });
      this.#joinedFrom = joined.source;
      if (this.#phase !== 'joining') return;
      this.#phase = 'catching-up';
      this.#stopConsumer = await consumeStream({
        nc,
        stream: this.#o.stream.name,
        startSeq: joined.startSeq,
        apply: (seq, msg) => this.actor.ask({ type: 'stream', seq, msg }),
        onCaughtUp: () => {
          if (this.#phase !== 'catching-up') return;
          this.#phase = 'ready';
          log.info({ ...this.actor.state, joinedFrom: joined.source }, 'grades replica caught up and ready');
        },
        log,
      });
    } catch (err) {
      if (this.#phase === 'stopped') return;
      this.#phase = 'failed';
      log.fatal({ err: describeError(err) }, 'grades replica could not join the cluster');
      this.#o.onFatal(err);
    }
  }
}
