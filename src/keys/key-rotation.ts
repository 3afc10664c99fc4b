import type { Logger } from 'pino';
import { Actor } from '../actor/actor.js';
import type { Clock } from '../clock.js';
import { describeError } from '../errors.js';
import type { KeyStore } from './key-store.js';
import type { SigningAlg } from './public-key.js';
import type { KeyAnnouncer } from './key-announcer.js';
import { generateSigningKey, type KeyLifetime, type SigningKey } from './signing-key.js';

/** Messages of the {@link KeyRotation} actor. */
export type KeyRotationMessage = { readonly type: 'rotate' } | { readonly type: 'retry' };

/** The reply to each message type: the active key after the message. */
export interface KeyRotationReplies {
  rotate: SigningKey | undefined;
  retry: SigningKey | undefined;
}

/** Settings of {@link KeyRotation}. */
export interface KeyRotationOptions {
  readonly alg: SigningAlg;
  readonly rotationIntervalMs: number;
  /** How long past its turn a published key keeps signing while its successor cannot be published. */
  readonly publishGraceMs: number;
  /** How often an unpublished key's publication is retried. */
  readonly retryIntervalMs: number;
  readonly tokenMaxTtlMs: number;
  readonly skewMs: number;
  readonly replicaId: string;
  readonly keyStore: KeyStore;
  /** Peer announcements (NATS); absent when the replica runs without NATS. */
  readonly announcer?: KeyAnnouncer;
  readonly clock: Clock;
  readonly log: Logger;
}

interface Active {
  readonly key: SigningKey;
  readonly published: boolean;
  /** The key signs no later than this, whatever happens to its successor. */
  readonly signUntil: number;
}

/**
 * The lifetime of this replica's signing keys: a key may sign for its rotation interval plus the publication
 * grace, and every token it signs lives at most the longest token lifetime, plus the clock-skew leeway.
 */
export function signingKeyLifetime(
  o: Pick<KeyRotationOptions, 'rotationIntervalMs' | 'publishGraceMs' | 'tokenMaxTtlMs' | 'skewMs'>,
): KeyLifetime {
  return {
    activeMs: o.rotationIntervalMs + o.publishGraceMs,
    tokenMaxTtlMs: o.tokenMaxTtlMs,
    skewMs: o.skewMs,
  };
}

/**
 * Owns the signing key (T5, "Keys across replicas"). A key pair is generated at start-up and every rotation
 * interval. A new key becomes active only once it is *published*: written to Postgres, or acknowledged by the
 * NATS key bucket, so that every replica can serve it before any token signed with it exists. Until then the last
 * published key goes on signing, for at most `publishGraceMs` past its turn (its expiry allows for that); only
 * past that bound, or at a start with nothing published yet (FT7), is an unpublished key activated, and its
 * publication is retried until it succeeds.
 *
 * The active key is read synchronously by the token service (`active`), which hands it to the signing pool with
 * each batch: a worker never signs with a key it was not given.
 */
export class KeyRotation extends Actor<KeyRotationMessage, KeyRotationReplies> {
  readonly #o: KeyRotationOptions;
  readonly #lifetime: KeyLifetime;
  #active: Active | undefined;
  #candidate: SigningKey | undefined;
  #timers: NodeJS.Timeout[] = [];

  constructor(options: KeyRotationOptions) {
    super('key-rotation', options.log);
    this.#o = options;
    this.#lifetime = signingKeyLifetime(options);
  }

  /** The key tokens are signed with now. */
  get active(): SigningKey | undefined {
    return this.#active?.key;
  }

  /** The `kid` of the active key, if any. */
  get activeKid(): string | undefined {
    return this.#active?.key.kid;
  }

  /** Whether the active key is published, and whether a successor waits for publication. */
  get state(): { activeKid: string | undefined; published: boolean; waitingKid: string | undefined } {
    return {
      activeKid: this.#active?.key.kid,
      published: this.#active?.published ?? false,
      waitingKid: this.#candidate?.kid,
    };
  }

  protected override async onStart(): Promise<void> {
    await this.#rotate();
    this.#every(this.#o.rotationIntervalMs, 'rotate');
    this.#every(this.#o.retryIntervalMs, 'retry');
  }

  protected override onStop(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    return Promise.resolve();
  }

  protected override async receive(msg: KeyRotationMessage): Promise<SigningKey | undefined> {
    switch (msg.type) {
      case 'rotate':
        await this.#rotate();
        return this.active;
      case 'retry':
        await this.#retry();
        return this.active;
      default: {
        const unknown: never = msg;
        throw new Error(`unknown message ${JSON.stringify(unknown)}`);
      }
    }
  }

  /** A new key (unless one already waits), then the same publish-or-wait step as a retry. */
  async #rotate(): Promise<void> {
    this.#candidate ??= await generateSigningKey(
      this.#o.alg,
      this.#o.clock.now(),
      this.#lifetime,
      this.#o.replicaId,
    );
    await this.#retry();
  }

  async #retry(): Promise<void> {
    const active = this.#active;
    if (active && !active.published && (await this.#publish(active.key))) {
      this.#active = { ...active, published: true };
      this.log.info({ kid: active.key.kid }, 'active signing key published');
    }
    const candidate = this.#candidate;
    if (!candidate) return;
    const published = await this.#publish(candidate);
    const now = this.#o.clock.now();
    if (published || !this.#active || now >= this.#active.signUntil) {
      if (!published && this.#active) {
        this.log.error(
          { kid: candidate.kid },
          'activating a key peers may not know: publication failed past the grace',
        );
      } else if (!published) {
        this.log.warn({ kid: candidate.kid }, 'starting to sign with a key not yet published (FT7)');
      }
      this.#active = { key: candidate, published, signUntil: now + this.#lifetime.activeMs };
      this.#candidate = undefined;
      this.log.info(
        {
          kid: candidate.kid,
          alg: candidate.alg,
          published,
          expiresAt: new Date(candidate.publicKey.expiresAt),
        },
        'signing key activated',
      );
    } else {
      this.log.warn({ kid: candidate.kid, signingWith: this.#active.key.kid }, 'new key not published yet');
    }
  }

  /**
   * Stores the public key (memory at once) and announces it. Published means a peer can find it: it is in
   * Postgres, or the NATS bucket acknowledged it, or there is no peer to tell (no Postgres and no NATS).
   */
  async #publish(key: SigningKey): Promise<boolean> {
    const inPostgres = await this.#o.keyStore.create(key.publicKey);
    let announced = false;
    if (this.#o.announcer) {
      try {
        await this.#o.announcer.announce(key.publicKey);
        announced = true;
      } catch (err) {
        this.log.warn({ kid: key.kid, err: describeError(err) }, 'key announcement failed');
      }
    }
    return inPostgres || announced || (!this.#o.keyStore.durable && !this.#o.announcer);
  }

  #every(ms: number, type: KeyRotationMessage['type']): void {
    const timer = setInterval(() => this.tell({ type }), ms);
    timer.unref();
    this.#timers.push(timer);
  }
}
