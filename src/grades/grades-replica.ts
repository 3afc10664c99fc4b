import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Logger } from 'pino';
import { describeError } from '../errors.js';
import type { MessageAuth } from '../cluster/message-auth.js';
import type { NatsClient } from '../nats/connection.js';
import { openBackup, type BackupStream } from './backup.js';
import { backupSource, GradesActor, type StoredWrite } from './grades-actor.js';
import { joinCluster, restoreStandalone, type JoinTarget } from './join.js';
import type { GradeUpdate, ReplicationMessage, UserGrade } from './model.js';
import { Outbox, type StreamPort } from './outbox.js';
import { OutboxLog } from './outbox-log.js';
import type { GradesPort, SetOutcome } from './port.js';
import {
  consumeStream,
  ensureStream,
  isStreamNotFound,
  jetStreamPort,
  streamIdentity,
  type StreamSettings,
} from './replication.js';
import { lastN, originSubject, ReplicationCodec } from './wire.js';

/** Where a replica is on its way to serving. */
export type GradesPhase =
  'starting' | 'waiting-for-nats' | 'joining' | 'catching-up' | 'ready' | 'rejoining' | 'failed' | 'stopped';

/** Where the replica reports what operators watch (see grades-metrics.ts). */
export interface GradesMetricsSink {
  /** A message was applied `ms` after the stream stored it. */
  replicationDelay(ms: number): void;
  gap(): void;
  rejoin(): void;
  /** A stream message was refused as unauthenticated (`CLUSTER_SECRET`), and skipped. */
  refused?(reason: string): void;
  /** A stream message was a replay (its origin's mark already covers it), and skipped. */
  replayed?(): void;
}

/** Settings of {@link GradesReplica}. */
export interface GradesReplicaOptions {
  readonly replicaId: string;
  /** Absent: a standalone replica (no replication, ready at once, RAM only). */
  readonly nats?: NatsClient;
  readonly stream: StreamSettings;
  readonly peers: readonly string[];
  /** `Authorization` for peers' `/backup`. */
  readonly peerAuthorization: string;
  /** Most writes in one stream message. */
  readonly publishWindow: number;
  readonly joinAttempts: number;
  /** `GRADES_OUTBOX_DIR`: the durable outbox log; absent: writes during an outage are refused. */
  readonly outboxDir?: string;
  /** `GRADES_RESTORE_FROM`: a backup (path or URL) to load when no peer answers. */
  readonly restoreFrom?: string;
  readonly ackTimeoutMs?: number;
  /** Without an outbox dir: longest wait for a sent write's confirmation before the caller is told. */
  readonly writeTimeoutMs?: number;
  /** How often the stream's identity and last sequence are checked (a recreated stream is a gap). */
  readonly identityCheckMs?: number;
  readonly metrics?: GradesMetricsSink;
  /** `CLUSTER_SECRET`: seals every message this replica publishes and refuses stream messages that do not open. */
  readonly auth?: MessageAuth;
  readonly log: Logger;
  /** Called when the replica fails for good (no usable backup to join or rejoin from): the process stops. */
  readonly onFatal: (err: unknown) => void;
}

/**
 * One grades replica, behind the {@link GradesPort} the HTTP routes use. A write travels in named steps:
 * {@link set} hands it to the outbox ({@link Outbox.submit}), which publishes it on this origin's subject of the
 * stream (or logs it during an outage); once stored, {@link #applyStored} applies it to this replica's actor
 * and the caller is answered. Every replica's consumer reads the stream ({@link #consume}) and
 * {@link #applyFromStream} applies each message to its actor, this replica's own included (idempotent).
 *
 * Start-up (in the background once NATS is connected): create or check the stream, look up which logged writes
 * it already holds, join from a peer's backup (or a restore file, or the stream), show the logged writes
 * provisionally, consume from the backup's position, and report ready only when caught up (G8). A gap in the
 * stream, or a recreated stream, makes it not ready and rejoin (X4).
 */
export class GradesReplica implements GradesPort {
  readonly name = 'grades';
  readonly #o: GradesReplicaOptions;
  readonly #log: Logger;
  readonly #actor: GradesActor;
  readonly #codec: ReplicationCodec;
  #outbox: Outbox | undefined;
  #port: (() => StreamPort | undefined) | undefined;
  #origin: string;
  #phase: GradesPhase = 'starting';
  #stopConsumer: (() => Promise<void>) | undefined;
  #joinedFrom: string | undefined;
  #streamCreated = '';
  #streamLast = 0;
  #gaps = 0;
  #rejoins = 0;
  #identityTimer: NodeJS.Timeout | undefined;

  constructor(options: GradesReplicaOptions) {
    this.#o = options;
    this.#log = options.log.child({ component: 'grades' });
    this.#actor = new GradesActor({ log: this.#log });
    this.#codec = new ReplicationCodec({
      ...(options.auth ? { auth: options.auth } : {}),
      subject: options.stream.subject,
    });
    // Without a data directory the origin names this process: after a restart under the same REPLICA_ID, the
    // messages of the previous run are another origin's, with its own counter. With one, it names the
    // directory (read at start), whose logged writes keep their origin and counter across restarts.
    this.#origin = `${options.replicaId}/${randomBytes(4).toString('hex')}`;
  }

  /** True once the replica serves reads and writes. */
  get ready(): boolean {
    return this.#phase === 'ready';
  }

  /** What readiness and metrics report. */
  get stats(): {
    phase: GradesPhase;
    joinedFrom: string | undefined;
    origin: string;
    position: number;
    records: number;
    unconfirmed: number;
    streamLast: number;
    outbox: number;
    outboxOldestMs: number;
    gaps: number;
    rejoins: number;
  } {
    return {
      phase: this.#phase,
      joinedFrom: this.#joinedFrom,
      origin: this.#origin,
      ...this.#actor.state,
      streamLast: this.#streamLast,
      outbox: this.#outbox?.size ?? 0,
      outboxOldestMs: this.#outbox?.oldestAgeMs ?? 0,
      gaps: this.#gaps,
      rejoins: this.#rejoins,
    };
  }

  /** See {@link GradesPort.get}: a synchronous read between two actor messages. */
  get(userId: string): UserGrade | undefined {
    return this.#actor.peek(userId);
  }

  /** Step 1 of a write: standalone, straight to the actor; replicated, into the outbox. */
  async set(update: GradeUpdate): Promise<SetOutcome> {
    if (!this.#outbox) {
      return { status: 'local', record: await this.#actor.ask({ type: 'unreplicated', update }) };
    }
    const receipt = await this.#outbox.submit(update);
    return receipt.status === 'stored'
      ? { status: 'stored', seq: receipt.seq, record: receipt.record }
      : { status: 'logged', record: receipt.record };
  }

  /** A csv.gz backup read through the actor's mailbox. */
  backup(): Promise<BackupStream> {
    return openBackup(backupSource(this.#actor));
  }

  async start(): Promise<void> {
    await this.#actor.start();
    const nats = this.#o.nats;
    if (!nats) {
      if (this.#o.restoreFrom) {
        await restoreStandalone(this.#o.restoreFrom, this.#target(), this.#o.peerAuthorization, this.#log);
      }
      this.#phase = 'ready';
      this.#o.log.warn('NATS_URL is not set: grades are not replicated and live in this process only');
      return;
    }
    let durable;
    if (this.#o.outboxDir) {
      durable = await OutboxLog.open(this.#o.outboxDir, () => this.#origin);
      this.#origin = durable.origin;
      if (durable.writes.length > 0) {
        this.#log.info({ writes: durable.writes.length }, 'outbox log holds writes not yet replicated');
      }
    }
    this.#port = jetStreamPort(nats, this.#o.stream.name);
    this.#outbox = new Outbox({
      origin: this.#origin,
      subject: originSubject(this.#o.stream.subject, this.#origin),
      stream: this.#port,
      ...(durable ? { durable } : {}),
      onLogged: (n, update) => this.#applyLogged(n, update),
      onStored: (writes, seq) => this.#applyStored(writes, seq),
      codec: this.#codec,
      maxBatch: this.#o.publishWindow,
      ackTimeoutMs: this.#o.ackTimeoutMs ?? 2000,
      retryMs: 250,
      writeTimeoutMs: this.#o.writeTimeoutMs ?? 10_000,
      log: this.#log,
    });
    this.#phase = 'waiting-for-nats';
    nats.onConnected((nc) => {
      if (this.#phase === 'waiting-for-nats') void this.#join(nc, true);
    });
  }

  /** Stops consuming, gives the outbox a moment to publish what it holds, then stops the actor. */
  async stop(): Promise<void> {
    const previous = this.#phase;
    this.#phase = 'stopped';
    clearInterval(this.#identityTimer);
    await this.#stopConsumer?.();
    if (this.#outbox) {
      // Worth waiting for only while the stream takes writes; logged ones are safe in the log anyway.
      const wait = previous !== 'failed' && !this.#outbox.failing;
      if (wait && !(await this.#outbox.flush(2000))) {
        this.#log.error(
          { unpublished: this.#outbox.size, logged: this.#outbox.pendingLogged().length },
          'stopping with writes not yet replicated',
        );
      }
      await this.#outbox.stop();
    }
    await this.#actor.stop();
  }

  /** A logged write shows provisionally until the stream stores it. */
  #applyLogged(n: number, update: GradeUpdate): Promise<UserGrade> {
    return this.#actor.ask({ type: 'local', n, update });
  }

  /** The stream stored these writes of this replica, in one message at `seq`. */
  #applyStored(writes: readonly StoredWrite[], seq: number): Promise<(UserGrade | undefined)[]> {
    return this.#actor.ask({ type: 'stored', seq, writes });
  }

  /** A message read from the stream, any origin's; a replay is logged (without its payload) and counted. */
  async #applyFromStream(seq: number, msg: ReplicationMessage): Promise<void> {
    const outcome = await this.#actor.ask({ type: 'stream', seq, msg, own: msg.origin === this.#origin });
    if (outcome.status !== 'replayed') return;
    this.#o.metrics?.replayed?.();
    this.#log.warn(
      { seq, origin: msg.origin, n: msg.n, lastN: lastN(msg), mark: outcome.mark },
      'replayed replication message skipped: its origin already wrote past it',
    );
  }

  #target(): JoinTarget {
    return {
      restart: (position, streamCreated, marks) =>
        this.#actor.ask({ type: 'restart', position, streamCreated, ...(marks ? { marks } : {}) }),
      load: (rows) => this.#actor.ask({ type: 'load', rows }),
    };
  }

  async #join(nc: NatsConnection, first: boolean): Promise<void> {
    const log = this.#log;
    try {
      this.#phase = first ? 'joining' : 'rejoining';
      const identity = await ensureStream(nc, this.#o.stream, log);
      this.#streamCreated = identity.created;
      this.#streamLast = identity.last;
      if (first) {
        const port = this.#port?.();
        if (!port) throw new Error('NATS connection lost while joining');
        await this.#outbox?.recover(port);
      }
      const joined = await joinCluster({
        peers: this.#o.peers,
        authorization: this.#o.peerAuthorization,
        target: this.#target(),
        stream: () => streamIdentity(nc, this.#o.stream.name),
        ...(this.#o.restoreFrom ? { restoreFrom: this.#o.restoreFrom } : {}),
        streamFallback: first,
        attempts: this.#o.joinAttempts,
        retryMs: 1000,
        timeoutMs: 30_000,
        log,
      });
      this.#joinedFrom = joined.source;
      // Stopped while joining (stop() runs concurrently with this background task).
      if ((this.#phase as GradesPhase) === 'stopped') return;
      // Logged writes not yet in the stream show as they did before (told, not asked: in the mailbox before
      // any confirmation the outbox posts from now on).
      for (const w of this.#outbox?.pendingLogged() ?? []) {
        this.#actor.tell({ type: 'local', n: w.n, update: w.update });
      }
      this.#phase = 'catching-up';
      await this.#consume(nc, joined.startSeq, joined.source);
      this.#watchIdentity(nc);
    } catch (err) {
      if (this.#phase === 'stopped') return;
      this.#phase = 'failed';
      log.fatal({ err: describeError(err) }, 'grades replica could not join the cluster');
      this.#o.onFatal(err);
    }
  }

  async #consume(nc: NatsConnection, startSeq: number, source: string): Promise<void> {
    this.#stopConsumer = await consumeStream({
      nc,
      stream: this.#o.stream.name,
      startSeq,
      apply: (seq, msg) => this.#applyFromStream(seq, msg),
      skip: (seq) => this.#actor.ask({ type: 'skip', seq }),
      codec: this.#codec,
      onRefused: (_seq, reason) => this.#o.metrics?.refused?.(reason),
      onCaughtUp: () => {
        if (this.#phase !== 'catching-up') return;
        this.#phase = 'ready';
        this.#log.info({ ...this.#actor.state, joinedFrom: source }, 'grades replica caught up and ready');
      },
      onGap: (expected, got) =>
        this.#gap(nc, { expected, got }, `replication stream gap: expected sequence ${expected}, got ${got}`),
      onApplied: (delayMs, pending) => {
        this.#o.metrics?.replicationDelay(delayMs);
        this.#streamLast = Math.max(this.#streamLast, this.#actor.state.position + pending);
      },
      log: this.#log,
    });
  }

  /**
   * Checks now and then that the stream is still the one the data came from (same creation time) and still
   * holds our position; a recreated or shrunk stream is a gap. Also keeps the stream's last sequence fresh for
   * the lag metric while nothing arrives.
   */
  #watchIdentity(nc: NatsConnection): void {
    clearInterval(this.#identityTimer);
    this.#identityTimer = setInterval(() => {
      if (this.#phase !== 'ready' && this.#phase !== 'catching-up') return;
      // Read before asking: the consumer may apply newer messages while the answer is on its way.
      const position = this.#actor.state.position;
      streamIdentity(nc, this.#o.stream.name).then(
        (s) => {
          this.#streamLast = Math.max(this.#streamLast, s.last);
          if (s.created !== this.#streamCreated) {
            this.#gap(
              nc,
              { created: s.created, was: this.#streamCreated },
              'replication stream was recreated',
            );
          } else if (s.last < position) {
            this.#gap(
              nc,
              { last: s.last, position },
              `replication stream ends at ${s.last}, before position ${position}`,
            );
          }
        },
        (err: unknown) => {
          if (isStreamNotFound(err))
            this.#gap(nc, { stream: this.#o.stream.name }, 'replication stream is gone');
        },
      );
    }, this.#o.identityCheckMs ?? 5000);
    this.#identityTimer.unref();
  }

  /** X4: not ready, an error naming both positions, and a rejoin from a peer's backup. */
  #gap(nc: NatsConnection, detail: Record<string, unknown>, message: string): void {
    if (this.#phase !== 'ready' && this.#phase !== 'catching-up') return;
    this.#phase = 'rejoining';
    this.#gaps++;
    this.#o.metrics?.gap();
    this.#log.error({ ...detail, position: this.#actor.state.position }, `${message}; rejoining from a peer`);
    clearInterval(this.#identityTimer);
    void (async () => {
      await this.#stopConsumer?.().catch(() => undefined);
      this.#stopConsumer = undefined;
      if (this.#phase !== 'rejoining') return;
      this.#rejoins++;
      this.#o.metrics?.rejoin();
      await this.#join(nc, false);
    })();
  }
}
