/**
 * Signing worker (piscina): runs signing tasks (see `signBatch`). Holds no other state than the encoded header
 * of the last key it saw.
 */
import { encodedHeader } from '../src/tokens/jws.js';
import { signBatch } from '../src/tokens/sign-batch.js';
import type { SignBatchResult, SignBatchTask } from '../src/tokens/signing-protocol.js';

let lastKid = '';
let lastHeader = '';

/** Signs every payload of the batch whose proof holds; null for the others. */
export default function run(task: SignBatchTask): SignBatchResult {
  if (task.signer && task.signer.kid !== lastKid) {
    lastHeader = encodedHeader(task.signer.alg, task.signer.kid);
    lastKid = task.signer.kid;
  }
  return signBatch(task, lastHeader);
}
