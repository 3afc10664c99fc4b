import { signCompact, verifySignature } from './jws.js';
import type { SignBatchResult, SignBatchTask } from './signing-protocol.js';

/**
 * Runs one signing task (in a worker, or inline when the pool has none): signs each payload with the batch's key
 * and its encoded `header`, once the payload's proof, if it has one, verifies; null where a proof fails.
 */
export function signBatch(task: SignBatchTask, header: string): SignBatchResult {
  return task.payloads.map((payload, i) => {
    const proof = task.proofs?.[i];
    if (proof) {
      const key = task.proofKeys?.[proof.keyIndex];
      if (!key || !verifySignature(proof.alg, key, proof.signingInput, proof.signature)) return null;
    }
    return signCompact(task.alg, header, task.key, payload);
  });
}
