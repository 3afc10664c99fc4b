/**
 * A FIFO queue whose items are handed, one at a time, to an injected async handler. The next item is not
 * started before the previous one has settled. A handler that throws is reported through `onError` and the
 * loop goes on: one bad message never stops an actor.
 */
export class Mailbox<T> {
  readonly #handler: (item: T) => Promise<void>;
  readonly #onError: (err: unknown, item: T) => void;
  readonly #queue: T[] = [];
  #running = false;
  #closed = false;
  #drained: Promise<void> | undefined;
  #resolveDrained: (() => void) | undefined;

  constructor(handler: (item: T) => Promise<void>, onError: (err: unknown, item: T) => void) {
    this.#handler = handler;
    this.#onError = onError;
  }

  /** Items waiting, not counting the one being handled. */
  get size(): number {
    return this.#queue.length;
  }

  /** True once `close()` was called: no new item is accepted. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Queues an item; returns false (and drops it) if the mailbox is closed. */
  post(item: T): boolean {
    if (this.#closed) return false;
    this.#queue.push(item);
    if (!this.#running) void this.#run();
    return true;
  }

  /** Stops accepting items and resolves once every item already queued has been handled. Idempotent. */
  close(): Promise<void> {
    this.#closed = true;
    if (!this.#running && this.#queue.length === 0) return Promise.resolve();
    this.#drained ??= new Promise<void>((resolve) => (this.#resolveDrained = resolve));
    return this.#drained;
  }

  async #run(): Promise<void> {
    this.#running = true;
    while (this.#queue.length > 0) {
      const item = this.#queue.shift() as T;
      try {
        await this.#handler(item);
      } catch (err) {
        try {
          this.#onError(err, item);
        } catch {
          // An error reporter that throws must not stop the loop either.
        }
      }
    }
    this.#running = false;
    if (this.#closed) this.#resolveDrained?.();
  }
}
