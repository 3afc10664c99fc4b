import { z } from 'zod';

/** The four integer fields of a grade, in their CSV and storage order. */
export const FIELDS = ['postpaid_limit', 'spp', 'shipping_fee', 'return_fee'] as const;
/** One integer field of a grade. */
export type Field = (typeof FIELDS)[number];

/** A whole record as `GET /get` answers it (G2): fields never set read 0. */
export interface UserGrade {
  readonly user_id: string;
  readonly postpaid_limit: number;
  readonly spp: number;
  readonly shipping_fee: number;
  readonly return_fee: number;
}

/** A partial write: `user_id` and any subset of the fields (G5). */
export type GradeUpdate = { readonly user_id: string } & Partial<Record<Field, number>>;

/** A `user_id` as `POST /set` takes it; backups are held to the same rule. */
export const userIdSchema = z
  .string()
  .min(1, 'user_id must not be empty')
  .max(256, 'user_id is at most 256 characters')
  .refine((s) => !/\p{Cc}/u.test(s), 'user_id must not contain control characters');
const fieldValue = z
  .number()
  .int('must be an integer')
  .refine(Number.isSafeInteger, 'must be a safe integer');

/** `POST /set` bodies: strict, so unknown fields, wrong types and non-integers are refused. */
export const gradeUpdateSchema = z
  .object({
    user_id: userIdSchema,
    postpaid_limit: fieldValue.optional(),
    spp: fieldValue.optional(),
    shipping_fee: fieldValue.optional(),
    return_fee: fieldValue.optional(),
  })
  .strict();

/**
 * A replication message on the stream (G6): the writes `n`, `n + 1`, … of one origin, in the order that origin
 * acknowledged them. `origin` names the writer (a process, or a data directory that outlives processes); a
 * message carries several writes when they were published together (one stream sequence for all of them).
 */
export const replicationMessageSchema = z
  .object({
    origin: z.string().min(1).max(200),
    n: z.number().int().positive(),
    updates: z.array(gradeUpdateSchema).min(1).max(10_000),
  })
  .strict();

/** A replication message. */
export type ReplicationMessage = z.infer<typeof replicationMessageSchema>;
