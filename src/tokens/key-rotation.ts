import type { Logger } from 'pino';
import { Actor } from '../actor/actor.js';
import type { Clock } from '../clock.js';
import type { KeyStore } from '../keys/key-store.js';
import type { SigningAlg } from '../keys/public-key.js';
import { generateSigningKey, type KeyLifetime, type SigningKey } from './signing-key.js';

/** Messages of the {@link KeyRotation} actor. */
export type KeyRotationMessage = { readonly type: 'rotate' } | { readonly type: 'active' };

/** The reply to each message type. */
export interface KeyRotationReplies {
  rotate: SigningKey;
  active: SigningKey | undefined;
}

/** Settings of {@link KeyRotation}. */
export interface KeyRotationOptions {
  readonly alg: SigningAlg;
  readonly rotationIntervalMs: number;
  readonly tokenMaxTtlMs: number;
  readonly skewMs: number;
  readonly replicaId: string;
  readonly keyStore: KeyStore;
  readonly clock: Clock;
  readonly log: Logger;
}

/**
 * Owns the active signing key (T5). A key pair is generated at start-up and again every rotation interval; its
 * public half is stored through the KeyStore before the key becomes active, so a verifier can always find the
 * key of any token this replica signs. The KeyStore accepts a key even while Postgres is down (it waits in
 * pending writes), which is what lets a replica start and sign with Postgres unreachable (FT7).
 */
export class KeyRotation extends Actor<KeyRotationMessage, KeyRotationReplies> {
  readonly #options: KeyRotationOptions;
  readonly #lifetime: KeyLifetime;
  #active: SigningKey | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: KeyRotationOptions) {
    super('key-rotation', options.log);
    this.#options = options;
    this.#lifetime = {
      activeMs: options.rotationIntervalMs,
      tokenMaxTtlMs: options.tokenMaxTtlMs,
      skewMs: options.skewMs,
    };
  }

  /** The `kid` of the key tokens are signed with now, if any. */
  get activeKid(): string | undefined {
    return this.#active?.kid;
  }

  protected override async onStart(): Promise<void> {
    await this.#rotate();
    this.#timer = setInterval(() => this.tell({ type: 'rotate' }), this.#options.rotationIntervalMs);
    this.#timer.unref();
  }

  protected override onStop(): Promise<void> {
    clearInterval(this.#timer);
    return Promise.resolve();
  }

  protected override async receive(
    msg: KeyRotationMessage,
  ): Promise<KeyRotationReplies[KeyRotationMessage['type']]> {
    switch (msg.type) {
      case 'rotate':
        return this.#rotate();
      case 'active':
        return this.#active;
      default: {
        const unknown: never = msg;
        throw new Error(`unknown message ${JSON.stringify(unknown)}`);
      }
    }
  }

  async #rotate(): Promise<SigningKey> {
    const { alg, replicaId, keyStore, clock } = this.#options;
    const key = await generateSigningKey(alg, clock.now(), this.#lifetime, replicaId);
    await keyStore.create(key.publicKey);
    this.#active = key;
    this.log.info(
      { kid: key.kid, alg, expiresAt: new Date(key.publicKey.expiresAt).toISOString() },
      'signing key rotated',
    );
    return key;
  }
}
