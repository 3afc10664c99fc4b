import type { KeyObject } from 'node:crypto';
import { Piscina } from 'piscina';
import type { SigningAlg } from '../keys/public-key.js';
import { encodedHeader, signCompact } from './jws.js';
import type { SignBatchResult, SignBatchTask } from './signing-protocol.js';

/** The key a token is signed with. */
export interface ActiveSigningKey {
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly privateKey: KeyObject;
}

/** Signs JWT payloads; the token service depends on this and nothing more. */
export interface Signer {
  /** Signs `payload` with `key`; resolves with a compact JWS. */
  sign(key: ActiveSigningKey, payload: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

interface Waiting {
  readonly payload: string;
  readonly resolve: (token: string) => void;
  readonly reject: (err: unknown) => void;
}

/** Settings of {@link SigningPool}. */
export interface SigningPoolOptions {
  /** Worker threads; 0 signs on the calling thread (same batching, no pool). */
  readonly workers: number;
  /** Most tokens in one task. */
  readonly maxBatch?: number;
  /** How long `close()` waits for running batches. */
  readonly closeTimeoutMs?: number;
}

/** The worker module next to this file's tree: `.ts` under tsx (tests), `.js` once built. */
function workerFile(): string {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`../../workers/signing-worker${ext}`, import.meta.url).href;
}

/**
 * Token signing on a piscina worker pool (T6). A pool round trip costs more than one ES256 signature, so requests
 * are batched: everything asked for in one event-loop turn with the same key becomes one task (up to `maxBatch`
 * tokens), signed with node:crypto in the worker. `close()` refuses new work, lets queued batches finish, and
 * destroys the pool.
 */
export class SigningPool implements Signer {
  readonly #pool: Piscina<SignBatchTask, SignBatchResult> | undefined;
  readonly #maxBatch: number;
  readonly #batches = new Map<ActiveSigningKey, Waiting[]>();
  readonly #headers = new Map<string, string>();
  #scheduled = false;
  #closed: Promise<void> | undefined;

  constructor(options: SigningPoolOptions) {
    this.#maxBatch = options.maxBatch ?? 64;
    if (options.workers > 0) {
      this.#pool = new Piscina<SignBatchTask, SignBatchResult>({
        filename: workerFile(),
        minThreads: options.workers,
        maxThreads: options.workers,
        idleTimeout: Infinity,
        closeTimeout: options.closeTimeoutMs ?? 5000,
      });
    }
  }

  /** Worker threads in the pool (0 when signing inline). */
  get threads(): number {
    return this.#pool?.threads.length ?? 0;
  }

  sign(key: ActiveSigningKey, payload: Record<string, unknown>): Promise<string> {
    if (this.#closed) return Promise.reject(new Error('signing pool is closed'));
    return new Promise<string>((resolve, reject) => {
      let batch = this.#batches.get(key);
      if (!batch) this.#batches.set(key, (batch = []));
      batch.push({ payload: JSON.stringify(payload), resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#dispatch());
      }
    });
  }

  /** Refuses new work, finishes what is queued, then ends the workers. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      if (this.#scheduled) await new Promise((r) => setImmediate(r));
      await this.#pool?.close();
    })();
    return this.#closed;
  }

  #dispatch(): void {
    this.#scheduled = false;
    const batches = [...this.#batches];
    this.#batches.clear();
    for (const [key, waiting] of batches) {
      for (let i = 0; i < waiting.length; i += this.#maxBatch) {
        void this.#run(key, waiting.slice(i, i + this.#maxBatch));
      }
    }
  }

  async #run(key: ActiveSigningKey, waiting: Waiting[]): Promise<void> {
    const payloads = waiting.map((w) => w.payload);
    try {
      let tokens: SignBatchResult;
      if (this.#pool) {
        tokens = await this.#pool.run({ kid: key.kid, alg: key.alg, key: key.privateKey, payloads });
      } else {
        const header = this.#header(key);
        tokens = payloads.map((p) => signCompact(key.alg, header, key.privateKey, p));
      }
      waiting.forEach((w, i) => w.resolve(tokens[i] as string));
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
