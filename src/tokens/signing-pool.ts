import type { KeyObject } from 'node:crypto';
import { Piscina } from 'piscina';
import { AppError, UnavailableError } from '../errors.js';
import type { SigningAlg } from '../keys/public-key.js';
import { encodedHeader } from './jws.js';
import { signBatch } from './sign-batch.js';
import type {
  Proofs,
  SignatureProof,
  SignBatchResult,
  SignBatchTask,
  WireProof,
  WireProofs,
} from './signing-protocol.js';

/** The key a token is signed with. */
export interface ActiveSigningKey {
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly privateKey: KeyObject;
}

/** A proof's signature did not verify, so nothing was signed. */
export class ProofFailedError extends AppError {
  constructor() {
    super('PROOF_FAILED', 'the signature of the proof is invalid');
  }
}

/** Signs JWT payloads; the token service depends on this and nothing more. */
export interface Signer {
  /**
   * Signs `payload` with `key`; resolves with a compact JWS. With `proofs`, signs only if every proof's signature
   * verifies, and rejects with {@link ProofFailedError} otherwise.
   */
  sign(key: ActiveSigningKey, payload: Record<string, unknown>, proofs?: Proofs): Promise<string>;
  /** Whether every proof's signature verifies, checked where signing happens, with nothing signed. */
  check(proofs: Proofs): Promise<boolean>;
  close(): Promise<void>;
}

/** The queue of proofs that are only checked: they need no signing key and go in batches of their own. */
const CHECKS = Symbol('checks');
type QueueKey = ActiveSigningKey | typeof CHECKS;

interface Waiting {
  /** Null for a proof that is only checked. */
  readonly payload: string | null;
  readonly proof: Proofs | undefined;
  readonly resolve: (token: string) => void;
  readonly reject: (err: unknown) => void;
}

/** Settings of {@link SigningPool}. */
export interface SigningPoolOptions {
  /** Worker threads; 0 signs on the calling thread (same batching, no pool). */
  readonly workers: number;
  /** Most tokens in one task. */
  readonly maxBatch?: number;
  /**
   * Batches queued at each worker at once. Two keep a worker from idling while its next batch crosses threads;
   * one keeps batches largest.
   */
  readonly pipelineDepth?: number;
  /** Observes the size of each batch (for metrics). */
  readonly onBatch?: (size: number) => void;
  /** How long `close()` waits for running batches. */
  readonly closeTimeoutMs?: number;
}

/** The worker module next to this file's tree: `.ts` under tsx (tests), `.js` once built. */
function workerFile(): string {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`../../workers/signing-worker${ext}`, import.meta.url).href;
}

/**
 * Token signing on a piscina worker pool (T6). A pool round trip costs several ES256 signatures, so requests are
 * batched like a group commit: at most one batch per worker is in flight, and requests that arrive meanwhile wait
 * for the next one. At low load a batch leaves at the end of the event-loop turn it was asked in; under load
 * batches grow by themselves (up to `maxBatch`), which is what keeps the worker busy signing rather than
 * exchanging messages. Requests with different keys (around a rotation) go in different batches. Signing uses
 * node:crypto in the worker. `close()` refuses new work, lets queued batches finish, and destroys the pool.
 */
export class SigningPool implements Signer {
  readonly #pool: Piscina<SignBatchTask, SignBatchResult> | undefined;
  readonly #maxBatch: number;
  readonly #maxInFlight: number;
  readonly #onBatch: ((size: number) => void) | undefined;
  /** Waiting requests, by key, in arrival order of their first request. */
  readonly #queues = new Map<QueueKey, Waiting[]>();
  readonly #headers = new Map<string, string>();
  #inFlight = 0;
  #scheduled = false;
  #closed: Promise<void> | undefined;
  #drained: (() => void) | undefined;

  constructor(options: SigningPoolOptions) {
    this.#maxBatch = options.maxBatch ?? 64;
    this.#onBatch = options.onBatch;
    const depth = options.pipelineDepth ?? 2;
    this.#maxInFlight = options.workers > 0 ? options.workers * depth : 1;
    if (options.workers > 0) {
      this.#pool = new Piscina<SignBatchTask, SignBatchResult>({
        filename: workerFile(),
        minThreads: options.workers,
        maxThreads: options.workers,
        idleTimeout: Infinity,
        concurrentTasksPerWorker: depth,
        closeTimeout: options.closeTimeoutMs ?? 5000,
        // Piscina's run and wait time histograms cost main-thread time on every task; nothing reads them.
        recordTiming: false,
      });
    }
  }

  /** Worker threads in the pool (0 when signing inline). */
  get threads(): number {
    return this.#pool?.threads.length ?? 0;
  }

  sign(key: ActiveSigningKey, payload: Record<string, unknown>, proofs?: Proofs): Promise<string> {
    return this.#enqueue(key, JSON.stringify(payload), proofs);
  }

  check(proofs: Proofs): Promise<boolean> {
    return this.#enqueue(CHECKS, null, proofs).then(
      () => true,
      (err: unknown) => {
        if (err instanceof ProofFailedError) return false;
        throw err;
      },
    );
  }

  #enqueue(key: QueueKey, payload: string | null, proof: Proofs | undefined): Promise<string> {
    if (this.#closed) return Promise.reject(new UnavailableError('signing pool is closed'));
    return new Promise<string>((resolve, reject) => {
      let queue = this.#queues.get(key);
      if (!queue) this.#queues.set(key, (queue = []));
      queue.push({ payload, proof, resolve, reject });
      if (queue.length >= this.#maxBatch && this.#inFlight < this.#maxInFlight) {
        // A full batch leaves now, so the worker signs while this thread goes on parsing requests.
        this.#pump();
      } else if (!this.#scheduled && this.#inFlight < this.#maxInFlight) {
        this.#scheduled = true;
        setImmediate(() => {
          this.#scheduled = false;
          this.#pump();
        });
      }
    });
  }

  /** Refuses new work, finishes what is queued, then ends the workers. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      if (this.#queues.size > 0 || this.#inFlight > 0) {
        await new Promise<void>((resolve) => (this.#drained = resolve));
      }
      await this.#pool?.close();
    })();
    return this.#closed;
  }

  /** Starts batches while workers are free and requests wait. */
  #pump(): void {
    while (this.#inFlight < this.#maxInFlight && this.#queues.size > 0) {
      const [key, queue] = this.#queues.entries().next().value as [QueueKey, Waiting[]];
      const batch = queue.splice(0, this.#maxBatch);
      if (queue.length === 0) this.#queues.delete(key);
      this.#inFlight++;
      // Batches that only check proofs sign nothing, so they are not counted as signing batches.
      if (key !== CHECKS) this.#onBatch?.(batch.length);
      void this.#run(key, batch).finally(() => {
        this.#inFlight--;
        this.#pump();
        if (this.#inFlight === 0 && this.#queues.size === 0) this.#drained?.();
      });
    }
  }

  async #run(key: QueueKey, waiting: Waiting[]): Promise<void> {
    const signer = key === CHECKS ? undefined : key;
    const task = batchTask(signer, waiting);
    try {
      const tokens: SignBatchResult = this.#pool
        ? await this.#pool.run(task)
        : signBatch(task, signer ? this.#header(signer) : '');
      waiting.forEach((w, i) => {
        const token = tokens[i];
        if (typeof token === 'string') w.resolve(token);
        else w.reject(new ProofFailedError());
      });
    } catch (err) {
      for (const w of waiting) w.reject(err);
    }
  }

  #header(key: ActiveSigningKey): string {
    let header = this.#headers.get(key.kid);
    if (!header) this.#headers.set(key.kid, (header = encodedHeader(key.alg, key.kid)));
    return header;
  }
}

/** The task for a batch: its payloads and, when any has one, their proofs with each public key sent once. */
function batchTask(key: ActiveSigningKey | undefined, waiting: readonly Waiting[]): SignBatchTask {
  const payloads = waiting.map((w) => w.payload);
  const signer = key && { kid: key.kid, alg: key.alg, key: key.privateKey };
  if (!waiting.some((w) => w.proof)) return { signer, payloads };
  const proofKeys: KeyObject[] = [];
  const wire = (proof: SignatureProof): WireProof => {
    let keyIndex = proofKeys.indexOf(proof.key);
    if (keyIndex < 0) keyIndex = proofKeys.push(proof.key) - 1;
    return { keyIndex, alg: proof.alg, signingInput: proof.signingInput, signature: proof.signature };
  };
  const proofs = waiting.map(({ proof }): WireProofs | null => {
    if (!proof) return null;
    return isProofList(proof) ? proof.map(wire) : wire(proof);
  });
  return { signer, payloads, proofs, proofKeys };
}

/** `Array.isArray` narrows a readonly array union poorly; this says what it means. */
function isProofList(proofs: Proofs): proofs is readonly SignatureProof[] {
  return Array.isArray(proofs);
}
