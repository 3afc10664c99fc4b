/** What one {@link OrderedQueue.drain} round did. */
export interface DrainResult {
  /** Items delivered and removed, oldest first. */
  readonly delivered: number;
  /** Why the round stopped early, if it did; the items not delivered stay, in order. */
  readonly error?: unknown;
}

/**
 * The one ordered-retry policy of this service: items wait in the order they were added, are delivered oldest
 * first (in batches of up to `maxBatch`), leave the queue only once delivered, and a round stops at the first
 * failure, so a later item never overtakes an earlier one and an outage costs one failure per round, not one per
 * item. No size limit and no timer of its own: the owner decides when a round runs. Both ordered queues of the
 * service run on it: the grades outbox (`src/grades/outbox.ts`, after each write and on a retry timer) and the key
 * store's pending writes (`src/keys/pending-writes.ts`, one key at a time, at the flush interval).
 */
export class OrderedQueue<T> {
  #items: T[] = [];

  /** Items waiting. */
  get size(): number {
    return this.#items.length;
  }

  /** The oldest item, if any. */
  get head(): T | undefined {
    return this.#items[0];
  }

  /** The items, oldest first (a view: do not keep it across a round). */
  get items(): readonly T[] {
    return this.#items;
  }

  /** Adds an item at the end. */
  push(item: T): void {
    this.#items.push(item);
  }

  /** Removes the items `drop` picks, keeping the order of the rest; returns the removed ones. */
  remove(drop: (item: T) => boolean): T[] {
    const removed: T[] = [];
    const kept: T[] = [];
    for (const item of this.#items) (drop(item) ? removed : kept).push(item);
    if (removed.length > 0) this.#items = kept;
    return removed;
  }

  /**
   * One round: hands the oldest items (up to `maxBatch`) to `deliver`, which resolves with how many of them,
   * from the first, were delivered; those leave the queue and the round goes on, until the queue is empty,
   * `deliver` delivers none, it throws (the round stops: the error is returned), or `more()` says stop.
   */
  async drain(
    deliver: (batch: readonly T[]) => Promise<number>,
    maxBatch: number,
    more: () => boolean = () => true,
  ): Promise<DrainResult> {
    let delivered = 0;
    try {
      while (this.#items.length > 0 && more()) {
        const batch = this.#items.slice(0, maxBatch);
        const done = Math.min(await deliver(batch), batch.length);
        if (done <= 0) break;
        // Only the delivered ones. They are still the head unless items were removed meanwhile; then they are
        // matched by identity.
        if (batch.slice(0, done).every((item, i) => this.#items[i] === item)) this.#items.splice(0, done);
        else {
          const gone = new Set(batch.slice(0, done));
          this.#items = this.#items.filter((item) => !gone.has(item));
        }
        delivered += done;
      }
    } catch (error) {
      return { delivered, error };
    }
    return { delivered };
  }
}
