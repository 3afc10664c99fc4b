/**
 * Every error this service raises on purpose is an {@link AppError} with a stable `code` from {@link ErrorCode}.
 * Errors from libraries (pg, NATS, undici, node:http) are wrapped where they enter, keeping the original as
 * `cause`; the HTTP layer maps codes to statuses in one table (`src/http/errors.ts`), for both capabilities.
 */
export type ErrorCode = ServiceErrorCode | OAuthErrorCode;

/** Codes of the service's own conditions. */
export type ServiceErrorCode =
  | 'CONFIG_INVALID'
  | 'TIMEOUT'
  | 'STORAGE_UNAVAILABLE'
  | 'STORAGE_DATA_REJECTED'
  | 'ACTOR_STOPPED'
  | 'NOT_FOUND'
  | 'BAD_REQUEST'
  | 'UNAUTHORIZED'
  | 'NOT_READY'
  | 'PAYLOAD_TOO_LARGE'
  | 'METHOD_NOT_ALLOWED'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'FETCH_FAILED'
  | 'PROVIDER_UNAVAILABLE'
  | 'UNKNOWN_KEY'
  | 'UNUSABLE_KEY'
  | 'PROOF_FAILED'
  | 'UNAVAILABLE'
  | 'UNCONFIRMED'
  | 'BACKUP_REFUSED'
  | 'PEER_UNREACHABLE'
  | 'MALFORMED_MESSAGE'
  | 'MESSAGE_UNAUTHENTICATED'
  | 'OUTBOX_UNREADABLE';

/**
 * The error codes of RFC 6749 §5.2 and RFC 8693 §2.2.2 the token endpoint answers with, spelled as the RFCs
 * spell them: they are the wire format, and the token routes put them in the body as they are.
 */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'invalid_target'
  | 'temporarily_unavailable'
  | 'server_error';

/**
 * Base class: a stable string `code`, `name` taken from the concrete class, `cause` kept, and for a temporary
 * condition the seconds a client should wait before retrying (`Retry-After`), when known.
 */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterS: number | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; retryAfterS?: number }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
    this.retryAfterS = options?.retryAfterS;
  }
}

/** A setting is missing or malformed; start-up stops with this message. */
export class ConfigError extends AppError {
  constructor(message: string) {
    super('CONFIG_INVALID', message);
  }
}

/** An operation did not finish within its deadline. */
export class TimeoutError extends AppError {
  constructor(what: string, ms: number) {
    super('TIMEOUT', `${what} timed out after ${ms} ms`);
  }
}

/** The backing store (Postgres) failed or could not be reached. */
export class StorageError extends AppError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('STORAGE_UNAVAILABLE', message, options);
  }
}

/**
 * The backing store (Postgres) is up but refused this record for its data (SQLSTATE class 22, data exception, or
 * 23, integrity constraint violation). Retrying the same record cannot succeed, and it says nothing about the
 * store's availability.
 */
export class StorageDataError extends AppError {
  /** The SQLSTATE Postgres answered with. */
  readonly sqlState: string;

  constructor(message: string, sqlState: string, options?: { cause?: unknown }) {
    super('STORAGE_DATA_REJECTED', message, options);
    this.sqlState = sqlState;
  }
}

/** True for a {@link StorageDataError}: a record refused for its data, not an unavailable store. */
export function isStorageDataError(err: unknown): err is StorageDataError {
  return err instanceof StorageDataError;
}

/** A message was sent to an actor that is not running. */
export class ActorStoppedError extends AppError {
  constructor(actor: string) {
    super('ACTOR_STOPPED', `${actor} is not running`);
  }
}

/** The requested resource does not exist. */
export class NotFoundError extends AppError {
  constructor(message: string) {
    super('NOT_FOUND', message);
  }
}

/** The request is malformed; nothing was changed. */
export class BadRequestError extends AppError {
  constructor(message: string) {
    super('BAD_REQUEST', message);
  }
}

/** The request carries no valid credentials; `challenge` is the `WWW-Authenticate` value to answer with. */
export class UnauthorizedError extends AppError {
  readonly challenge: string;

  constructor(challenge: string, message = 'valid credentials are required') {
    super('UNAUTHORIZED', message);
    this.challenge = challenge;
  }
}

/** The capability cannot serve yet (joining, catching up); the client should retry after `retryAfterS`. */
export class NotReadyError extends AppError {
  constructor(message: string, retryAfterS = 1) {
    super('NOT_READY', message, { retryAfterS });
  }
}

/** A dependency this operation needs (NATS, a worker pool) is not reachable or not running now; retry later. */
export class UnavailableError extends AppError {
  constructor(message: string, options?: { cause?: unknown; retryAfterS?: number }) {
    super('UNAVAILABLE', message, options);
  }
}

/** No route takes this method for this path. */
export class MethodNotAllowedError extends AppError {
  constructor() {
    super('METHOD_NOT_ALLOWED', 'method not allowed');
  }
}

/** The request body is larger than the configured limit. */
export class PayloadTooLargeError extends AppError {
  constructor(limit: number) {
    super('PAYLOAD_TOO_LARGE', `request body exceeds ${limit} bytes`);
  }
}

/** The request body is in a format the endpoint does not take. */
export class UnsupportedMediaTypeError extends AppError {
  constructor(message: string) {
    super('UNSUPPORTED_MEDIA_TYPE', message);
  }
}

/** Narrowing helper for `catch (err: unknown)`. */
export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}

/** A short, log-safe description of any thrown value. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}
