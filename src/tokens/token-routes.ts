import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { PayloadTooLargeError } from '../errors.js';
import { httpStatus } from '../http/errors.js';
import { Form } from '../http/form.js';
import type { HttpResponse, Route } from '../http/server.js';
import type { SigningAlg } from '../keys/public-key.js';
import { RequestIds, type TokenAudit, type TokenDecision } from './audit.js';
import { BASIC_CHALLENGE } from './client-auth.js';
import { OAuthError } from './oauth-error.js';
import {
  GRANT_CLIENT_CREDENTIALS,
  GRANT_TOKEN_EXCHANGE,
  ISSUABLE_TYPES,
  SUBJECT_TOKEN_TYPES,
  type TokenService,
} from './token-service.js';

/** Token responses are never cached (RFC 6749 §5.1). */
const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' } as const;

/**
 * Turns a thrown error into the RFC 6749 §5.2 response: an {@link OAuthError}'s code as it is, an oversized body
 * as `invalid_request` with 413, anything else as `server_error` (logged, never shown). Statuses come from the
 * one table.
 */
function oauthErrorResponse(err: unknown, log: Logger): HttpResponse {
  let error: OAuthError;
  if (err instanceof OAuthError) error = err;
  else if (err instanceof PayloadTooLargeError) {
    return {
      status: httpStatus(err.code),
      headers: { ...NO_STORE, connection: 'close' },
      json: { error: 'invalid_request', error_description: err.message },
    };
  } else error = new OAuthError('server_error', 'internal error', { cause: err });
  if (error.code === 'server_error') log.error({ err: error.cause ?? error }, 'token request failed');
  const headers: Record<string, string> = { ...NO_STORE };
  if (error.code === 'invalid_client') headers['www-authenticate'] = BASIC_CHALLENGE;
  if (error.code === 'temporarily_unavailable') headers['retry-after'] = String(error.retryAfterS ?? 5);
  return {
    status: httpStatus(error.code),
    headers,
    json: { error: error.code, error_description: error.message },
  };
}

const FORM = 'application/x-www-form-urlencoded';

/** Whether a Content-Type names a form, with or without parameters, in any case. */
function isForm(contentType: string | undefined): boolean {
  return contentType === FORM || (contentType ?? '').split(';')[0]?.trim().toLowerCase() === FORM;
}

/** Settings of {@link tokenRoutes}. */
export interface TokenRoutesOptions {
  readonly service: TokenService;
  readonly issuer: () => string;
  readonly alg: SigningAlg;
  readonly registry: Registry;
  readonly log: Logger;
  /** Where every token decision is recorded; absent: no audit log. */
  readonly audit?: TokenAudit;
}

/** The grant's short name, for metrics and the audit log. */
function grantName(grantType: string | null): string | undefined {
  if (grantType === GRANT_TOKEN_EXCHANGE) return 'token_exchange';
  if (grantType === GRANT_CLIENT_CREDENTIALS) return 'client_credentials';
  return grantType === null ? undefined : 'unsupported';
}

/** `POST /token`, and the server metadata at `/.well-known/openid-configuration` and (RFC 8414) `/.well-known/oauth-authorization-server`. */
export function tokenRoutes(o: TokenRoutesOptions): Route[] {
  const issued = new Counter({
    name: 'tokens_issued_total',
    help: 'Tokens issued, by grant type.',
    labelNames: ['grant'] as const,
    registers: [o.registry],
  });
  const refused = new Counter({
    name: 'token_errors_total',
    help: 'Token requests refused, by OAuth error code.',
    labelNames: ['error'] as const,
    registers: [o.registry],
  });
  const requestIds = new RequestIds();
  const audit = o.audit;
  return [
    {
      method: 'POST',
      path: '/token',
      handler: async (req) => {
        const decision: TokenDecision = {};
        try {
          if (!isForm(req.headers['content-type'])) {
            throw new OAuthError('invalid_request', 'content type must be application/x-www-form-urlencoded');
          }
          const form = new Form((await req.body()).toString('utf8'));
          decision.grant = grantName(form.get('grant_type'));
          const response = await o.service.handle(form, req.headers.authorization, decision);
          issued.inc({
            grant: decision.grant === 'token_exchange' ? 'token_exchange' : 'client_credentials',
          });
          audit?.record(requestIds.of(req.headers), decision);
          return { status: 200, headers: NO_STORE, json: response };
        } catch (err) {
          const response = oauthErrorResponse(err, o.log);
          const { error } = response.json as { error: string };
          refused.inc({ error });
          audit?.record(requestIds.of(req.headers), decision, error);
          return response;
        }
      },
    },
    ...[OIDC_DISCOVERY_PATH, OAUTH_METADATA_PATH].map((path): Route => ({
      method: 'GET',
      path,
      handler: () => ({
        status: 200,
        headers: { 'cache-control': `public, max-age=${METADATA_MAX_AGE_S}` },
        json: serverMetadata(o.issuer(), o.alg),
      }),
    })),
  ];
}

/** OpenID Connect discovery (OIDC Discovery 1.0 §4). */
const OIDC_DISCOVERY_PATH = '/.well-known/openid-configuration';
/** OAuth 2.0 authorization server metadata (RFC 8414 §3). */
const OAUTH_METADATA_PATH = '/.well-known/oauth-authorization-server';
/**
 * How long clients may cache the metadata: it changes only with a restart under new settings, and it names the
 * JWKS URI rather than the keys, so rotation never makes a cached copy wrong.
 */
const METADATA_MAX_AGE_S = 3600;

/**
 * The one metadata document served at both well-known paths, so an OIDC discovery client and an RFC 8414 client
 * read the same facts. Members RFC 8414 §2 registers come first; `id_token_signing_alg_values_supported` is OIDC's
 * name for the algorithm this service signs every token with (access tokens, not ID tokens, but discovery clients
 * look there). No registered member names token exchange's token types, so they appear under names of our own,
 * as RFC 8414 §2 allows.
 */
function serverMetadata(issuer: string, alg: SigningAlg): Record<string, unknown> {
  return {
    issuer,
    token_endpoint: `${issuer}/token`,
    jwks_uri: `${issuer}/.well-known/jwks.json`,
    grant_types_supported: [GRANT_TOKEN_EXCHANGE, GRANT_CLIENT_CREDENTIALS],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    // No authorization endpoint: RFC 8414 requires the member, and an empty list says no response type is served.
    response_types_supported: [],
    id_token_signing_alg_values_supported: [alg],
    token_exchange_subject_token_types_supported: [...SUBJECT_TOKEN_TYPES],
    token_exchange_requested_token_types_supported: [...ISSUABLE_TYPES],
  };
}
