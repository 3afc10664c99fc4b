import type { Logger } from 'pino';
import { Actor } from '../actor/actor.js';
import { systemClock, type Clock } from '../clock.js';
import { KeySetSnapshot } from './key-set-snapshot.js';
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
  /** Every unexpired key held in memory, touching no durable store: what this replica can serve right now. */
  cached(): Promise<PublicKey[]>;
}

/** The KeyStore's messages. */
export type KeyStoreMessage =
  | { readonly type: 'create'; readonly key: PublicKey }
  | { readonly type: 'get'; readonly kid: string }
  | { readonly type: 'list' }
  | { readonly type: 'deleteExpired' }
  | { readonly type: 'flush' }
  | { readonly type: 'probe' }
  | { readonly type: 'reload' };

/** The reply to each message type. */
export interface KeyStoreReplies {
  /** Whether the key is now in the durable store (false while pending or set aside, and without one). */
  create: boolean;
  get: PublicKey | undefined;
  list: PublicKey[];
  deleteExpired: number;
  flush: FlushResult;
  probe: boolean;
  /** Whether Postgres was asked (it is not while marked unavailable, nor without one). */
  reload: boolean;
}

/** Settings of the {@link KeyStore}. */
export interface KeyStoreOptions {
  readonly backend: KeyStoreBackend;
  readonly flushIntervalMs: number;
  readonly probeIntervalMs: number;
  readonly cleanupIntervalMs: number;
  /**
   * How often every key is reloaded from Postgres while it is available, so that keys written there by a replica
   * this one does not hear from over NATS are served within this bound (default 30 s).
   */
  readonly reloadIntervalMs?: number;
  /** Judges expiry of the served snapshot; the same clock as the backend's (default: the wall clock). */
  readonly clock?: Clock;
  /** Told how long each message took from being sent to being answered (queueing included), in seconds. */
  readonly onOperation?: (type: KeyStoreMessage['type'], seconds: number) => void;
  readonly log: Logger;
}

/** Default of {@link KeyStoreOptions.reloadIntervalMs}. */
export const DEFAULT_RELOAD_INTERVAL_MS = 30_000;

/**
 * The actor that owns the public keys (FT9). Every operation, the caller's and the timers' alike, is a message
 * handled one at a time, so create, flush, get and deleteExpired never interleave: no key is lost between a
 * flush and a create, and availability changes cannot race.
 *
 * Timers (fixed intervals): flush pending writes, probe Postgres, reload every key from Postgres, delete expired
 * keys. On stop, messages already queued finish, then one last flush round runs.
 *
 * After each message the actor compares the keys in memory with the {@link KeySetSnapshot} it serves and
 * publishes a new snapshot when they differ. HTTP reads take that snapshot synchronously (`snapshot`) and never
 * enter the mailbox, so a flood of reads cannot queue a create, a flush, a probe or a clean-up behind it.
 */
export class KeyStore extends Actor<KeyStoreMessage, KeyStoreReplies> {
  readonly #backend: KeyStoreBackend;
  readonly #options: KeyStoreOptions;
  readonly #clock: Clock;
  readonly #timers: NodeJS.Timeout[] = [];
  #snapshot: KeySetSnapshot;
  #versions = 0;
  /** The reload waiting or running, which a further reload request joins instead of queueing another. */
  #reloading: Promise<boolean> | undefined;
  /** Timer messages waiting or running, by type. */
  readonly #queued = new Set<KeyStoreMessage['type']>();

  constructor(options: KeyStoreOptions) {
    super('key-store', options.log);
    this.#backend = options.backend;
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#snapshot = KeySetSnapshot.build([], this.#clock.now(), this.#versions);
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
   * The unexpired keys this replica serves, as of the last message handled. Synchronous and free of I/O: the
   * read path of the public-key endpoints. A snapshot whose earliest key has expired since is replaced here by
   * one without it, so an expired key is never served even before the clean-up timer runs.
   */
  get snapshot(): KeySetSnapshot {
    const now = this.#clock.now();
    if (now >= this.#snapshot.expiresAt) this.#publish(this.#snapshot.keys, now);
    return this.#snapshot;
  }

  /**
   * Stores a public key: memory at once, Postgres now or later. Resolves true when the key is in Postgres now,
   * false when it waits in pending writes (or there is no Postgres). The key is in `snapshot` when it resolves.
   */
  create(key: PublicKey): Promise<boolean> {
    return this.#timed({ type: 'create', key });
  }

  /** The unexpired key with `kid`, or undefined (Postgres first, then memory: FT4). */
  get(kid: string): Promise<PublicKey | undefined> {
    return this.#timed({ type: 'get', kid });
  }

  /** Every unexpired key known to this replica. */
  list(): Promise<PublicKey[]> {
    return this.#timed({ type: 'list' });
  }

  /**
   * Reloads every key from Postgres into memory (and so into `snapshot`), unless Postgres is marked unavailable.
   * A reload requested while one waits or runs shares it: at most one is ever in the mailbox. Resolves with
   * whether Postgres was asked.
   */
  reload(): Promise<boolean> {
    this.#reloading ??= this.#timed({ type: 'reload' }).finally(() => (this.#reloading = undefined));
    return this.#reloading;
  }

  protected override async onStart(): Promise<void> {
    if (this.#backend.durable) {
      const loaded = await this.#backend.loadAll();
      if (!loaded) this.log.warn('starting with postgres unreachable; keys live in memory until it returns');
      this.#every(this.#options.flushIntervalMs, { type: 'flush' });
      this.#every(this.#options.probeIntervalMs, { type: 'probe' });
      const reloadEvery = this.#options.reloadIntervalMs ?? DEFAULT_RELOAD_INTERVAL_MS;
      const timer = setInterval(() => void this.reload().catch(() => undefined), reloadEvery);
      timer.unref();
      this.#timers.push(timer);
    }
    this.#every(this.#options.cleanupIntervalMs, { type: 'deleteExpired' });
    await this.#refreshSnapshot();
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
    try {
      return await this.#handle(msg);
    } finally {
      // Any message may change the keys in memory: a create or an announcement, a read that backfills from
      // Postgres, a reload, the recovery that follows a flush or a probe, a clean-up.
      await this.#refreshSnapshot();
    }
  }

  async #handle(msg: KeyStoreMessage): Promise<KeyStoreReplies[KeyStoreMessage['type']]> {
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
      case 'reload':
        // While Postgres is marked unavailable the probe finds it back, and its recovery reloads every key.
        if (!this.#backend.durable || !this.#backend.postgresAvailable) return false;
        await this.#backend.list();
        return true;
      default: {
        const unknown: never = msg;
        throw new Error(`unknown message ${JSON.stringify(unknown)}`);
      }
    }
  }

  async #refreshSnapshot(): Promise<void> {
    const keys = await this.#backend.cached();
    const now = this.#clock.now();
    if (!this.#snapshot.sameKeys(keys, now)) this.#publish(keys, now);
  }

  #publish(keys: readonly PublicKey[], now: number): void {
    this.#snapshot = KeySetSnapshot.build(keys, now, ++this.#versions);
  }

  /** Asks, and reports how long the answer took, queueing included. */
  #timed<K extends KeyStoreMessage['type']>(
    msg: Extract<KeyStoreMessage, { type: K }>,
  ): Promise<KeyStoreReplies[K]> {
    const report = this.#options.onOperation;
    if (!report) return this.ask(msg);
    const started = performance.now();
    const reply = this.ask(msg);
    const done = () => report(msg.type, (performance.now() - started) / 1000);
    reply.then(done, done);
    return reply;
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
  /** Lists memory. */
  cached(): Promise<PublicKey[]> {
    return this.#memory.list();
  }
}
