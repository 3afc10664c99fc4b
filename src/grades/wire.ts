import { AppError } from '../errors.js';
import { replicationMessageSchema, type ReplicationMessage } from './model.js';

/**
 * The replication message's bytes on the bus, in one place: every publisher encodes with
 * {@link encodeReplication} and every reader decodes with {@link decodeReplication}, so authenticating grades
 * messages (a MAC over these bytes) is a change to this file only.
 */

/** A message on the stream that is not a valid replication message; it is logged and skipped. */
export class MalformedReplicationMessageError extends AppError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MALFORMED_MESSAGE', `malformed replication message: ${message}`, options);
  }
}

/** A replication message as published. */
export function encodeReplication(msg: ReplicationMessage): Uint8Array {
  return Buffer.from(JSON.stringify(msg));
}

/** Parses and validates a replication message; throws {@link MalformedReplicationMessageError}. */
export function decodeReplication(data: Uint8Array): ReplicationMessage {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch (err) {
    throw new MalformedReplicationMessageError('not JSON', { cause: err });
  }
  const parsed = replicationMessageSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new MalformedReplicationMessageError(`${issue?.path.join('.') || 'body'}: ${issue?.message}`);
  }
  return parsed.data;
}

/** The last write counter a message carries. */
export function lastN(msg: ReplicationMessage): number {
  return msg.n + msg.updates.length - 1;
}

/**
 * The subject an origin publishes on: `<base>.<origin>`, with the characters a subject token cannot hold
 * replaced, so JetStream can check "the last message on this subject" per origin (see the outbox).
 */
export function originSubject(base: string, origin: string): string {
  return `${base}.${origin.replace(/[^A-Za-z0-9_-]/g, '_')}`;
}
