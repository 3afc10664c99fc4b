import type { Clock } from '../clock.js';
import { isStorageDataError } from '../errors.js';
import { isExpired, type PublicKey } from './public-key.js';
import { OrderedQueue } from '../actor/ordered-queue.js';

/** What one flush round did. */
export interface FlushResult {
  /** Keys written and removed from the queue. */
  readonly written: readonly string[];
  /** Keys that expired while waiting; removed, never written (FT3). */
  readonly dropped: readonly string[];
  /** Keys Postgres refused for their data; set aside (removed), never retried. */
  readonly rejected: readonly { readonly kid: string; readonly key: PublicKey; readonly error: unknown }[];
  /** Keys still waiting after this round. */
  readonly remaining: number;
  /** Why the round stopped early, if it did. */
  readonly error?: unknown;
}

/**
 * The retry mailbox of keys that are safe in memory but not yet in Postgres (FT2, FT3), on the service's one
 * ordered-retry policy ({@link OrderedQueue}, which the grades outbox runs on too). Keys wait in arrival order
 * with no size limit. The flush round: expired keys are dropped, the rest are written oldest
 * first, and the round stops at the first failure of the store so that an outage costs one timeout per round,
 * not one per key. A key is removed only after its write succeeded, or when the store refused it for its data
 * (a {@link StorageDataError}: retrying cannot help, and keeping it at the head would block every key behind it).
 */
export class PendingWrites {
  readonly #clock: Clock;
  readonly #queue = new OrderedQueue<PublicKey>();
  /** The `kid`s waiting, so that a key already queued is never queued twice. */
  readonly #kids = new Set<string>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Keys waiting. */
  get size(): number {
    return this.#queue.size;
  }

  /** Queues `key` for writing; a `kid` already waiting is kept as it is. */
  add(key: PublicKey): void {
    if (this.#kids.has(key.kid)) return;
    this.#kids.add(key.kid);
    this.#queue.push(key);
  }

  /** True if `kid` is waiting. */
  has(kid: string): boolean {
    return this.#kids.has(kid);
  }

  /** Removes `kid` (its key reached Postgres some other way). */
  delete(kid: string): void {
    if (this.#kids.delete(kid)) this.#queue.remove((key) => key.kid === kid);
  }

  /** The waiting `kid`s, oldest first. */
  kids(): string[] {
    return this.#queue.items.map((key) => key.kid);
  }

  /** Removes expired keys; returns their `kid`s. */
  dropExpired(): string[] {
    const now = this.#clock.now();
    return this.#forget(this.#queue.remove((key) => isExpired(key, now)));
  }

  /**
   * One flush round on the {@link OrderedQueue} policy: drop expired keys, then `write` the rest one at a time,
   * oldest first, until the store fails; a key the store refuses for its data is set aside (it leaves the queue
   * as if written) and the round goes on.
   */
  async flush(write: (key: PublicKey) => Promise<void>): Promise<FlushResult> {
    const dropped = this.dropExpired();
    const written: string[] = [];
    const rejected: { kid: string; key: PublicKey; error: unknown }[] = [];
    const round = await this.#queue.drain(async ([key]) => {
      const k = key as PublicKey;
      try {
        await write(k);
        written.push(k.kid);
      } catch (error) {
        if (!isStorageDataError(error)) throw error;
        rejected.push({ kid: k.kid, key: k, error });
      }
      this.#kids.delete(k.kid);
      return 1;
    }, 1);
    const remaining = this.#queue.size;
    return round.error === undefined
      ? { written, dropped, rejected, remaining }
      : { written, dropped, rejected, remaining, error: round.error };
  }

  #forget(keys: readonly PublicKey[]): string[] {
    for (const key of keys) this.#kids.delete(key.kid);
    return keys.map((key) => key.kid);
  }
}
