import { errors as joseErrors } from 'jose';
import { OAuthError } from './oauth-error.js';
import { ProviderUnavailableError, UnknownKeyError, UnusableKeyError } from './remote-jwks.js';

/**
 * Maps a verification failure of a presented token (`subject_token`, or the `actor_token` of a delegation) to
 * its RFC 8693 §2.2.2 error, naming that parameter: one mapping for both, so the two can never drift apart. An
 * {@link OAuthError} raised while reading the token speaks of the subject token; for an actor token it is
 * renamed.
 */
export function presentedTokenError(err: unknown, param: 'subject_token' | 'actor_token'): OAuthError {
  if (err instanceof OAuthError) {
    return param === 'actor_token' && err.message.startsWith('subject_token')
      ? new OAuthError(err.code, err.message.replace('subject_token', 'actor_token'), { cause: err })
      : err;
  }
  if (err instanceof ProviderUnavailableError) {
    return new OAuthError('temporarily_unavailable', 'identity provider keys are unavailable', {
      cause: err,
      retryAfterS: err.retryAfterS,
    });
  }
  if (err instanceof UnknownKeyError) return new OAuthError('invalid_request', `${param} key is unknown`);
  if (err instanceof UnusableKeyError) {
    return new OAuthError('invalid_request', `${param} key does not fit its algorithm`);
  }
  if (err instanceof joseErrors.JWTExpired) return new OAuthError('invalid_request', `${param} has expired`);
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    return new OAuthError('invalid_request', `${param} "${err.claim}" claim check failed`);
  }
  if (err instanceof joseErrors.JOSEError) return new OAuthError('invalid_request', `${param} is invalid`);
  return new OAuthError('server_error', 'internal error', { cause: err });
}
