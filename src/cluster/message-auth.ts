import { createHmac, timingSafeEqual } from 'node:crypto';

/** The fewest bytes a cluster secret may have: HMAC-SHA-256's own output length. */
export const MIN_SECRET_BYTES = 32;

/** Why {@link MessageAuth.open} refused a message. */
export type MessageAuthFailure =
  /** The message carries no tag. */
  | 'missing'
  /** The tag is not one this module writes (wrong version or length). */
  | 'malformed'
  /** The tag does not match the message under any accepted secret. */
  | 'mismatch';

/** The outcome of {@link MessageAuth.open}. */
export type MessageAuthResult =
  | {
      readonly ok: true;
      /** Which secret matched: the previous one only during a rollover. */ readonly secret:
        'current' | 'previous';
    }
  | { readonly ok: false; readonly reason: MessageAuthFailure };

/** The secrets of {@link MessageAuth}. */
export interface MessageAuthSecrets {
  /** Seals every message, and opens them. Shared by a cluster's replicas; at least {@link MIN_SECRET_BYTES}. */
  readonly current: string | Uint8Array;
  /** Opens messages only, while replicas move from it to `current`. */
  readonly previous?: string | Uint8Array;
}

const VERSION = 'v1';
const DOMAIN = Buffer.from('token-grades/cluster-message/v1\n');
const MAC_BYTES = 32;
/** `v1.` + the base64url MAC (43 characters for 32 bytes). */
const TAG_LENGTH = VERSION.length + 1 + 43;

function toBytes(value: string | Uint8Array): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value);
}

function checkSecret(name: string, secret: Buffer): Buffer {
  if (secret.length < MIN_SECRET_BYTES) {
    throw new RangeError(
      `${name} secret has ${secret.length} bytes; at least ${MIN_SECRET_BYTES} are required`,
    );
  }
  return secret;
}

/**
 * Authenticates messages between the replicas of one cluster (key announcements, grades replication) with
 * HMAC-SHA-256 under a shared secret (SPEC X7). A MAC covers three things, each length-prefixed so no two
 * different triples ever share an input:
 *
 * - the **purpose**, naming what the message is for (`"keys:<bucket>"`, `"grades:<subject>"`): a message sealed
 *   for one purpose never opens for another, so a key announcement cannot be replayed as a grades message;
 * - the **origin**, the replica that sent it: a receiver that acts on the origin (skipping its own messages,
 *   matching a key's replica) can trust it;
 * - the **payload**, byte for byte (a string is taken as UTF-8): seal and open the exact bytes on the wire, not
 *   a re-serialisation.
 *
 * `seal` returns a short ASCII tag (`v1.<base64url MAC>`) to carry beside the payload, in a header or an
 * envelope field; `open` checks one in constant time under the current secret, then under the previous one
 * during a rollover. A MAC proves a message came from a holder of the secret; it does not stop a holder's old
 * message from being sent again, so receivers keep their own rules for repeats (keys are idempotent; grades
 * messages carry sequences).
 */
export class MessageAuth {
  readonly #current: Buffer;
  readonly #previous: Buffer | undefined;

  /** Throws a RangeError when a secret is shorter than {@link MIN_SECRET_BYTES}. */
  constructor(secrets: MessageAuthSecrets) {
    this.#current = checkSecret('current', toBytes(secrets.current));
    this.#previous =
      secrets.previous === undefined ? undefined : checkSecret('previous', toBytes(secrets.previous));
  }

  /** The tag that authenticates `payload` sent by `origin` for `purpose`. */
  seal(purpose: string, origin: string, payload: string | Uint8Array): string {
    return `${VERSION}.${mac(this.#current, purpose, origin, payload).toString('base64url')}`;
  }

  /** Whether `tag` authenticates `payload` sent by `origin` for `purpose`. */
  open(
    purpose: string,
    origin: string,
    payload: string | Uint8Array,
    tag: string | undefined | null,
  ): MessageAuthResult {
    if (tag === undefined || tag === null || tag === '') return { ok: false, reason: 'missing' };
    if (tag.length !== TAG_LENGTH || !tag.startsWith(`${VERSION}.`))
      return { ok: false, reason: 'malformed' };
    const given = Buffer.from(tag.slice(VERSION.length + 1), 'base64url');
    if (given.length !== MAC_BYTES) return { ok: false, reason: 'malformed' };
    if (timingSafeEqual(given, mac(this.#current, purpose, origin, payload)))
      return { ok: true, secret: 'current' };
    if (this.#previous && timingSafeEqual(given, mac(this.#previous, purpose, origin, payload))) {
      return { ok: true, secret: 'previous' };
    }
    return { ok: false, reason: 'mismatch' };
  }
}

function lengthPrefixed(value: string): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

function mac(secret: Buffer, purpose: string, origin: string, payload: string | Uint8Array): Buffer {
  return createHmac('sha256', secret)
    .update(DOMAIN)
    .update(lengthPrefixed(purpose))
    .update(lengthPrefixed(origin))
    .update(typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload)
    .digest();
}
