import type { Logger } from 'pino';
import { describeError } from '../errors.js';
import { GradesUnavailableError, GradesWriteUnconfirmedError } from './errors.js';
import type { StoredWrite } from './grades-actor.js';
import type { GradeUpdate, UserGrade } from './model.js';
import type { LoggedWrite, OutboxLog } from './outbox-log.js';
import { OrderedQueue } from '../actor/ordered-queue.js';
import { lastN, ReplicationCodec } from './wire.js';

/** What the outbox needs of JetStream (see `jetStreamPort` in replication.ts); a fake in unit tests. */
export interface StreamPort {
  /**
   * Publishes on `subject` only if the last message stored on it has sequence `expectLastSubjectSeq`
   * (0: none); resolves with the new message's stream sequence.
   */
  publish(
    subject: string,
    data: Uint8Array,
    /** `mac`: the message's MAC, sent in its `Cluster-Mac` header (with `CLUSTER_SECRET`). */
    options: { msgID: string; timeout: number; expectLastSubjectSeq: number; mac?: string | undefined },
  ): Promise<{ seq: number }>;
  /** The last message stored on `subject` (with its MAC header, if any), or undefined when there is none. */
  last(subject: string): Promise<{ seq: number; data: Uint8Array; mac?: string | undefined } | undefined>;
  /** The largest message body the server takes, headers included (its `max_payload`); unknown: no limit. */
  readonly maxPayload?: () => number | undefined;
}

/** Room left in a message for the headers the outbox sends (message id, expected sequence, MAC). */
const HEADER_ROOM = 1024;

/** How a write was kept. */
export type WriteReceipt =
  /** Stored in the stream at `seq`: replicated and durable (200). */
  | { readonly status: 'stored'; readonly n: number; readonly seq: number; readonly record: UserGrade }
  /** In the local log, synced, not yet in the stream (202). */
  | { readonly status: 'logged'; readonly n: number; readonly record: UserGrade };

/** Settings of {@link Outbox}. */
export interface OutboxOptions {
  readonly origin: string;
  /** This origin's own subject (see `originSubject`). */
  readonly subject: string;
  /** JetStream while connected, undefined while not. */
  readonly stream: () => StreamPort | undefined;
  /** The durable log (`GRADES_OUTBOX_DIR`), with what it held at start; absent: RAM only, outages refused. */
  readonly durable?: {
    readonly log: OutboxLog;
    readonly writes: readonly LoggedWrite[];
    readonly nextN: number;
  };
  /** A write was synced to the log: apply it provisionally (called before any `onStored` for it). */
  readonly onLogged: (n: number, update: GradeUpdate) => Promise<UserGrade>;
  /**
   * The stream stored these writes, in this order, in one message at `seq` (`provisional`: `onLogged` applied
   * them before); resolves with the record after each (read for the writes whose callers wait).
   */
  readonly onStored: (
    writes: readonly StoredWrite[],
    seq: number,
  ) => Promise<readonly (UserGrade | undefined)[]>;
  /** Encodes (and with `CLUSTER_SECRET` seals) what is published; default: validation only. */
  readonly codec?: ReplicationCodec;
  /** Most writes in one stream message. */
  readonly maxBatch: number;
  readonly ackTimeoutMs: number;
  readonly retryMs: number;
  /** Without a log: how long a caller waits for a write already sent before it is told the outcome is unknown. */
  readonly writeTimeoutMs: number;
  readonly now?: () => number;
  readonly log: Logger;
}

interface Entry extends LoggedWrite {
  readonly at: number;
  /** In the log ('yes'), being synced to it, or only in memory. */
  logged: 'no' | 'logging' | 'yes';
  /** Has been in a publish: the stream may hold it. */
  sent: boolean;
  /** `onLogged` applied it provisionally. */
  provisional: boolean;
  /** The caller has its answer (or there is no caller: a write replayed from the log). */
  settled: boolean;
  resolve?: (receipt: WriteReceipt) => void;
  reject?: (err: unknown) => void;
  timer?: NodeJS.Timeout;
}

/**
 * This replica's writes on their way into the stream, in the order they were accepted (X3), each answered only
 * once it is kept (X8): stored by the stream, or (during an outage, with a log) synced to the local log.
 *
 * Order: every origin publishes on its own subject, one message in flight at a time, with JetStream's
 * expected-last-subject-sequence, so a message can only land right after the one before it. After any failure
 * the outbox asks the stream for the last message on its subject before publishing again: if the message it
 * sent is there, it was stored (only its acknowledgement was lost); otherwise it is published again, behind
 * nothing newer. So a retry never lands after a newer write and never lands twice, whatever the de-duplication
 * window. Throughput comes from group commit rather than from several messages in flight: writes that arrive
 * while a message is in flight go out together in the next one (up to `maxBatch`), so concurrent requests share
 * a round trip, and the stream holds one message per round trip instead of one per write.
 *
 * Outages: with a log, a write that cannot be published now (not connected, or the last publish failed) is
 * synced to the log and answered as accepted-not-yet-replicated; so are writes queued when a publish fails.
 * They are published in order when the stream is back (and, after a crash, by the next process on the same
 * directory), and leave the log once stored. Without a log such a write is refused and nothing changes.
 */
export class Outbox {
  readonly #o: OutboxOptions;
  readonly #codec: ReplicationCodec;
  readonly #now: () => number;
  readonly #queue = new OrderedQueue<Entry>();
  #nextN: number;
  /** The sequence of the last message on our subject; undefined after a failure until looked up again. */
  #lastSubjectSeq: number | undefined;
  #failing = false;
  #recovered = false;
  #running = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  /** Entries in the queue that are in the log (or being synced to it). */
  #logged = 0;
  /** Log lines of writes already stored, waiting for a rewrite. */
  #garbage = 0;

  constructor(options: OutboxOptions) {
    this.#o = options;
    this.#codec = options.codec ?? new ReplicationCodec();
    this.#now = options.now ?? Date.now;
    this.#nextN = options.durable?.nextN ?? 1;
    for (const w of options.durable?.writes ?? []) {
      this.#queue.push({
        ...w,
        at: this.#now(),
        logged: 'yes',
        sent: false,
        provisional: true,
        settled: true,
      });
      this.#logged++;
    }
  }

  /** Writes not yet stored by the stream. */
  get size(): number {
    return this.#queue.size;
  }

  /** Age in ms of the oldest write not yet stored (0 when none). */
  get oldestAgeMs(): number {
    const head = this.#queue.head;
    return head ? this.#now() - head.at : 0;
  }

  /** True while writes cannot reach the stream (they are logged or refused). */
  get failing(): boolean {
    return this.#failing;
  }

  /** The writes only the log holds, oldest first: the replica shows them provisionally. */
  pendingLogged(): LoggedWrite[] {
    return this.#queue.items.filter((e) => e.logged !== 'no').map(({ n, update }) => ({ n, update }));
  }

  /**
   * Once, before the first publish: asks the stream for the last message of this origin and drops the logged
   * writes it already holds (a crash after the stream stored them and before the log was rewritten). Resolves
   * with the writes still to publish, which the caller applies provisionally.
   */
  async recover(port: StreamPort): Promise<LoggedWrite[]> {
    if (!this.#recovered) {
      const stored = await this.#lookup(port);
      const held = this.#queue.remove((e) => e.n <= stored);
      for (const e of held) this.#forget(e);
      this.#nextN = Math.max(this.#nextN, stored + 1);
      if (held.length > 0) {
        this.#o.log.info(
          { held: held.length },
          'logged writes already in the stream dropped from the outbox',
        );
      }
      this.#recovered = true;
    }
    this.kick();
    return this.pendingLogged();
  }

  /**
   * Takes a write: resolves once it is kept (see {@link WriteReceipt}); rejects with GradesUnavailableError
   * (nothing changed) or GradesWriteUnconfirmedError (sent, outcome not known in time).
   */
  submit(update: GradeUpdate): Promise<WriteReceipt> {
    const log = this.#o.durable?.log;
    const reachable = !this.#failing && this.#o.stream() !== undefined;
    if (this.#stopped) return Promise.reject(new GradesUnavailableError('the grades replica is stopping'));
    if (!reachable && !log) {
      return Promise.reject(
        new GradesUnavailableError('the replication stream is unreachable; the write was not taken'),
      );
    }
    return new Promise<WriteReceipt>((resolve, reject) => {
      const entry: Entry = {
        n: this.#nextN++,
        update,
        at: this.#now(),
        logged: 'no',
        sent: false,
        provisional: false,
        settled: false,
        resolve,
        reject,
      };
      this.#queue.push(entry);
      // Behind logged writes a new one would wait for all of them: it is logged too, and answered at once.
      if (log && (!reachable || this.#logged > 0)) this.#toLog([entry]);
      else if (!log) {
        entry.timer = setTimeout(() => this.#timeout(entry), this.#o.writeTimeoutMs);
        entry.timer.unref();
      }
      // While unreachable, trying per write would only fail again: the retry timer tries (once per interval).
      if (reachable) this.kick();
      else this.#retryLater();
    });
  }

  /** Starts publishing if there is something to publish and nothing is publishing yet. */
  kick(): void {
    if (this.#running || this.#stopped || !this.#recovered) return;
    if (this.#queue.size === 0 && !this.#failing) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    void this.#drain();
  }

  /** Tries again after `retryMs`, unless a try is already due. */
  #retryLater(): void {
    if (this.#stopped || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.kick();
    }, this.#o.retryMs);
    this.#timer.unref();
  }

  /** Waits until every write is stored or `ms` pass; true when none is left. */
  async flush(ms: number): Promise<boolean> {
    const deadline = this.#now() + ms;
    while (this.#queue.size > 0 && this.#now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return this.#queue.size === 0;
  }

  /** Stops publishing. Logged writes stay in the log for the next start; callers still waiting are refused. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    for (const e of this.#queue.items) {
      clearTimeout(e.timer);
      if (!e.settled && e.logged === 'no') {
        e.settled = true;
        e.reject?.(
          e.sent
            ? new GradesWriteUnconfirmedError('the replica stopped before the stream confirmed the write')
            : new GradesUnavailableError('the grades replica is stopping'),
        );
      }
    }
    await this.#o.durable?.log.close();
  }

  async #drain(): Promise<void> {
    this.#running = true;
    try {
      const port = this.#o.stream();
      if (!port) throw new GradesUnavailableError('not connected to NATS');
      if (this.#queue.size === 0) {
        // Nothing to publish, but the last publish failed: a look-up tells whether the stream answers again.
        await this.#lookup(port);
        this.#failing = false;
      } else {
        const round = await this.#queue.drain(
          (batch) => this.#publish(port, batch),
          this.#o.maxBatch,
          () => !this.#stopped,
        );
        if (round.error !== undefined) this.#failed(round.error);
      }
    } catch (err) {
      this.#failed(err);
    } finally {
      this.#running = false;
    }
    // After a failure, the next try is a retry interval away. Otherwise writes still queued came in as the round
    // ended (from the answers it gave, in the same chain of promises, while it was still running): they go now.
    if (this.#failing) this.#retryLater();
    else if (this.#queue.size > 0) this.kick();
  }

  /**
   * Publishes the oldest writes as one message; resolves with how many of them are now stored. After a failure
   * it first looks up the last message on our subject: the writes it holds were stored (only the
   * acknowledgement was lost) and are not published again. The message id names the writes it carries, so
   * JetStream's de-duplication can only ever answer for exactly these writes.
   */
  async #publish(port: StreamPort, batch: readonly Entry[]): Promise<number> {
    if (this.#lastSubjectSeq === undefined) {
      const stored = await this.#lookup(port);
      this.#failing = false;
      let held = 0;
      while (held < batch.length && (batch[held] as Entry).n <= stored) held++;
      // Those leave the queue at once (the round goes on with the rest): were they published with the rest, a
      // failure would keep them queued, and every retry would find and apply them again.
      if (held > 0) {
        this.#stored(batch.slice(0, held), this.#lastSubjectSeq ?? 0);
        return held;
      }
    }
    let rest = batch;
    let encoded = this.#encode(rest);
    // A batch is counted in writes; the server limits bytes. Halved until it fits (a single write always does:
    // a user_id is at most 256 characters), so a window of long ids never leaves the outbox stuck on its head.
    const limit = (port.maxPayload?.() ?? Infinity) - HEADER_ROOM;
    while (encoded.data.length > limit && rest.length > 1) {
      rest = rest.slice(0, Math.ceil(rest.length / 2));
      encoded = this.#encode(rest);
    }
    for (const e of rest) e.sent = true;
    const first = (rest[0] as Entry).n;
    const last = (rest.at(-1) as Entry).n;
    const { data, mac } = encoded;
    const ack = await port.publish(this.#o.subject, data, {
      msgID: `${this.#o.origin}:${first}-${last}`,
      timeout: this.#o.ackTimeoutMs,
      expectLastSubjectSeq: this.#lastSubjectSeq ?? 0,
      mac,
    });
    this.#lastSubjectSeq = ack.seq;
    this.#stored(rest, ack.seq);
    return rest.length;
  }

  /** One message carrying `entries` (consecutive writes of this origin). */
  #encode(entries: readonly Entry[]): { data: Uint8Array; mac?: string | undefined } {
    return this.#codec.encode({
      origin: this.#o.origin,
      n: (entries[0] as Entry).n,
      updates: entries.map((e) => e.update),
    });
  }

  /** Reads the last message on our subject: sets the expected sequence, returns the last counter stored. */
  async #lookup(port: StreamPort): Promise<number> {
    const last = await port.last(this.#o.subject);
    this.#lastSubjectSeq = last?.seq ?? 0;
    if (!last) return 0;
    let origin: string;
    let stored: number;
    try {
      const msg = this.#codec.decode(last.data, last.mac, this.#o.subject);
      origin = msg.origin;
      stored = lastN(msg);
    } catch (err) {
      this.#foreign(last.seq, describeError(err));
      return 0;
    }
    if (origin !== this.#o.origin) {
      this.#foreign(last.seq, `written by ${JSON.stringify(origin.slice(0, 100))}`);
      return 0;
    }
    return stored;
  }

  /**
   * Someone else wrote the last message on our subject (no valid MAC, another origin, not a replication
   * message): it tells nothing of what we stored, so nothing is taken as stored from it, and our writes go out
   * after it; within the duplicate window JetStream answers a write already stored by its message id.
   */
  #foreign(seq: number, why: string): void {
    this.#o.log.error(
      { subject: this.#o.subject, seq, why },
      "the last message on this replica's subject is not its own; publishing after it",
    );
  }

  /**
   * The stream stored these writes at `seq`: one message to the actor for all of them, then their callers are
   * answered (the queue drops them after this).
   */
  #stored(batch: readonly Entry[], seq: number): void {
    this.#failing = false;
    const waiting = batch.map((e) => {
      clearTimeout(e.timer);
      this.#forget(e);
      const open = !e.settled;
      e.settled = true;
      return open;
    });
    const writes = batch.map((e) => ({ n: e.n, update: e.update, provisional: e.provisional }));
    this.#o.onStored(writes, seq).then(
      (records) =>
        batch.forEach((e, i) => {
          if (waiting[i]) e.resolve?.({ status: 'stored', n: e.n, seq, record: records[i] as UserGrade });
        }),
      (err: unknown) =>
        batch.forEach((e, i) => {
          if (waiting[i]) e.reject?.(err);
        }),
    );
    this.#compact();
  }

  #failed(err: unknown): void {
    if (!this.#failing) {
      this.#o.log.warn(
        { err: describeError(err), waiting: this.#queue.size },
        'grades publish failed; writes are held in order and retried',
      );
    }
    this.#failing = true;
    this.#lastSubjectSeq = undefined;
    if (this.#o.durable) {
      // Only when some are not logged yet: during a long outage the queue is long and all of it logged.
      if (this.#queue.size > this.#logged) this.#toLog(this.#queue.items.filter((e) => e.logged === 'no'));
      return;
    }
    // Without a log, writes never sent are refused now, unchanged; a sent one may be in the stream, so it stays
    // (in order) until the stream says whether it is, and its caller waits up to writeTimeoutMs.
    for (const e of this.#queue.remove((e) => !e.sent)) {
      clearTimeout(e.timer);
      e.settled = true;
      e.reject?.(
        new GradesUnavailableError('the replication stream is unreachable; the write was not taken'),
      );
    }
  }

  #timeout(entry: Entry): void {
    if (entry.settled) return;
    entry.settled = true;
    if (!entry.sent) {
      this.#queue.remove((e) => e === entry);
      entry.reject?.(new GradesUnavailableError('the replication stream did not take the write in time'));
    } else {
      entry.reject?.(
        new GradesWriteUnconfirmedError(
          `the stream did not confirm the write within ${this.#o.writeTimeoutMs} ms`,
        ),
      );
    }
  }

  #toLog(entries: Entry[]): void {
    const log = this.#o.durable?.log;
    if (!log || entries.length === 0) return;
    for (const e of entries) e.logged = 'logging';
    this.#logged += entries.length;
    log.append(entries).then(
      () => {
        for (const e of entries) {
          if (e.logged === 'logging') e.logged = 'yes';
          if (e.settled) continue;
          e.settled = true;
          e.provisional = true;
          const { resolve, reject } = e;
          this.#o.onLogged(e.n, e.update).then(
            (record) => resolve?.({ status: 'logged', n: e.n, record }),
            (err: unknown) => reject?.(err),
          );
        }
      },
      (err: unknown) => {
        this.#o.log.error({ err: describeError(err) }, 'could not write the outbox log');
        for (const e of entries) {
          if (e.settled) continue;
          e.settled = true;
          if (!e.sent) {
            this.#queue.remove((x) => x === e);
            this.#forget(e);
            e.reject?.(
              new GradesUnavailableError('could not keep the write in the outbox log', { cause: err }),
            );
          } else {
            // Already in a publish: it stays queued and may well be stored, so "nothing changed" would be a lie.
            e.reject?.(
              new GradesWriteUnconfirmedError(
                'the write was sent to the stream but could not be kept in the outbox log',
              ),
            );
          }
        }
      },
    );
  }

  /** An entry left the queue: if it was logged, its line is now garbage. */
  #forget(e: Entry): void {
    if (e.logged === 'no') return;
    this.#logged--;
    this.#garbage++;
    e.logged = 'no';
  }

  /** Rewrites the log without stored writes: when none is left, or when enough lines are garbage. */
  #compact(): void {
    const log = this.#o.durable?.log;
    if (!log || this.#garbage === 0 || (this.#logged > 0 && this.#garbage < 1024)) return;
    this.#garbage = 0;
    log.rewrite(this.pendingLogged(), this.#nextN).catch((err: unknown) => {
      this.#o.log.error({ err: describeError(err) }, 'could not rewrite the outbox log');
    });
  }
}
