import { z } from 'zod';
import { SIGNING_ALGS, type PublicKey } from './public-key.js';

/**
 * A public key as it crosses a process boundary (NATS). Strict: an object with any private member (`d`, `p`, …)
 * or any unknown field is refused.
 */
export const publicKeySchema = z
  .object({
    kid: z.string().min(1).max(128),
    alg: z.enum(SIGNING_ALGS),
    jwk: z
      .object({
        kty: z.enum(['EC', 'OKP', 'RSA']),
        kid: z.string().min(1).max(128),
        alg: z.enum(SIGNING_ALGS),
        use: z.literal('sig'),
        crv: z.string().optional(),
        x: z.string().optional(),
        y: z.string().optional(),
        n: z.string().optional(),
        e: z.string().optional(),
      })
      .strict(),
    createdAt: z.number().int().nonnegative(),
    expiresAt: z.number().int().nonnegative(),
    replicaId: z.string().min(1).max(64),
  })
  .strict()
  .refine((k) => k.kid === k.jwk.kid && k.alg === k.jwk.alg, { message: 'kid and alg must match the JWK' });

/** Parses untrusted input into a {@link PublicKey}; throws a ZodError when it is not one. */
export function parsePublicKey(input: unknown): PublicKey {
  return publicKeySchema.parse(input);
}
