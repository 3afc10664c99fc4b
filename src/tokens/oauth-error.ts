import { AppError, type OAuthErrorCode } from '../errors.js';

/**
 * An error the token endpoint reports as RFC 6749 §5.2 describes: its code (from the one {@link ErrorCode} union)
 * becomes the body's `error`, its message the `error_description`, and its status comes from the one table in
 * `src/http/errors.ts`. The description is written for the client and never carries internals.
 */
export class OAuthError extends AppError {
  declare readonly code: OAuthErrorCode;

  constructor(
    code: OAuthErrorCode,
    description: string,
    /** `retryAfterS`: for `temporarily_unavailable`, seconds the client should wait, when known. */
    options?: { cause?: unknown; retryAfterS?: number },
  ) {
    super(code, description, options);
  }
}
export type { OAuthErrorCode } from '../errors.js';
