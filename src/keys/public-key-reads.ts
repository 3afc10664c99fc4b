import type { Clock } from '../clock.js';
import type { KeySetSnapshot, ServedKey } from './key-set-snapshot.js';

/** Longer kids are never looked up nor remembered: ours are 43 characters (a base64url SHA-256 thumbprint). */
const MAX_KID_LENGTH = 128;

/** What {@link PublicKeyReads} needs of the KeyStore: its served snapshot, and a shared reload. */
export interface KeySource {
  /** The keys served now, read synchronously. */
  readonly snapshot: KeySetSnapshot;
  /** Reloads every key from Postgres; concurrent calls share one reload. Resolves with whether Postgres was asked. */
  reload(): Promise<boolean>;
}

/** Collaborators and settings of {@link PublicKeyReads}. */
export interface PublicKeyReadsOptions {
  readonly keys: KeySource;
  readonly clock: Clock;
  /** Least time between two reloads started by reads of unknown kids (default 1000 ms). */
  readonly missReloadGapMs?: number;
  /** How long a kid found nowhere is answered as unknown without looking again (default 5000 ms). */
  readonly negativeTtlMs?: number;
  /** Most kids remembered as unknown (default 10,000); the oldest is forgotten first. */
  readonly negativeMax?: number;
  /** Most distinct kids waiting for a lookup at once (default 10,000); more are answered as unknown at once. */
  readonly maxWaiting?: number;
  /** Told each time a read made the key store query Postgres. */
  readonly onPostgresQuery?: () => void;
}

/**
 * The read side of the public keys, for unauthenticated HTTP callers (issue 14). The JWKS and every known key
 * come from the KeyStore's snapshot in memory: no query, no actor message. A kid the snapshot lacks may have been
 * written to Postgres by a replica this one does not hear from, so it is looked up, but cheaply:
 *
 * - a lookup is one reload of every key through the KeyStore, shared by every read waiting at the time, whatever
 *   kids they ask for (so one kid costs at most one lookup at a time, and concurrent reads share it);
 * - reads start at most one such reload per `missReloadGapMs`: a kid asked for sooner waits for the next one
 *   (at most `maxWaiting` distinct kids wait; beyond that a kid is answered as unknown at once);
 * - a kid still unknown after a lookup is remembered as unknown for `negativeTtlMs` (at most `negativeMax` kids).
 *
 * A flood of random kids therefore costs at most one Postgres query per gap, and puts at most one message in the
 * KeyStore's mailbox at a time: creates, flushes, probes and clean-ups are not queued behind reads. A key that does
 * exist is still found, at worst one gap later.
 */
export class PublicKeyReads {
  readonly #keys: KeySource;
  readonly #clock: Clock;
  readonly #gapMs: number;
  readonly #negativeTtlMs: number;
  readonly #negativeMax: number;
  readonly #maxWaiting: number;
  readonly #onQuery: () => void;
  /** Kids found nowhere, with the time until which they are answered as unknown; oldest first. */
  readonly #negative = new Map<string, number>();
  /** Lookups waiting or running by kid, so that concurrent reads of one kid share one answer. */
  readonly #inflight = new Map<string, Promise<ServedKey | undefined>>();
  /** The next reload started by reads, from when it is due until it has answered. */
  #round: Promise<boolean> | undefined;
  #lastRoundAt = -Infinity;

  constructor(options: PublicKeyReadsOptions) {
    this.#keys = options.keys;
    this.#clock = options.clock;
    this.#gapMs = options.missReloadGapMs ?? 1000;
    this.#negativeTtlMs = options.negativeTtlMs ?? 5000;
    this.#negativeMax = options.negativeMax ?? 10_000;
    this.#maxWaiting = options.maxWaiting ?? 10_000;
    this.#onQuery = options.onPostgresQuery ?? (() => undefined);
  }

  /** The snapshot to serve the JWKS from. */
  jwks(): KeySetSnapshot {
    return this.#keys.snapshot;
  }

  /** Kids currently remembered as unknown. */
  get negativeSize(): number {
    return this.#negative.size;
  }

  /** Distinct kids waiting for a lookup now. */
  get waiting(): number {
    return this.#inflight.size;
  }

  /**
   * The unexpired key with `kid`, or undefined. Synchronous when memory can answer (a known kid, a kid recently
   * found nowhere, too many kids waiting already); a promise when the read waits for a lookup.
   */
  find(kid: string): ServedKey | undefined | Promise<ServedKey | undefined> {
    const hit = this.#keys.snapshot.get(kid);
    if (hit) return hit;
    if (kid.length > MAX_KID_LENGTH) return undefined;
    const now = this.#clock.now();
    const until = this.#negative.get(kid);
    if (until !== undefined) {
      if (now < until) return undefined;
      this.#negative.delete(kid);
    }
    const waiting = this.#inflight.get(kid);
    if (waiting) return waiting;
    if (this.#inflight.size >= this.#maxWaiting) return undefined;
    this.#round ??= this.#nextRound(now);
    const lookup = this.#await(kid, this.#round);
    this.#inflight.set(kid, lookup);
    return lookup;
  }

  /** A reload now if the gap since the last one has run, else one when it has. */
  #nextRound(now: number): Promise<boolean> {
    const wait = this.#lastRoundAt + this.#gapMs - now;
    const answered =
      wait <= 0
        ? this.#reload()
        : new Promise<void>((resolve) => setTimeout(resolve, wait).unref()).then(() => this.#reload());
    const round: Promise<boolean> = answered.finally(() => {
      if (this.#round === round) this.#round = undefined;
    });
    return round;
  }

  #reload(): Promise<boolean> {
    this.#lastRoundAt = this.#clock.now();
    return this.#keys.reload().then(
      (queried) => {
        if (queried) this.#onQuery();
        return queried;
      },
      () => false,
    );
  }

  async #await(kid: string, round: Promise<boolean>): Promise<ServedKey | undefined> {
    try {
      await round;
      const found = this.#keys.snapshot.get(kid);
      if (!found) this.#remember(kid);
      return found;
    } finally {
      this.#inflight.delete(kid);
    }
  }

  #remember(kid: string): void {
    this.#negative.delete(kid);
    while (this.#negative.size >= this.#negativeMax) {
      const oldest = this.#negative.keys().next();
      if (oldest.done) break;
      this.#negative.delete(oldest.value);
    }
    this.#negative.set(kid, this.#clock.now() + this.#negativeTtlMs);
  }
}
