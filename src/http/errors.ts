import type { ErrorCode } from '../errors.js';
import { isAppError, UnauthorizedError } from '../errors.js';

/** The one table from error codes to HTTP statuses, for both capabilities and the token endpoint's OAuth errors. */
const STATUS: Record<ErrorCode, number> = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  TIMEOUT: 503,
  STORAGE_UNAVAILABLE: 503,
  STORAGE_DATA_REJECTED: 500,
  ACTOR_STOPPED: 503,
  NOT_READY: 503,
  PROVIDER_UNAVAILABLE: 503,
  FETCH_FAILED: 502,
  UNKNOWN_KEY: 400,
  UNUSABLE_KEY: 400,
  PROOF_FAILED: 400,
  UNAVAILABLE: 503,
  UNCONFIRMED: 503,
  BACKUP_REFUSED: 502,
  PEER_UNREACHABLE: 502,
  MALFORMED_MESSAGE: 400,
  MESSAGE_UNAUTHENTICATED: 401,
  OUTBOX_UNREADABLE: 500,
  CONFIG_INVALID: 500,
  invalid_request: 400,
  invalid_client: 401,
  invalid_grant: 400,
  unauthorized_client: 400,
  unsupported_grant_type: 400,
  invalid_scope: 400,
  invalid_target: 400,
  temporarily_unavailable: 503,
  server_error: 500,
};

/** The HTTP status an error code answers with. */
export function httpStatus(code: ErrorCode): number {
  return STATUS[code];
}

/** A JSON error body: a stable lower-case code and a message safe to show (never a stack trace). */
export interface ErrorBody {
  readonly error: string;
  readonly message: string;
}

/**
 * Maps any thrown value to a status, headers and body. Only {@link AppError}s reveal their message; anything else
 * is an internal error whose details stay in the log. A credentials error carries its challenge, a temporary one
 * its `Retry-After`.
 */
export function toErrorResponse(err: unknown): {
  status: number;
  headers: Record<string, string>;
  body: ErrorBody;
} {
  if (!isAppError(err)) {
    return { status: 500, headers: {}, body: { error: 'internal_error', message: 'internal error' } };
  }
  const headers: Record<string, string> = {};
  if (err instanceof UnauthorizedError) headers['www-authenticate'] = err.challenge;
  if (err.retryAfterS !== undefined) headers['retry-after'] = String(err.retryAfterS);
  return { status: STATUS[err.code], headers, body: { error: err.code.toLowerCase(), message: err.message } };
}
