/**
 * Signing worker (piscina): signs a batch of payloads with the private key that came with the batch. Holds no
 * other state than the encoded header of the last key it saw.
 */
import { encodedHeader, signCompact } from '../src/tokens/jws.js';
import type { SignBatchResult, SignBatchTask } from '../src/tokens/signing-protocol.js';

let lastKid = '';
let lastHeader = '';

/** Signs every payload of the batch. */
export default function signBatch(task: SignBatchTask): SignBatchResult {
  if (task.kid !== lastKid) {
    lastHeader = encodedHeader(task.alg, task.kid);
    lastKid = task.kid;
  }
  return task.payloads.map((payload) => signCompact(task.alg, lastHeader, task.key, payload));
}
