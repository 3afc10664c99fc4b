/** The error codes of RFC 6749 §5.2 and RFC 8693 §2.2.2 this service answers with, plus the two HTTP-level ones. */
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

const STATUS: Record<OAuthErrorCode, number> = {
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

/**
 * An error the token endpoint reports as RFC 6749 §5.2 describes: a JSON body with `error` and
 * `error_description`. The description is written for the client and never carries internals.
 */
export class OAuthError extends Error {
  readonly code: OAuthErrorCode;
  /** For `temporarily_unavailable`: seconds the client should wait (`Retry-After`), when known. */
  readonly retryAfterS: number | undefined;

  constructor(
    code: OAuthErrorCode,
    description: string,
    options?: { cause?: unknown; retryAfterS?: number },
  ) {
    super(description, options);
    this.code = code;
    this.name = 'OAuthError';
    this.retryAfterS = options?.retryAfterS;
  }

  /** The HTTP status of this code (401 for invalid_client, 503 when temporarily unavailable, else 400/500). */
  get status(): number {
    return STATUS[this.code];
  }
}
