import type { KeyObject } from 'node:crypto';
import { signCompact, verifySignature } from './jws.js';
import type { SignBatchResult, SignBatchTask, WireProof } from './signing-protocol.js';

/**
 * Runs one signing task (in a worker, or inline when the pool has none): signs each payload with the batch's key
 * and its encoded `header`, once the payload's proof, if it has one, verifies; null where a proof fails, `''`
 * where a proof was only to be checked and holds.
 */
export function signBatch(task: SignBatchTask, header: string): SignBatchResult {
  return task.payloads.map((payload, i) => {
    const proof = task.proofs?.[i];
    if (proof && !holds(proof, task.proofKeys?.[proof.keyIndex])) return null;
    if (payload === null) return '';
    if (!task.signer) throw new Error('a payload to sign came without a signing key');
    return signCompact(task.signer.alg, header, task.signer.key, payload);
  });
}

/** Whether a proof's signature verifies; a proof that cannot even be checked fails alone, not its batch. */
function holds(proof: WireProof, key: KeyObject | undefined): boolean {
  try {
    return key !== undefined && verifySignature(proof.alg, key, proof.signingInput, proof.signature);
  } catch {
    return false;
  }
}
