import type { ErrorCode } from '../errors.js';
import { isAppError } from '../errors.js';

/** The one table from error codes to HTTP statuses. */
const STATUS: Record<ErrorCode, number> = {
  BAD_REQUEST: 400,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  TIMEOUT: 503,
  STORAGE_UNAVAILABLE: 503,
  STORAGE_DATA_REJECTED: 500,
  ACTOR_STOPPED: 503,
  CONFIG_INVALID: 500,
};

/** A JSON error body: a stable lower-case code and a message safe to show (never a stack trace). */
export interface ErrorBody {
  readonly error: string;
  readonly message: string;
}

/**
 * Maps any thrown value to a status and body. Only {@link AppError}s reveal their message; anything else is an
 * internal error whose details stay in the log.
 */
export function toErrorResponse(err: unknown): { status: number; body: ErrorBody } {
  if (isAppError(err)) {
    return { status: STATUS[err.code], body: { error: err.code.toLowerCase(), message: err.message } };
  }
  return { status: 500, body: { error: 'internal_error', message: 'internal error' } };
}
