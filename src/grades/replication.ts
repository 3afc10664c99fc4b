import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Logger } from 'pino';
import { describeError } from '../errors.js';
import { replicationMessageSchema, type ReplicationMessage } from './model.js';

/** Stream settings (G6), all configurable. */
export interface StreamSettings {
  readonly name: string;
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

const NANOS = 1_000_000_000;

/**
 * Creates the stream, or checks an existing one carries our subject (a stream of another shape is a
 * configuration error, reported loudly rather than written into).
 */
export async function ensureStream(nc: NatsConnection, s: StreamSettings, log: Logger): Promise<void> {
  const jsm = await jetstreamManager(nc);
  try {
    const info = await jsm.streams.info(s.name);
    if (!info.config.subjects?.includes(s.subject)) {
      throw new Error(
        `stream ${s.name} exists without subject ${s.subject} (has ${info.config.subjects?.join(', ')})`,
      );
    }
    return;
  } catch (err) {
    if (!/not found/i.test(describeError(err))) throw err;
  }
  await jsm.streams.add({
    name: s.name,
    subjects: [s.subject],
    max_age: s.maxAgeS * NANOS,
    max_bytes: s.maxBytes,
    duplicate_window: s.duplicateWindowS * NANOS,
  });
  log.info({ stream: s.name, subject: s.subject }, 'replication stream created');
}

/** The sequences the stream holds now. */
export async function streamRange(nc: NatsConnection, name: string): Promise<StreamRange> {
  const info = await (await jetstreamManager(nc)).streams.info(name);
  return { first: info.state.first_seq, last: info.state.last_seq };
}

/** What the outbox needs of JetStream: a publish that resolves with the stream sequence. */
export interface Publisher {
  publish(
    subject: string,
    data: string,
    options: { msgID: string; timeout: number },
  ): Promise<{ seq: number }>;
}

/** A {@link Publisher} on the current connection of a client, or undefined while there is none. */
export function jetStreamPublisher(
  connection: () => NatsConnection | undefined,
): () => Publisher | undefined {
  let cached: { nc: NatsConnection; js: JetStreamClient } | undefined;
  return () => {
    const nc = connection();
    if (!nc || nc.isClosed()) return undefined;
    if (cached?.nc !== nc) cached = { nc, js: jetstream(nc) };
    return cached.js;
  };
}

/** Settings of {@link Outbox}. */
export interface OutboxOptions {
  readonly subject: string;
  /** JetStream, when connected (see {@link jetStreamPublisher}); injected so tests can fake it. */
  readonly publisher: () => Publisher | undefined;
  /** Called with each write's stream sequence once JetStream acknowledged it. */
  readonly onConfirm: (n: number, seq: number) => void;
  /** Messages published before waiting for their acknowledgements. */
  readonly window: number;
  readonly ackTimeoutMs: number;
  readonly retryMs: number;
  readonly log: Logger;
}

/**
 * Local writes waiting to reach the stream, published in the order they were made. Each message carries a
 * message id (origin and write counter), so a publish retried after a lost acknowledgement is de-duplicated by
 * JetStream. While NATS is unreachable writes simply accumulate here (G6: sets keep working) and go out, in
 * order, once it is back. Unbounded, like the writes it holds; its size is a metric.
 */
export class Outbox {
  readonly #o: OutboxOptions;
  readonly #queue: ReplicationMessage[] = [];
  #running = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: OutboxOptions) {
    this.#o = options;
  }

  /** Writes not yet acknowledged. */
  get size(): number {
    return this.#queue.length;
  }

  /** Queues a write for publication. */
  push(msg: ReplicationMessage): void {
    this.#queue.push(msg);
    this.kick();
  }

  /** Starts publishing if there is something to publish and nothing is publishing yet. */
  kick(): void {
    if (!this.#running && !this.#stopped && this.#queue.length > 0) void this.#drain();
  }

  /** Stops publishing; what is queued stays queued (and is reported by the caller). */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** Waits until the queue is empty or `ms` pass; true when empty. */
  async flush(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (this.#queue.length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return this.#queue.length === 0;
  }

  async #drain(): Promise<void> {
    this.#running = true;
    try {
      while (this.#queue.length > 0 && !this.#stopped) {
        const js = this.#o.publisher();
        if (!js) break;
        const batch = this.#queue.slice(0, this.#o.window);
        const results = await Promise.allSettled(
          batch.map((msg) =>
            js.publish(this.#o.subject, JSON.stringify(msg), {
              msgID: `${msg.origin}:${msg.n}`,
              timeout: this.#o.ackTimeoutMs,
            }),
          ),
        );
        let done = 0;
        for (const [i, result] of results.entries()) {
          if (result.status !== 'fulfilled') {
            this.#o.log.warn(
              { err: describeError(result.reason), waiting: this.#queue.length },
              'publish failed; will retry',
            );
            break;
          }
          this.#o.onConfirm((batch[i] as ReplicationMessage).n, result.value.seq);
          done++;
        }
        this.#queue.splice(0, done);
        if (done < batch.length) break;
      }
    } finally {
      this.#running = false;
    }
    if (this.#queue.length > 0 && !this.#stopped) {
      clearTimeout(this.#timer);
      this.#timer = setTimeout(() => this.kick(), this.#o.retryMs);
      this.#timer.unref();
    }
  }
}

/** Settings of {@link consumeStream}. */
export interface ConsumeOptions {
  readonly nc: NatsConnection;
  readonly stream: string;
  /** The first sequence to read (1 for everything). */
  readonly startSeq: number;
  /** Applies one message; awaited, so a slow store slows the consumer instead of buffering without bound. */
  readonly apply: (seq: number, msg: ReplicationMessage) => Promise<void>;
  /** Called once, when the consumer has read everything the stream held (pending 0). */
  readonly onCaughtUp: () => void;
  /** How long the consumer may sit behind the stream without receiving anything before it is recreated. */
  readonly stallMs?: number;
  readonly log: Logger;
}

/**
 * Reads the stream from `startSeq` with an ordered consumer and hands every message to `apply` in sequence
 * order. The client recreates an ordered consumer after gaps and reconnects; as a second line of defence, if the
 * message iterator ends, or the stream holds messages past our position and none arrives for `stallMs`, the
 * consumer is recreated here from the next sequence (the store ignores anything it already has). Malformed
 * messages are logged and skipped. Resolves with a `stop` function.
 */
export async function consumeStream(o: ConsumeOptions): Promise<() => Promise<void>> {
  const js = jetstream(o.nc);
  const stallMs = o.stallMs ?? 3000;
  let next = o.startSeq;
  let stopped = false;
  let caughtUp = false;
  let current: { close(): Promise<void | Error>; stop(): void } | undefined;
  let lastProgress = Date.now();
  const caughtUpNow = () => {
    if (!caughtUp) {
      caughtUp = true;
      o.onCaughtUp();
    }
  };
  if ((await streamRange(o.nc, o.stream)).last < next) caughtUpNow();

  const watchdog = setInterval(
    () => {
      void streamRange(o.nc, o.stream)
        .then((range) => {
          if (range.last < next) {
            lastProgress = Date.now();
            caughtUpNow();
          } else if (Date.now() - lastProgress > stallMs && current) {
            o.log.warn({ next, last: range.last }, 'replication consumer stalled; recreating it');
            lastProgress = Date.now();
            current.stop();
          }
        })
        .catch(() => undefined);
    },
    Math.max(250, Math.floor(stallMs / 3)),
  );
  watchdog.unref();

  const loop = (async () => {
    while (!stopped) {
      try {
        const consumer = await js.consumers.get(
          o.stream,
          next > 1 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: next } : {},
        );
        const messages = await consumer.consume({ max_messages: 1024 });
        current = messages;
        for await (const m of messages) {
          lastProgress = Date.now();
          if (m.seq < next) continue;
          next = m.seq + 1;
          let msg: ReplicationMessage;
          try {
            msg = replicationMessageSchema.parse(m.json());
          } catch (err) {
            o.log.warn({ seq: m.seq, err: describeError(err) }, 'skipping a malformed replication message');
            if (m.info.pending === 0) caughtUpNow();
            continue;
          }
          await o.apply(m.seq, msg);
          if (m.info.pending === 0) caughtUpNow();
        }
      } catch (err) {
        if (!stopped)
          o.log.warn({ next, err: describeError(err) }, 'replication consumer failed; recreating it');
      }
      if (!stopped) await new Promise((r) => setTimeout(r, 250));
    }
  })();

  return async () => {
    stopped = true;
    clearInterval(watchdog);
    await current?.close();
    await loop.catch(() => undefined);
  };
}
