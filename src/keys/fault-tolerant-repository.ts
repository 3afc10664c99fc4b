import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { describeError, isStorageDataError } from '../errors.js';
import { withTimeout } from '../timeout.js';
import type { KeyGate } from './key-admission.js';
import { MemoryPublicKeyRepository } from './memory-repository.js';
import { PendingWrites, type FlushResult } from './pending-writes.js';
import { isExpired, type PublicKey } from './public-key.js';
import type { KeyStoreBackend } from './key-store.js';
import type { Pingable, PublicKeyRepository } from './repository.js';

/** Observers of the repository's state changes; the KeyStore actor feeds them to metrics. */
export interface FaultTolerantHooks {
  /** Postgres became available (true) or unavailable (false). */
  onAvailabilityChange?(available: boolean): void;
  /** A Postgres call failed or timed out. */
  onPostgresFailure?(operation: string): void;
  /** Postgres refused a key for its data; it was set aside (kept in memory, never retried). */
  onKeyRejected?(kid: string): void;
}

/** Collaborators and settings of {@link FaultTolerantPublicKeyRepository}. */
export interface FaultTolerantOptions {
  /** The durable store; any {@link PublicKeyRepository} that can be pinged (Postgres in production). */
  readonly postgres: PublicKeyRepository & Pingable;
  /** The in-memory store, sharing `clock`. */
  readonly memory: PublicKeyRepository;
  /** The retry mailbox of keys not yet in `postgres`. */
  readonly pending: PendingWrites;
  readonly clock: Clock;
  /** Deadline of each Postgres call made on a caller's behalf (default 500 ms, FT2). */
  readonly timeoutMs: number;
  /** Deadline of the load-all at start-up, which may have to open a connection first. */
  readonly loadTimeoutMs?: number;
  readonly log: Logger;
  readonly hooks?: FaultTolerantHooks;
  /**
   * Checks every key read from Postgres before it is stored in memory or served (SPEC X7): Postgres is not trusted
   * to hold only keys a replica made. Absent, rows are taken as they are (tests of other behaviours only).
   */
  readonly gate?: KeyGate;
}

/**
 * Public keys in memory and Postgres, working on while Postgres is down (FT1–FT8).
 *
 * - `create` writes memory first, then Postgres under the timeout; a failure queues the key in pending writes
 *   and is not the caller's error (FT2).
 * - `get` and `list` ask Postgres first, then memory, backfilling memory from Postgres (FT4).
 * - `deleteExpired` tries Postgres, memory and pending writes, each whatever the others did (FT5).
 * - After a failure Postgres is marked unavailable and not called on a caller's behalf until `probe` or
 *   `flushPending` finds it back; recovery flushes pending writes, then reloads every key (FT6).
 * - A key Postgres refuses for its data (SQLSTATE 22/23) is set aside: logged, counted, dropped from pending
 *   writes, kept in memory. That is the key's fault, not Postgres's, so availability does not change.
 * - Keys read from Postgres pass the gate before they are stored in memory or served; a key already in memory
 *   is the one served, so only keys new to this replica are checked.
 *
 * Not safe for concurrent use on its own: the KeyStore actor calls it one message at a time (FT9).
 */
export class FaultTolerantPublicKeyRepository implements KeyStoreBackend {
  /** Always true: Postgres stands behind memory. */
  readonly durable = true;
  readonly #postgres: PublicKeyRepository & Pingable;
  readonly #memory: PublicKeyRepository;
  readonly #pending: PendingWrites;
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  readonly #loadTimeoutMs: number;
  readonly #log: Logger;
  readonly #hooks: FaultTolerantHooks;
  readonly #gate: KeyGate | undefined;
  #available = true;
  #writesStuck = false;
  /** Keys Postgres refused for their data, until they expire: `kid` → `expiresAt`. */
  readonly #setAside = new Map<string, number>();

  constructor(options: FaultTolerantOptions) {
    this.#postgres = options.postgres;
    this.#memory = options.memory;
    this.#pending = options.pending;
    this.#clock = options.clock;
    this.#timeoutMs = options.timeoutMs;
    this.#loadTimeoutMs = options.loadTimeoutMs ?? options.timeoutMs;
    this.#log = options.log;
    this.#hooks = options.hooks ?? {};
    this.#gate = options.gate;
  }

  /** Whether Postgres is currently called on callers' behalf. */
  get postgresAvailable(): boolean {
    return this.#available;
  }

  /**
   * True while Postgres answers pings yet pending keys cannot be written for a reason other than their data (a
   * missing privilege, a broken schema): a fault that waiting will not heal, unlike an outage.
   */
  get writesStuck(): boolean {
    return this.#writesStuck;
  }

  /** Keys waiting to be written to Postgres. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /** True while `kid` waits in pending writes. */
  isPending(kid: string): boolean {
    return this.#pending.has(kid);
  }

  /** True when Postgres refused `kid` for its data: it lives in memory only, until it expires. */
  isSetAside(kid: string): boolean {
    return this.#setAside.has(kid);
  }

  /** Start-up (FT7): loads every unexpired key from Postgres into memory; false (and unavailable) if it can't. */
  async loadAll(): Promise<boolean> {
    try {
      const keys = await withTimeout(this.#postgres.list(), this.#loadTimeoutMs, 'postgres list');
      await this.#takeFromPostgres(keys);
      this.#setAvailable(true);
      this.#log.info({ keys: keys.length }, 'public keys loaded from postgres');
      return true;
    } catch (err) {
      this.#fail('loadAll', err);
      return false;
    }
  }

  /** Memory first, then Postgres under the timeout; on failure the key waits in pending writes (FT2). */
  async create(key: PublicKey): Promise<void> {
    await this.#memory.create(key);
    if (!this.#available) {
      this.#pending.add(key);
      return;
    }
    try {
      await this.#pg('create', this.#postgres.create(key));
      this.#pending.delete(key.kid);
    } catch (err) {
      if (isStorageDataError(err)) this.#rejected(key, err);
      else this.#pending.add(key);
    }
  }

  /** Postgres first (backfilling memory), then memory, which also holds keys still pending (FT4). */
  async get(kid: string): Promise<PublicKey | undefined> {
    if (this.#available) {
      try {
        const stored = await this.#pg('get', this.#postgres.get(kid));
        if (stored && !isExpired(stored, this.#clock.now())) await this.#takeFromPostgres([stored]);
      } catch {
        // Marked unavailable by #pg (unless Postgres refused the kid itself); memory answers.
      }
    }
    return this.#memory.get(kid);
  }

  /** Every unexpired key: Postgres's (backfilled into memory) and memory's own. */
  async list(): Promise<PublicKey[]> {
    if (this.#available) {
      try {
        const stored = await this.#pg('list', this.#postgres.list());
        await this.#takeFromPostgres(stored);
      } catch {
        // Marked unavailable by #pg; memory answers.
      }
    }
    return this.#memory.list();
  }

  /** Every unexpired key in memory, Postgres untouched: what the replica serves between reloads. */
  cached(): Promise<PublicKey[]> {
    return this.#memory.list();
  }

  /**
   * Postgres first under the timeout, then memory, then pending writes; a failure in one is logged and the others
   * still run, and never reaches the caller (FT5). Resolves with the number of keys removed from memory.
   */
  async deleteExpired(): Promise<number> {
    try {
      const removed = await this.#pg('deleteExpired', this.#postgres.deleteExpired());
      if (removed > 0) this.#log.info({ removed }, 'expired keys deleted from postgres');
    } catch {
      // Logged by #pg.
    }
    let removed = 0;
    try {
      removed = await this.#memory.deleteExpired();
    } catch (err) {
      this.#log.error({ err: describeError(err) }, 'memory deleteExpired failed');
    }
    const now = this.#clock.now();
    for (const [kid, expiresAt] of this.#setAside) if (expiresAt <= now) this.#setAside.delete(kid);
    const dropped = this.#pending.dropExpired();
    if (dropped.length > 0) this.#log.info({ dropped }, 'expired pending keys dropped');
    return removed;
  }

  /**
   * One flush round of pending writes (FT3). It is tried even while Postgres is marked unavailable, so it doubles
   * as the probe when keys are waiting; a round that empties the queue after an outage completes the recovery.
   */
  async flushPending(): Promise<FlushResult> {
    if (this.#pending.size === 0) return { written: [], dropped: [], rejected: [], remaining: 0 };
    const wasAvailable = this.#available;
    const result = await this.#flush();
    if (result.remaining === 0 && !wasAvailable) await this.#recover();
    return result;
  }

  /**
   * Background availability check (FT6). A no-op while Postgres is available; otherwise a ping under the timeout,
   * and when it answers, a flush of pending writes and, once none is left, the recovery. A ping that answers
   * followed by a flush that fails marks the writes stuck (see {@link writesStuck}).
   */
  async probe(): Promise<boolean> {
    if (this.#available) return true;
    try {
      await this.#pg('ping', this.#postgres.ping());
    } catch {
      this.#writesStuck = false;
      return false;
    }
    if (this.#pending.size > 0) {
      const result = await this.#flush();
      if (result.remaining > 0) {
        if (!this.#writesStuck) {
          this.#log.error(
            { remaining: result.remaining, err: describeError(result.error) },
            'postgres answers but refuses pending key writes',
          );
        }
        this.#writesStuck = true;
        return false;
      }
    }
    await this.#recover();
    return this.#available;
  }

  /** One round of pending writes; reports what it did, and sets aside keys Postgres refused for their data. */
  async #flush(): Promise<FlushResult> {
    const result = await this.#pending.flush((key) => this.#pg('flush', this.#postgres.create(key)));
    for (const { key, error } of result.rejected) this.#rejected(key, error);
    if (result.written.length > 0 || result.dropped.length > 0) {
      this.#log.info(
        { written: result.written, dropped: result.dropped, remaining: result.remaining },
        'pending keys flushed',
      );
    }
    if (result.remaining === 0) this.#writesStuck = false;
    return result;
  }

  /** Stores keys read from Postgres in memory: those memory already holds as they are, new ones if the gate admits them. */
  async #takeFromPostgres(keys: readonly PublicKey[]): Promise<void> {
    for (const key of keys) {
      if (await this.#memory.get(key.kid)) continue;
      if (this.#gate && !(await this.#gate.admit(key, 'postgres'))) continue;
      await this.#memory.create(key);
    }
  }

  #rejected(key: PublicKey, err: unknown): void {
    this.#setAside.set(key.kid, key.expiresAt);
    this.#hooks.onKeyRejected?.(key.kid);
    this.#log.error(
      { kid: key.kid, err: describeError(err) },
      'postgres refused a public key for its data; set aside (it stays in memory and serves while valid)',
    );
  }

  /** After an outage: pending writes are already flushed; reload every key, then serve from Postgres again. */
  async #recover(): Promise<void> {
    try {
      const keys = await withTimeout(this.#postgres.list(), this.#timeoutMs, 'postgres list');
      await this.#takeFromPostgres(keys);
      this.#log.info({ keys: keys.length }, 'postgres is back; keys reloaded');
      this.#setAvailable(true);
    } catch (err) {
      this.#fail('reload', err);
    }
  }

  /**
   * Runs a Postgres call under the timeout; a failure marks Postgres unavailable and is rethrown. A refusal of
   * the record's data is rethrown only: Postgres answered.
   */
  async #pg<T>(operation: string, call: Promise<T>): Promise<T> {
    try {
      return await withTimeout(call, this.#timeoutMs, `postgres ${operation}`);
    } catch (err) {
      if (!isStorageDataError(err)) this.#fail(operation, err);
      throw err;
    }
  }

  #fail(operation: string, err: unknown): void {
    this.#hooks.onPostgresFailure?.(operation);
    this.#log.warn({ operation, err: describeError(err) }, 'postgres call failed');
    this.#setAvailable(false);
  }

  #setAvailable(available: boolean): void {
    if (this.#available === available) return;
    this.#available = available;
    if (!available) this.#log.warn('postgres marked unavailable; serving keys from memory');
    this.#hooks.onAvailabilityChange?.(available);
  }
}

/** Builds the production repository: memory and pending writes share the caller's clock (FT8). */
export function createFaultTolerantRepository(
  options: Omit<FaultTolerantOptions, 'memory' | 'pending'>,
): FaultTolerantPublicKeyRepository {
  return new FaultTolerantPublicKeyRepository({
    ...options,
    memory: new MemoryPublicKeyRepository(options.clock),
    pending: new PendingWrites(options.clock),
  });
}
