import type { JWTPayload } from 'jose';
import { OAuthError } from './oauth-error.js';
import type { ProviderConfig } from './tokens-config.js';

/** What an external token contributes to an internal one. */
export interface MappedSubject {
  /** The internal subject: the provider's `subjectPrefix` and the value of its `subjectClaim`. */
  readonly sub: string;
  /** Claims copied under their configured names; absent source claims are left out. */
  readonly claims: Readonly<Record<string, unknown>>;
}

/**
 * Maps a verified external payload to the internal subject and claims (T2). A subject claim that is missing,
 * empty, over 255 characters or not a string (or number) makes the token unusable: `invalid_request`.
 */
export function mapSubject(provider: ProviderConfig, payload: JWTPayload): MappedSubject {
  const raw = payload[provider.subjectClaim];
  const value = typeof raw === 'number' && Number.isFinite(raw) ? String(raw) : raw;
  if (typeof value !== 'string' || value.length === 0 || value.length > 255) {
    throw new OAuthError('invalid_request', `subject token has no usable "${provider.subjectClaim}" claim`);
  }
  const claims: Record<string, unknown> = {};
  for (const [target, source] of Object.entries(provider.claims)) {
    if (payload[source] !== undefined) claims[target] = payload[source];
  }
  return { sub: `${provider.subjectPrefix}${value}`, claims };
}

/**
 * The audiences and scopes to issue, from what was requested and what configuration allows. Nothing requested:
 * the first allowed audience, and no scope. Anything requested that is not allowed: `invalid_target` for an
 * audience, `invalid_scope` for a scope.
 */
export function grantTargets(
  requestedAudiences: readonly string[],
  requestedScope: string | undefined,
  allowedAudiences: readonly string[],
  allowedScopes: readonly string[],
): { aud: string[]; scope: string | undefined } {
  const aud = requestedAudiences.length > 0 ? [...new Set(requestedAudiences)] : allowedAudiences.slice(0, 1);
  for (const a of aud) {
    if (!allowedAudiences.includes(a))
      throw new OAuthError('invalid_target', `audience not allowed: ${a.slice(0, 200)}`);
  }
  if (aud.length === 0) throw new OAuthError('invalid_target', 'no audience is allowed for this request');
  const scopes = requestedScope === undefined ? [] : [...new Set(requestedScope.split(' ').filter(Boolean))];
  for (const s of scopes) {
    if (!allowedScopes.includes(s))
      throw new OAuthError('invalid_scope', `scope not allowed: ${s.slice(0, 100)}`);
  }
  return { aud, scope: scopes.length > 0 ? scopes.join(' ') : undefined };
}
