import type { Logger } from 'pino';
import { Actor } from '../actor/actor.js';
import type { Clock } from '../clock.js';
import { ConfigError, describeError } from '../errors.js';
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
  /**
   * How long a rotated key is published before it signs (`KEY_ACTIVATION_DELAY_S`; default 0), so that verifiers
   * holding a cached JWKS have refetched it first. Shorter than the rotation interval.
   */
  readonly activationDelayMs?: number;
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
  /**
   * Report not ready (`ready`) until the start-up key has been published for the activation delay, for
   * deployments whose verifiers never refetch a JWKS on an unknown `kid` (`KEY_STARTUP_HOLD`).
   */
  readonly startupHold?: boolean;
  readonly clock: Clock;
  readonly log: Logger;
}

interface Active {
  readonly key: SigningKey;
  readonly published: boolean;
  /** When the key was first published, if it has been. */
  readonly publishedAt: number | undefined;
  /** The key signs no later than this, whatever happens to its successor. */
  readonly signUntil: number;
}

/** The next key, generated at its turn, waiting to be published and then for the activation delay. */
interface Candidate {
  readonly key: SigningKey;
  publishedAt: number | undefined;
}

/**
 * The lifetime of this replica's signing keys: a key is published at its turn, signs from the activation delay
 * later for the rotation interval, and for up to the publication grace more while its successor cannot be
 * published; every token it signs lives at most the longest token lifetime, plus the clock-skew leeway.
 */
export function signingKeyLifetime(
  o: Pick<
    KeyRotationOptions,
    'rotationIntervalMs' | 'activationDelayMs' | 'publishGraceMs' | 'tokenMaxTtlMs' | 'skewMs'
  >,
): KeyLifetime {
  return {
    activeMs: o.rotationIntervalMs + (o.activationDelayMs ?? 0) + o.publishGraceMs,
    tokenMaxTtlMs: o.tokenMaxTtlMs,
    skewMs: o.skewMs,
  };
}

/**
 * Owns the signing key (T5, "Keys across replicas", issue 11 item 4). A key pair is generated at start-up and
 * every rotation interval. A rotated key is first *published*: written to Postgres, or acknowledged by the NATS
 * key bucket, so that every replica serves it; it starts signing only `activationDelayMs` after that, so a
 * verifier that honours the JWKS `Cache-Control` has fetched it before any token signed with it exists. Until
 * then the current key goes on signing, for at most `publishGraceMs` past its turn (its expiry allows for that
 * and for the delay); only past that bound is a key activated early, or unpublished, and its publication is
 * retried until it succeeds.
 *
 * The start-up key has no predecessor, so it signs at once (FT7 as well: even unpublished). With `startupHold`,
 * `ready` stays false until it has been published for the activation delay.
 *
 * The active key is read synchronously by the token service (`active`), which hands it to the signing pool with
 * each batch: a worker never signs with a key it was not given.
 */
export class KeyRotation extends Actor<KeyRotationMessage, KeyRotationReplies> {
  readonly #o: KeyRotationOptions;
  readonly #lifetime: KeyLifetime;
  readonly #delayMs: number;
  #active: Active | undefined;
  #candidate: Candidate | undefined;
  /** When the start-up hold ends: the first moment an active key had been published for the delay. */
  #holdEndsAt: number | undefined;
  #timers: NodeJS.Timeout[] = [];
  #activation: NodeJS.Timeout | undefined;

  constructor(options: KeyRotationOptions) {
    super('key-rotation', options.log);
    this.#delayMs = options.activationDelayMs ?? 0;
    if (this.#delayMs >= options.rotationIntervalMs) {
      throw new ConfigError('the activation delay must be shorter than the rotation interval');
    }
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

  /**
   * True once a key signs and, with `startupHold`, once the start-up key has been published for the activation
   * delay (it stays true from then on).
   */
  get ready(): boolean {
    if (!this.#active) return false;
    if (!this.#o.startupHold) return true;
    return this.#holdEndsAt !== undefined && this.#o.clock.now() >= this.#holdEndsAt;
  }

  /** Whether the active key is published, and which key waits for publication or for its activation. */
  get state(): {
    activeKid: string | undefined;
    published: boolean;
    waitingKid: string | undefined;
    waitingPublished: boolean;
    held: boolean;
  } {
    return {
      activeKid: this.#active?.key.kid,
      published: this.#active?.published ?? false,
      waitingKid: this.#candidate?.key.kid,
      waitingPublished: this.#candidate?.publishedAt !== undefined,
      held: this.#active !== undefined && !this.ready,
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
    clearTimeout(this.#activation);
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
    this.#candidate ??= {
      key: await generateSigningKey(this.#o.alg, this.#o.clock.now(), this.#lifetime, this.#o.replicaId),
      publishedAt: undefined,
    };
    await this.#retry();
  }

  /** Publishes what is not yet published, then activates the waiting key if its time has come. */
  async #retry(): Promise<void> {
    const active = this.#active;
    if (active && !active.published && (await this.#publish(active.key))) {
      this.#active = { ...active, published: true, publishedAt: this.#o.clock.now() };
      this.#holdEndsAt ??= this.#o.clock.now() + this.#delayMs;
      this.log.info({ kid: active.key.kid }, 'active signing key published');
    }
    const candidate = this.#candidate;
    if (!candidate) return;
    if (candidate.publishedAt === undefined && (await this.#publish(candidate.key))) {
      candidate.publishedAt = this.#o.clock.now();
      if (this.#active && this.#delayMs > 0) {
        this.log.info({ kid: candidate.key.kid, activationDelayMs: this.#delayMs }, 'new key published');
      }
    }
    const now = this.#o.clock.now();
    const publishedAt = candidate.publishedAt;
    const due = publishedAt !== undefined && now >= publishedAt + this.#delayMs;
    const current = this.#active;
    if (!current || due || now >= current.signUntil) {
      if (!current && publishedAt === undefined) {
        this.log.warn({ kid: candidate.key.kid }, 'starting to sign with a key not yet published (FT7)');
      } else if (current && publishedAt === undefined) {
        this.log.error(
          { kid: candidate.key.kid },
          'activating a key peers may not know: publication failed past the grace',
        );
      } else if (current && !due) {
        this.log.warn(
          { kid: candidate.key.kid, publishedMsAgo: now - (publishedAt ?? now) },
          'activating a key published less than the activation delay ago: its publication was late past the grace',
        );
      }
      this.#activate(candidate);
    } else if (publishedAt === undefined) {
      this.log.warn({ kid: candidate.key.kid, signingWith: current.key.kid }, 'new key not published yet');
    } else {
      // Timed to the moment the delay has run (again if a timer fired a little early), not left to a retry tick.
      this.#activateLater(publishedAt + this.#delayMs - now);
    }
  }

  #activate(candidate: Candidate): void {
    const { key, publishedAt } = candidate;
    this.#active = {
      key,
      published: publishedAt !== undefined,
      publishedAt,
      // From its creation, not its activation: the key's expiry was fixed when it was generated.
      signUntil: key.publicKey.createdAt + this.#lifetime.activeMs,
    };
    if (publishedAt !== undefined) this.#holdEndsAt ??= publishedAt + this.#delayMs;
    this.#candidate = undefined;
    this.log.info(
      {
        kid: key.kid,
        alg: key.alg,
        published: publishedAt !== undefined,
        expiresAt: new Date(key.publicKey.expiresAt),
      },
      'signing key activated',
    );
  }

  /** Asks for a step once the delay has run, rather than at the next retry tick. */
  #activateLater(ms: number): void {
    clearTimeout(this.#activation);
    this.#activation = setTimeout(() => this.tell({ type: 'retry' }), ms);
    this.#activation.unref();
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
