import {
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
} from '@nats-io/jetstream';
import type { MsgHdrs, NatsConnection } from '@nats-io/nats-core';
import { headers } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { ConfigError, describeError } from '../errors.js';
import type { NatsClient } from '../nats/connection.js';
import type { ReplicationMessage } from './model.js';
import type { StreamPort } from './outbox.js';
import { MAC_HEADER, ReplicationCodec, UnauthenticatedReplicationMessageError } from './wire.js';

/** Stream settings (G6), all configurable. */
export interface StreamSettings {
  readonly name: string;
  /** The base subject: each origin publishes on `<subject>.<origin>`, and the stream holds `<subject>.>`. */
  readonly subject: string;
  readonly maxAgeS: number;
  readonly maxBytes: number;
  readonly duplicateWindowS: number;
}

/** The stream's retained range: `first` is the oldest sequence still held, `last` the newest. */
export interface StreamRange {
  readonly first: number;
  readonly last: number;
}

/** The range and the stream's identity: its creation time tells one incarnation of a name from the next. */
export interface StreamIdentity extends StreamRange {
  readonly created: string;
}

/** True when `err` is JetStream's "stream not found" (by its API error code, not its text). */
export function isStreamNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound;
}

const NANOS = 1_000_000_000;

/**
 * Creates the stream, or checks an existing one carries our subjects (a stream of another shape is a
 * configuration error, reported loudly rather than written into). Resolves with its identity.
 */
export async function ensureStream(
  nc: NatsConnection,
  s: StreamSettings,
  log: Logger,
): Promise<StreamIdentity> {
  const jsm = await jetstreamManager(nc);
  const subjects = `${s.subject}.>`;
  try {
    const info = await jsm.streams.info(s.name);
    const has = info.config.subjects ?? [];
    if (has.includes(subjects)) return identity(info);
    // The earlier format of this service published on the base subject itself: such a stream is ours and gains
    // the per-origin subjects (its old messages, if any, are skipped as malformed). Any other shape is someone
    // else's stream, reported rather than written into.
    if (!has.includes(s.subject)) {
      throw new ConfigError(`stream ${s.name} exists without subject ${subjects} (has ${has.join(', ')})`);
    }
    const updated = await jsm.streams.update(s.name, { ...info.config, subjects: [...has, subjects] });
    log.warn(
      { stream: s.name, subjects: updated.config.subjects },
      'replication stream given per-origin subjects',
    );
    return identity(updated);
  } catch (err) {
    if (!isStreamNotFound(err)) throw err;
  }
  const info = await jsm.streams.add({
    name: s.name,
    subjects: [subjects],
    max_age: s.maxAgeS * NANOS,
    max_bytes: s.maxBytes,
    duplicate_window: s.duplicateWindowS * NANOS,
  });
  log.info({ stream: s.name, subjects }, 'replication stream created');
  return identity(info);
}

/** The stream's range and identity now. */
export async function streamIdentity(nc: NatsConnection, name: string): Promise<StreamIdentity> {
  return identity(await (await jetstreamManager(nc)).streams.info(name));
}

/** The sequences the stream holds now. */
async function streamRange(nc: NatsConnection, name: string): Promise<StreamRange> {
  const { first, last } = await streamIdentity(nc, name);
  return { first, last };
}

function identity(info: { created: string; state: { first_seq: number; last_seq: number } }): StreamIdentity {
  return { created: info.created, first: info.state.first_seq, last: info.state.last_seq };
}

/**
 * The outbox's {@link StreamPort} on the client's current connection, or undefined while it is not connected
 * (writes are then logged or refused at once instead of waiting for a publish to time out).
 */
export function jetStreamPort(nats: NatsClient, stream: string): () => StreamPort | undefined {
  let cached: { nc: NatsConnection; port: StreamPort } | undefined;
  return () => {
    const nc = nats.connection;
    if (!nc || nc.isClosed() || nats.state !== 'connected') return undefined;
    if (cached?.nc !== nc) cached = { nc, port: portOn(nc, stream) };
    return cached.port;
  };
}

function portOn(nc: NatsConnection, stream: string): StreamPort {
  const js: JetStreamClient = jetstream(nc);
  let jsm: Promise<JetStreamManager> | undefined;
  return {
    publish: async (subject, data, o) => {
      let hdrs: MsgHdrs | undefined;
      if (o.mac !== undefined) {
        hdrs = headers();
        hdrs.set(MAC_HEADER, o.mac);
      }
      const ack = await js.publish(subject, data, {
        msgID: o.msgID,
        timeout: o.timeout,
        expect: { lastSubjectSequence: o.expectLastSubjectSeq },
        ...(hdrs ? { headers: hdrs } : {}),
      });
      return { seq: ack.seq };
    },
    maxPayload: () => nc.info?.max_payload,
    last: async (subject) => {
      jsm ??= jetstreamManager(nc, { checkAPI: false });
      const m = await (await jsm).streams.getMessage(stream, { last_by_subj: subject });
      return m ? { seq: m.seq, data: m.data, mac: m.header?.get(MAC_HEADER) || undefined } : undefined;
    },
  };
}

/** Settings of {@link consumeStream}. */
export interface ConsumeOptions {
  readonly nc: NatsConnection;
  readonly stream: string;
  /** The first sequence to read (1 for everything). */
  readonly startSeq: number;
  /** Applies one message; awaited, so a slow store slows the consumer instead of buffering without bound. */
  readonly apply: (seq: number, msg: ReplicationMessage) => Promise<void>;
  /** Decodes (and with `CLUSTER_SECRET` authenticates) each message; default: validation only. */
  readonly codec?: ReplicationCodec;
  /** A message at `seq` was refused as unauthenticated (it is skipped like a malformed one). */
  readonly onRefused?: (seq: number, reason: string) => void;
  /** Moves the position past a malformed message at `seq` (logged and skipped). */
  readonly skip: (seq: number) => Promise<void>;
  /** Called once, when the consumer has read everything the stream held (pending 0). */
  readonly onCaughtUp: () => void;
  /**
   * The stream delivered `got` where `expected` was next: the messages between are gone (discarded by the
   * stream's limits, or the stream was recreated). The consumer has stopped; the caller rejoins.
   */
  readonly onGap: (expected: number, got: number) => void;
  /** After each message: how long ago the stream stored it, and how many the stream holds beyond it. */
  readonly onApplied?: (delayMs: number, pending: number) => void;
  readonly log: Logger;
}

/**
 * Reads the stream from `startSeq` with an ordered consumer and hands every message to `apply` in sequence
 * order. The client recreates an ordered consumer by itself after a reconnect or a missed heartbeat, resuming
 * after the last stream sequence it delivered (tests/integration/grades-consumer.test.ts holds it to that); if
 * the message iterator ends anyway (the consumer could not be recreated), it is recreated here from the next
 * sequence. Every delivered sequence must be the one after the last: anything else is a gap, reported to
 * `onGap`, and the consumer stops rather than apply later messages over missing ones. Malformed messages are
 * logged and skipped. Resolves with a `stop` function.
 */
export async function consumeStream(o: ConsumeOptions): Promise<() => Promise<void>> {
  const codec = o.codec ?? new ReplicationCodec();
  const js = jetstream(o.nc);
  let next = o.startSeq;
  let stopped = false;
  let caughtUp = false;
  let current: { close(): Promise<void | Error> } | undefined;
  const caughtUpNow = () => {
    if (!caughtUp) {
      caughtUp = true;
      o.onCaughtUp();
    }
  };
  if ((await streamRange(o.nc, o.stream)).last < next) caughtUpNow();

  const loop = (async () => {
    while (!stopped) {
      try {
        const consumer = await js.consumers.get(
          o.stream,
          next > 1 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: next } : {},
        );
        const messages = await consumer.consume({ max_messages: 1024, expires: 5000, idle_heartbeat: 1000 });
        void watchHeartbeats(messages, () => next, o.log);
        current = messages;
        for await (const m of messages) {
          if (m.seq < next) continue;
          if (m.seq > next) {
            stopped = true;
            o.onGap(next, m.seq);
            break;
          }
          next = m.seq + 1;
          let msg: ReplicationMessage | undefined;
          try {
            msg = codec.decode(m.data, m.headers?.get(MAC_HEADER) || undefined, m.subject);
          } catch (err) {
            if (err instanceof UnauthenticatedReplicationMessageError) {
              o.log.error(
                { seq: m.seq, reason: err.reason },
                'skipping an unauthenticated replication message',
              );
              o.onRefused?.(m.seq, err.reason);
            } else {
              o.log.error(
                { seq: m.seq, err: describeError(err) },
                'skipping a malformed replication message',
              );
            }
          }
          await (msg ? o.apply(m.seq, msg) : o.skip(m.seq));
          o.onApplied?.(Date.now() - m.info.timestampNanos / 1_000_000, m.info.pending);
          if (m.info.pending === 0) caughtUpNow();
        }
      } catch (err) {
        if (!stopped)
          o.log.warn({ next, err: describeError(err) }, 'replication consumer failed; recreating it');
      }
      if (!stopped) await new Promise((r) => setTimeout(r, 250));
    }
    await current?.close();
  })();

  return async () => {
    stopped = true;
    await current?.close();
    await loop.catch(() => undefined);
  };
}

/**
 * The one case the client does not recover from by itself (tests/integration/grades-consumer.test.ts, "stall"):
 * messages lost on a link that stalled and was then reset. The server counts them as delivered, and the
 * ordered consumer only notices a missing message when a later one arrives, so with no further writes the
 * replica would stay behind indefinitely. The server's idle heartbeats name the last stream sequence it
 * delivered: two in a row beyond what we have read, with no progress between them, mean messages were lost,
 * and the consumer is stopped so the loop recreates it from the next sequence.
 */
async function watchHeartbeats(
  messages: { status(): AsyncIterable<{ type: string }>; stop(): void },
  next: () => number,
  log: Logger,
): Promise<void> {
  let suspect: number | undefined;
  for await (const s of messages.status()) {
    if (s.type !== 'heartbeat') continue;
    const delivered = (s as { lastStreamSequence?: number }).lastStreamSequence ?? 0;
    if (delivered < next()) {
      suspect = undefined;
    } else if (suspect !== next()) {
      suspect = next();
    } else {
      log.warn({ next: next(), delivered }, 'replication consumer lost delivered messages; recreating it');
      messages.stop();
      return;
    }
  }
}
