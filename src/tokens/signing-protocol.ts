import type { KeyObject } from 'node:crypto';
import type { SigningAlg } from '../keys/public-key.js';

/**
 * The one contract between the main thread and the signing workers; both sides import it as types only.
 *
 * A task is a batch: every token requested in one event-loop turn with the same key. The private key travels
 * with the batch (a KeyObject is cloned across threads without being serialised to text), so whichever worker
 * takes the batch holds the key it must sign with, and a rotated key can never be used by a worker that has not
 * received it.
 */
export interface SignBatchTask {
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly key: KeyObject;
  /** JSON payloads, already serialised on the main thread. */
  readonly payloads: readonly string[];
}

/** Compact JWS strings, in the order of `payloads`. */
export type SignBatchResult = string[];
