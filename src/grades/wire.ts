import type { MessageAuth } from '../cluster/message-auth.js';
import { AppError } from '../errors.js';
import { replicationMessageSchema, type ReplicationMessage } from './model.js';

/** The NATS message header that carries a replication message's MAC (with `CLUSTER_SECRET`). */
export const MAC_HEADER = 'Cluster-Mac';

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

/**
 * A stream message whose MAC is missing or wrong while `CLUSTER_SECRET` is set: not written by a replica of this
 * cluster, so it is logged, counted and skipped, never applied.
 */
export class UnauthenticatedReplicationMessageError extends AppError {
  readonly reason: string;

  constructor(reason: string) {
    super('MESSAGE_UNAUTHENTICATED', `replication message not authenticated (${reason})`);
    this.reason = reason;
  }
}

/**
 * Encodes and decodes replication messages, and with a cluster authenticator seals each one (a MAC over its
 * bytes, bound to its origin and to this stream's subject, carried in the {@link MAC_HEADER} header) and refuses
 * any message whose MAC does not open. Without one, messages are only validated, and NATS must be trusted.
 */
export class ReplicationCodec {
  readonly #auth: MessageAuth | undefined;
  readonly #purpose: string;
  readonly #subject: string;

  /** `subject`: the stream's base subject, so a MAC sealed for another purpose never opens here. */
  constructor(options: { auth?: MessageAuth; subject: string } = { subject: '' }) {
    this.#auth = options.auth;
    this.#purpose = `grades:${options.subject}`;
    this.#subject = options.subject;
  }

  /** The message's bytes and, with a cluster secret, its MAC. */
  encode(msg: ReplicationMessage): { data: Uint8Array; mac: string | undefined } {
    const data = encodeReplication(msg);
    return { data, mac: this.#auth?.seal(this.#purpose, msg.origin, data) };
  }

  /**
   * The message in `data`, validated and, with a cluster secret, authenticated by `mac`; throws
   * {@link MalformedReplicationMessageError} or {@link UnauthenticatedReplicationMessageError}. With a secret and
   * the `subject` the message was stored under, that subject must be its origin's own: a genuine message copied
   * onto another writer's subject is refused (reason `subject`), so it can neither be taken for that writer's
   * nor disturb that writer's order.
   */
  decode(data: Uint8Array, mac: string | undefined, subject?: string): ReplicationMessage {
    const msg = decodeReplication(data);
    if (this.#auth) {
      const opened = this.#auth.open(this.#purpose, msg.origin, data, mac);
      if (!opened.ok) throw new UnauthenticatedReplicationMessageError(opened.reason);
      if (subject !== undefined && subject !== originSubject(this.#subject, msg.origin)) {
        throw new UnauthenticatedReplicationMessageError('subject');
      }
    }
    return msg;
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
