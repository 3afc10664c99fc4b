import type { PublicKey } from './public-key.js';

/**
 * The one contract of every public-key store: memory, Postgres, and the fault-tolerant one that combines them
 * (FT1). The fault-tolerant repository depends on this interface only, so every scenario can be driven by fakes.
 */
export interface PublicKeyRepository {
  /** Stores `key`. Idempotent: storing a `kid` that is already there is not an error and changes nothing. */
  create(key: PublicKey): Promise<void>;
  /** The unexpired key with this `kid`, or undefined. */
  get(kid: string): Promise<PublicKey | undefined>;
  /** Every unexpired key (load-all at start and after an outage, and the JWKS document). */
  list(): Promise<PublicKey[]>;
  /** Removes expired keys; resolves with how many were removed. */
  deleteExpired(): Promise<number>;
}

/** A repository whose backend can be checked cheaply without touching data. */
export interface Pingable {
  /** Resolves when the backend answers; rejects otherwise. */
  ping(): Promise<void>;
}
