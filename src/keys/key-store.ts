import type { Logger } from 'pino';
import { Actor } from '../actor/actor.js';
import { ActorStoppedError } from '../errors.js';
import type { FlushResult } from './pending-writes.js';
import type { PublicKey } from './public-key.js';
import type { PublicKeyRepository } from './repository.js';

/** What the KeyStore needs of its repository beyond the FT1 contract: the durable-store maintenance. */
export interface KeyStoreBackend extends PublicKeyRepository {
  /** True when there is a durable store behind memory. */
  readonly durable: boolean;
  readonly postgresAvailable: boolean;
  readonly pendingCount: number;
  /** True while the durable store answers but refuses pending writes for a reason other than their data. */
  readonly writesStuck: boolean;
  /** True while `kid` waits to be written to the durable store. */
  isPending(kid: string): boolean;
  /** True when the durable store refused `kid` for its data: it lives in memory only. */
  isSetAside(kid: string): boolean;
  loadAll(): Promise<boolean>;
  flushPending(): Promise<FlushResult>;
  probe(): Promise<boolean>;
}

/** The KeyStore's messages. */
export type KeyStoreMessage =
  | { readonly type: 'create'; readonly key: PublicKey }
  | { readonly type: 'get'; readonly kid: string }
  | { readonly type: 'list' }
  | { readonly type: 'deleteExpired' }
  | { readonly type: 'flush' }
  | { readonly type: 'probe' };

/** The reply to each message type. */
export interface KeyStoreReplies {
  /** Whether the key is now in the durable store (false while pending or set aside, and without one). */
  create: boolean;
  get: PublicKey | undefined;
  list: PublicKey[];
  deleteExpired: number;
  flush: FlushResult;
  probe: boolean;
}

/** Settings of the {@link KeyStore}. */
export interface KeyStoreOptions {
  readonly backend: KeyStoreBackend;
  readonly flushIntervalMs: number;
  readonly probeIntervalMs: number;
  readonly cleanupIntervalMs: number;
  readonly log: Logger;
}

/**
 * The actor that owns the public keys (FT9). Every operation, the caller's and the timers' alike, is a message
 * handled one at a time, so create, flush, get and deleteExpired never interleave: no key is lost between a
 * flush and a create, and availability changes cannot race.
 *
 * Timers (fixed intervals): flush pending writes, probe Postgres, delete expired keys. On stop, messages already
 * queued finish, then one last flush round runs.
 */
export class KeyStore extends Actor<KeyStoreMessage, KeyStoreReplies> {
  readonly #backend: KeyStoreBackend;
  readonly #options: KeyStoreOptions;
  readonly #timers: NodeJS.Timeout[] = [];
  /** Timer messages waiting or running, by type. */
  readonly #queued = new Set<KeyStoreMessage['type']>();

  constructor(options: KeyStoreOptions) {
    super('key-store', options.log);
    this.#backend = options.backend;
    this.#options = options;
  }

  /** Read-only view of the store's health, for readiness and metrics. */
  get state(): {
    durable: boolean;
    postgresAvailable: boolean;
    pending: number;
    writesStuck: boolean;
    backlog: number;
  } {
    return {
      durable: this.#backend.durable,
      postgresAvailable: this.#backend.postgresAvailable,
      pending: this.#backend.pendingCount,
      writesStuck: this.#backend.writesStuck,
      backlog: this.backlog,
    };
  }

  /** True when there is a durable store (Postgres) behind memory. */
  get durable(): boolean {
    return this.#backend.durable;
  }

  /**
   * Stores a public key: memory at once, Postgres now or later. Resolves true when the key is in Postgres now,
   * false when it waits in pending writes (or there is no Postgres).
   */
  create(key: PublicKey): Promise<boolean> {
    return this.ask({ type: 'create', key });
  }

  /** The unexpired key with `kid`, or undefined. */
  get(kid: string): Promise<PublicKey | undefined> {
    return this.ask({ type: 'get', kid });
  }

  /** Every unexpired key known to this replica. */
  list(): Promise<PublicKey[]> {
    return this.ask({ type: 'list' });
  }

  protected override async onStart(): Promise<void> {
    if (this.#backend.durable) {
      const loaded = await this.#backend.loadAll();
      if (!loaded) this.log.warn('starting with postgres unreachable; keys live in memory until it returns');
      this.#every(this.#options.flushIntervalMs, { type: 'flush' });
      this.#every(this.#options.probeIntervalMs, { type: 'probe' });
    }
    this.#every(this.#options.cleanupIntervalMs, { type: 'deleteExpired' });
  }

  protected override async onStop(): Promise<void> {
    for (const timer of this.#timers) clearInterval(timer);
    if (this.#backend.pendingCount === 0) return;
    const result = await this.#backend.flushPending();
    if (result.remaining > 0) {
      this.log.warn({ remaining: result.remaining }, 'stopping with public keys not yet written to postgres');
    }
  }

  protected override async receive(msg: KeyStoreMessage): Promise<KeyStoreReplies[KeyStoreMessage['type']]> {
    switch (msg.type) {
      case 'create':
        await this.#backend.create(msg.key);
        return (
          this.#backend.durable &&
          !this.#backend.isPending(msg.key.kid) &&
          !this.#backend.isSetAside(msg.key.kid)
        );
      case 'get':
        return this.#backend.get(msg.kid);
      case 'list':
        return this.#backend.list();
      case 'deleteExpired':
        return this.#backend.deleteExpired();
      case 'flush':
        return this.#backend.flushPending();
      case 'probe':
        return this.#backend.probe();
      default: {
        const unknown: never = msg;
        throw new Error(`unknown message ${JSON.stringify(unknown)}`);
      }
    }
  }

  #every(ms: number, msg: KeyStoreMessage): void {
    const timer = setInterval(() => {
      // A timer's message still waiting (behind a stalled Postgres, each costing a timeout) is not queued again:
      // ticks must not pile up in the mailbox ahead of callers.
      if (this.#queued.has(msg.type)) return;
      this.#queued.add(msg.type);
      this.ask(msg)
        .catch((err: unknown) => {
          if (!(err instanceof ActorStoppedError))
            this.log.error({ err, message: msg.type }, 'message failed');
        })
        .finally(() => this.#queued.delete(msg.type));
    }, ms);
    timer.unref();
    this.#timers.push(timer);
  }
}

/** A backend with no durable store: memory only, for a replica run without `DATABASE_URL`. */
export class MemoryOnlyBackend implements KeyStoreBackend {
  readonly durable = false;
  readonly postgresAvailable = false;
  readonly pendingCount = 0;
  readonly writesStuck = false;
  readonly #memory: PublicKeyRepository;

  constructor(memory: PublicKeyRepository) {
    this.#memory = memory;
  }

  /** Nothing is ever pending. */
  isPending(): boolean {
    return false;
  }
  /** Nothing is ever refused. */
  isSetAside(): boolean {
    return false;
  }
  /** Nothing to load. */
  loadAll(): Promise<boolean> {
    return Promise.resolve(true);
  }
  /** Nothing is ever pending. */
  flushPending(): Promise<FlushResult> {
    return Promise.resolve({ written: [], dropped: [], rejected: [], remaining: 0 });
  }
  /** There is nothing to probe. */
  probe(): Promise<boolean> {
    return Promise.resolve(true);
  }
  /** Stores in memory. */
  create(key: PublicKey): Promise<void> {
    return this.#memory.create(key);
  }
  /** Reads memory. */
  get(kid: string): Promise<PublicKey | undefined> {
    return this.#memory.get(kid);
  }
  /** Lists memory. */
  list(): Promise<PublicKey[]> {
    return this.#memory.list();
  }
  /** Cleans memory. */
  deleteExpired(): Promise<number> {
    return this.#memory.deleteExpired();
  }
}
