import type { KeyObject } from 'node:crypto';
import type { SigningAlg } from '../keys/public-key.js';
import type { VerifyAlg } from './jws.js';

/**
 * A signature that must verify before a token is signed: the subject token of an exchange (and, when it delegates,
 * its actor token). Checking it in the
 * same worker task that signs the new token spares a second crossing between threads (measured: an exchange's
 * verification and signing together cost one pool round trip instead of two).
 */
export interface SignatureProof {
  /** The provider's public key, already checked to fit `alg`. */
  readonly key: KeyObject;
  readonly alg: VerifyAlg;
  /** `header.payload` of the compact JWS, as received. */
  readonly signingInput: string;
  /** Its third segment, base64url. */
  readonly signature: string;
}

/**
 * What must verify before one token is signed: a proof, or several that must all verify (a delegated exchange's
 * subject token and actor token, checked in the same task). An exchange without an actor passes its one proof
 * as it is, sparing an array per token on the hot path.
 */
export type Proofs = SignatureProof | readonly SignatureProof[];

/** A proof as it crosses to the worker: its key is sent once per batch and named by index. */
export interface WireProof {
  readonly keyIndex: number;
  readonly alg: VerifyAlg;
  readonly signingInput: string;
  readonly signature: string;
}

/** {@link Proofs} as they cross to the worker. */
export type WireProofs = WireProof | readonly WireProof[];

/**
 * The one contract between the main thread and the signing workers; both sides import it as types only.
 *
 * A task is a batch: every token requested in one event-loop turn with the same key (or proofs that are only
 * to be checked, with no key at all). The private key travels with the batch (a KeyObject is cloned across
 * threads without being serialised to text), so whichever worker takes the batch holds the key it must sign
 * with, and a rotated key can never be used by a worker that has not received it.
 */
export interface SignBatchTask {
  /** The key to sign with; absent from a batch that only checks proofs. */
  readonly signer?: { readonly kid: string; readonly alg: SigningAlg; readonly key: KeyObject };
  /** JSON payloads, already serialised on the main thread; null where the proof is only to be checked. */
  readonly payloads: readonly (string | null)[];
  /** Per payload, the signatures that must all verify first (null: none); absent when no payload has one. */
  readonly proofs?: readonly (WireProofs | null)[];
  /** The public keys the proofs name. */
  readonly proofKeys?: readonly KeyObject[];
}

/**
 * In the order of `payloads`: the compact JWS; `''` for proofs checked and holding, with nothing to sign; null
 * where a proof did not verify.
 */
export type SignBatchResult = (string | null)[];
