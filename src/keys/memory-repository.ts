import type { Clock } from '../clock.js';
import { isExpired, type PublicKey } from './public-key.js';
import type { PublicKeyRepository } from './repository.js';

/**
 * Keys held in process memory. Expiry is judged by the injected clock (FT8). `create` never overwrites an entry
 * that is already there, so an older copy cannot replace a newer one (FT9).
 */
export class MemoryPublicKeyRepository implements PublicKeyRepository {
  readonly #clock: Clock;
  readonly #keys = new Map<string, PublicKey>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Number of entries, expired ones included until `deleteExpired` runs. */
  get size(): number {
    return this.#keys.size;
  }

  /** Adds `key` unless its `kid` is already present. */
  create(key: PublicKey): Promise<void> {
    if (!this.#keys.has(key.kid)) this.#keys.set(key.kid, key);
    return Promise.resolve();
  }

  /** The key if present and unexpired. */
  get(kid: string): Promise<PublicKey | undefined> {
    return Promise.resolve(this.getNow(kid));
  }

  /** Synchronous `get`, for callers that already own this repository's thread of control. */
  getNow(kid: string): PublicKey | undefined {
    const key = this.#keys.get(kid);
    return key && !isExpired(key, this.#clock.now()) ? key : undefined;
  }

  /** Every unexpired key, oldest first. */
  list(): Promise<PublicKey[]> {
    const now = this.#clock.now();
    return Promise.resolve([...this.#keys.values()].filter((key) => !isExpired(key, now)));
  }

  /** Drops expired entries. */
  deleteExpired(): Promise<number> {
    const now = this.#clock.now();
    let removed = 0;
    for (const [kid, key] of this.#keys) {
      if (isExpired(key, now)) {
        this.#keys.delete(kid);
        removed++;
      }
    }
    return Promise.resolve(removed);
  }
}
