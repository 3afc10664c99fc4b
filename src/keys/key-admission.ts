import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { PublicKey } from './public-key.js';
import {
  verifyPublicKey,
  type KeyRefusalReason,
  type KeyTrustPolicy,
  type KeyVerdict,
} from './verify-public-key.js';

/** Where a key came from, as the `source` label of `keys_refused_total`. */
export type KeySource = 'nats' | 'postgres';

/** The gate every key from outside this process passes before it is stored or served. */
export interface KeyGate {
  /** True when `key` may be stored and served; a refusal is logged and counted by the gate. */
  admit(key: PublicKey, source: KeySource): Promise<boolean>;
}

/** Settings of {@link KeyAdmission}. */
export interface KeyAdmissionOptions {
  readonly policy: KeyTrustPolicy;
  readonly clock: Clock;
  readonly log: Logger;
  /** Called once per refusal that is logged (the metric). */
  readonly onRefused?: (source: KeySource, reason: KeyRefusalReason) => void;
  /**
   * How long a refused record is refused again without a new check, log line or count (default 60 s): a bad row
   * in Postgres is read on every JWKS request, and must not flood the log or cost a verification each time.
   */
  readonly recheckMs?: number;
}

/** Most refusals remembered; past it the memory starts afresh (a flood costs checks, never correctness). */
const MAX_REMEMBERED = 10_000;

/**
 * Applies {@link verifyPublicKey} where keys enter (the NATS key announcer, rows read from Postgres), and reports
 * refusals: one warning without key material (the `kid` is a digest, shortened; no JWK member is logged) and one
 * count per refused record per `recheckMs`.
 */
export class KeyAdmission implements KeyGate {
  readonly #o: KeyAdmissionOptions;
  readonly #recheckMs: number;
  /** Records refused lately: `kid` → the refused record's text and until when the refusal stands. */
  readonly #refused = new Map<string, { record: string; until: number }>();

  constructor(options: KeyAdmissionOptions) {
    this.#o = options;
    this.#recheckMs = options.recheckMs ?? 60_000;
  }

  /** Verifies `key` (or recalls a recent refusal of the same record); logs and counts a new refusal. */
  async admit(key: PublicKey, source: KeySource): Promise<boolean> {
    const now = this.#o.clock.now();
    const record = JSON.stringify(key);
    const known = this.#refused.get(key.kid);
    if (known && known.record === record && now < known.until) return false;
    // The check is written not to throw; should a record still make it, the record is refused, not trusted.
    const verdict = await verifyPublicKey(key, this.#o.policy, now).catch((): KeyVerdict => ({
      trusted: false,
      reason: 'malformed',
      detail: 'verification failed',
    }));
    if (verdict.trusted) {
      this.#refused.delete(key.kid);
      return true;
    }
    if (this.#refused.size >= MAX_REMEMBERED) this.#refused.clear();
    this.#refused.set(key.kid, { record, until: now + this.#recheckMs });
    this.#o.onRefused?.(source, verdict.reason);
    this.#o.log.warn(
      {
        source,
        reason: verdict.reason,
        detail: verdict.detail,
        kid: String(key.kid).slice(0, 64),
        from: String(key.replicaId).slice(0, 64),
      },
      'public key refused',
    );
    return false;
  }
}
