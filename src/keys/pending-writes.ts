import type { Clock } from '../clock.js';
import { isStorageDataError } from '../errors.js';
import { isExpired, type PublicKey } from './public-key.js';

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
 * The retry mailbox of keys that are safe in memory but not yet in Postgres (FT2, FT3). Keys wait in arrival
 * order with no size limit. The flush policy lives here: expired keys are dropped, the rest are written oldest
 * first, and the round stops at the first failure of the store so that an outage costs one timeout per round,
 * not one per key. A key is removed only after its write succeeded, or when the store refused it for its data
 * (a {@link StorageDataError}: retrying cannot help, and keeping it at the head would block every key behind it).
 */
export class PendingWrites {
  readonly #clock: Clock;
  readonly #keys = new Map<string, PublicKey>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Keys waiting. */
  get size(): number {
    return this.#keys.size;
  }

  /** Queues `key` for writing; a `kid` already waiting is kept as it is. */
  add(key: PublicKey): void {
    if (!this.#keys.has(key.kid)) this.#keys.set(key.kid, key);
  }

  /** True if `kid` is waiting. */
  has(kid: string): boolean {
    return this.#keys.has(kid);
  }

  /** Removes `kid` (its key reached Postgres some other way). */
  delete(kid: string): void {
    this.#keys.delete(kid);
  }

  /** The waiting `kid`s, oldest first. */
  kids(): string[] {
    return [...this.#keys.keys()];
  }

  /** Removes expired keys; returns their `kid`s. */
  dropExpired(): string[] {
    const now = this.#clock.now();
    const dropped: string[] = [];
    for (const [kid, key] of this.#keys) {
      if (isExpired(key, now)) {
        this.#keys.delete(kid);
        dropped.push(kid);
      }
    }
    return dropped;
  }

  /**
   * One flush round: drop expired keys, then `write` the rest in order until the store fails; a key the store
   * refuses for its data is set aside and the round goes on.
   */
  async flush(write: (key: PublicKey) => Promise<void>): Promise<FlushResult> {
    const dropped = this.dropExpired();
    const written: string[] = [];
    const rejected: { kid: string; key: PublicKey; error: unknown }[] = [];
    for (const [kid, key] of [...this.#keys]) {
      try {
        await write(key);
      } catch (error) {
        if (!isStorageDataError(error))
          return { written, dropped, rejected, remaining: this.#keys.size, error };
        this.#keys.delete(kid);
        rejected.push({ kid, key, error });
        continue;
      }
      this.#keys.delete(kid);
      written.push(kid);
    }
    return { written, dropped, rejected, remaining: this.#keys.size };
  }
}
