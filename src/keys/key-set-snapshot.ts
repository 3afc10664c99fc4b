import { createHash } from 'node:crypto';
import { isExpired, type PublicKey } from './public-key.js';

/** One key as the HTTP layer serves it: its JWK serialised once, with a strong entity tag. */
export interface ServedKey {
  readonly key: PublicKey;
  /** The JWK as JSON bytes. */
  readonly body: Buffer;
  /** Strong entity tag of `body` (RFC 9110 §8.8.3), quotes included. */
  readonly etag: string;
}

/** A strong entity tag: the SHA-256 of the bytes, so equal bodies get equal tags on every replica. */
function entityTag(body: Buffer): string {
  return `"${createHash('sha256').update(body).digest('base64url')}"`;
}

/**
 * The set of unexpired public keys at one moment, serialised once: the JWKS document and each key's JWK, with
 * their entity tags. Immutable; the KeyStore publishes a new one only when the set of keys changes (a create, an
 * announcement, a reload, an expiry), so serving it costs no query, no message and no serialisation.
 */
export class KeySetSnapshot {
  /** Counts the snapshots built by one owner: a new number means the key set changed. */
  readonly version: number;
  /** The keys, oldest first (ties by kid). */
  readonly keys: readonly PublicKey[];
  /** `{"keys":[…]}` as JSON bytes. */
  readonly jwks: Buffer;
  /** Strong entity tag of `jwks`. */
  readonly etag: string;
  /** When the first of these keys expires (Infinity when there is none): the snapshot is stale from then on. */
  readonly expiresAt: number;
  readonly #byKid: ReadonlyMap<string, ServedKey>;

  private constructor(keys: readonly PublicKey[], version: number) {
    this.version = version;
    this.keys = keys;
    this.jwks = Buffer.from(JSON.stringify({ keys: keys.map((k) => k.jwk) }));
    this.etag = entityTag(this.jwks);
    this.expiresAt = keys.reduce((min, k) => Math.min(min, k.expiresAt), Infinity);
    const byKid = new Map<string, ServedKey>();
    for (const key of keys) {
      const body = Buffer.from(JSON.stringify(key.jwk));
      byKid.set(key.kid, { key, body, etag: entityTag(body) });
    }
    this.#byKid = byKid;
  }

  /**
   * A snapshot of the keys of `keys` unexpired at `now`, oldest first (ties by kid): replicas holding the same keys
   * serve the same bytes under the same entity tag, whatever order the keys reached them in.
   */
  static build(keys: readonly PublicKey[], now: number, version: number): KeySetSnapshot {
    const live = keys
      .filter((k) => !isExpired(k, now))
      .sort((a, b) => a.createdAt - b.createdAt || (a.kid < b.kid ? -1 : a.kid > b.kid ? 1 : 0));
    return new KeySetSnapshot(live, version);
  }

  /** The key with `kid` as it was when the snapshot was built (callers check `expiresAt` first). */
  get(kid: string): ServedKey | undefined {
    return this.#byKid.get(kid);
  }

  /** True when `keys`, once those expired at `now` are left out, are exactly this snapshot's keys. */
  sameKeys(keys: readonly PublicKey[], now: number): boolean {
    let live = 0;
    for (const key of keys) {
      if (isExpired(key, now)) continue;
      // A kid names one key for good (it is the key's thumbprint), so comparing kids compares keys.
      if (!this.#byKid.has(key.kid)) return false;
      live++;
    }
    return live === this.#byKid.size;
  }
}
