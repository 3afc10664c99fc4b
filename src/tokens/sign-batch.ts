import type { KeyObject } from 'node:crypto';
import { signCompact, verifySignature } from './jws.js';
import type { SignBatchResult, SignBatchTask, WireProof, WireProofs } from './signing-protocol.js';

/**
 * Runs one signing task (in a worker, or inline when the pool has none): signs each payload with the batch's key
 * and its encoded `header`, once the payload's proofs, if it has any, all verify; null where a proof fails, `''`
 * where proofs were only to be checked and hold.
 */
export function signBatch(task: SignBatchTask, header: string): SignBatchResult {
  return task.payloads.map((payload, i) => {
    const proofs = task.proofs?.[i];
    if (proofs && !allHold(proofs, task.proofKeys)) return null;
    if (payload === null) return '';
    if (!task.signer) throw new Error('a payload to sign came without a signing key');
    return signCompact(task.signer.alg, header, task.signer.key, payload);
  });
}

function allHold(proofs: WireProofs, keys: readonly KeyObject[] | undefined): boolean {
  if (!isList(proofs)) return holds(proofs, keys?.[proofs.keyIndex]);
  return proofs.every((proof) => holds(proof, keys?.[proof.keyIndex]));
}

/** `Array.isArray` narrows a readonly array union poorly; this says what it means. */
function isList(proofs: WireProofs): proofs is readonly WireProof[] {
  return Array.isArray(proofs);
}

/** Whether a proof's signature verifies; a proof that cannot even be checked fails alone, not its batch. */
function holds(proof: WireProof, key: KeyObject | undefined): boolean {
  try {
    return key !== undefined && verifySignature(proof.alg, key, proof.signingInput, proof.signature);
  } catch {
    return false;
  }
}
