import sinon from 'sinon';
import type { Clock } from '../../src/clock.js';
import { StorageDataError, StorageError } from '../../src/errors.js';
import type { PublicKey } from '../../src/keys/public-key.js';
import type { Pingable, PublicKeyRepository } from '../../src/keys/repository.js';

/** How the fake answers: normally, by failing at once, or never (a stalled connection). */
export type FakeMode = 'up' | 'down' | 'stall';

/**
 * A stand-in for the Postgres repository: a Map behind sinon spies, switchable between up, down and stalled, so a
 * test can assert both outcomes (what is stored) and interactions (what was called).
 */
export class FakePostgres implements PublicKeyRepository, Pingable {
  mode: FakeMode = 'up';
  /** When false, `get`/`list` return expired rows too, to prove the caller filters them. */
  filterExpired = true;
  readonly rows = new Map<string, PublicKey>();
  /** Kids Postgres refuses for their data (as a NUL byte or a date out of range would be), while up. */
  readonly refusedKids = new Set<string>();
  /** While set, writes fail with it though pings answer (a missing privilege, a broken table). */
  failWrites: Error | undefined;
  readonly create = sinon.spy((key: PublicKey) =>
    this.#answer(() => {
      if (this.failWrites) throw this.failWrites;
      this.#refuse(key.kid);
      this.#insert(key);
    }),
  );
  readonly get = sinon.spy((kid: string) =>
    this.#answer(() => {
      this.#refuse(kid);
      return this.#visible(this.rows.get(kid));
    }),
  );
  /** Mutable so a test can make only the reload fail. */
  list = sinon.spy(() =>
    this.#answer(() => [...this.rows.values()].filter((k) => this.#visible(k) !== undefined)),
  );
  readonly deleteExpired = sinon.spy(() =>
    this.#answer(() => {
      let removed = 0;
      for (const [kid, key] of this.rows) {
        if (key.expiresAt <= this.clock.now()) {
          this.rows.delete(kid);
          removed++;
        }
      }
      return removed;
    }),
  );
  readonly ping = sinon.spy(() => this.#answer(() => undefined));

  constructor(private readonly clock: Clock) {}

  /** Total calls of every method, for "Postgres was not touched" assertions. */
  get totalCalls(): number {
    return [this.create, this.get, this.list, this.deleteExpired, this.ping].reduce(
      (n, s) => n + s.callCount,
      0,
    );
  }

  #refuse(kid: string): void {
    if (this.refusedKids.has(kid))
      throw new StorageDataError('postgres refused the record (SQLSTATE 22021)', '22021');
  }

  #insert(key: PublicKey): void {
    if (!this.rows.has(key.kid)) this.rows.set(key.kid, key);
  }

  #visible(key: PublicKey | undefined): PublicKey | undefined {
    if (!key) return undefined;
    return this.filterExpired && key.expiresAt <= this.clock.now() ? undefined : key;
  }

  #answer<T>(work: () => T): Promise<T> {
    switch (this.mode) {
      case 'up':
        return Promise.resolve().then(work);
      case 'down':
        return Promise.reject(new StorageError('connection refused'));
      case 'stall':
        return new Promise<T>(() => undefined);
    }
  }
}
