import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { PayloadTooLargeError } from '../errors.js';
import { Form } from '../http/form.js';
import type { HttpResponse, Route } from '../http/server.js';
import type { SigningAlg } from '../keys/public-key.js';
import { BASIC_CHALLENGE } from './client-auth.js';
import { OAuthError } from './oauth-error.js';
import { GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE, type TokenService } from './token-service.js';

/** Token responses are never cached (RFC 6749 §5.1). */
const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' } as const;

/** Turns an OAuthError (or anything else) into the RFC 6749 §5.2 response. */
export function oauthErrorResponse(err: unknown, log: Logger): HttpResponse {
  let error: OAuthError;
  if (err instanceof OAuthError) error = err;
  else if (err instanceof PayloadTooLargeError) {
    return {
      status: 413,
      headers: { ...NO_STORE, connection: 'close' },
      json: { error: 'invalid_request', error_description: err.message },
    };
  } else error = new OAuthError('server_error', 'internal error', { cause: err });
  if (error.code === 'server_error') log.error({ err: error.cause ?? error }, 'token request failed');
  const headers: Record<string, string> = { ...NO_STORE };
  if (error.code === 'invalid_client') headers['www-authenticate'] = BASIC_CHALLENGE;
  if (error.code === 'temporarily_unavailable') headers['retry-after'] = String(error.retryAfterS ?? 5);
  return { status: error.status, headers, json: { error: error.code, error_description: error.message } };
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
}

/** `POST /token` and `GET /.well-known/openid-configuration`. */
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
  return [
    {
      method: 'POST',
      path: '/token',
      handler: async (req) => {
        try {
          if (!isForm(req.headers['content-type'])) {
            throw new OAuthError('invalid_request', 'content type must be application/x-www-form-urlencoded');
          }
          const form = new Form((await req.body()).toString('utf8'));
          const response = await o.service.handle(form, req.headers.authorization);
          issued.inc({
            grant: form.get('grant_type') === GRANT_TOKEN_EXCHANGE ? 'token_exchange' : 'client_credentials',
          });
          return { status: 200, headers: NO_STORE, json: response };
        } catch (err) {
          const response = oauthErrorResponse(err, o.log);
          refused.inc({ error: (response.json as { error: string }).error });
          return response;
        }
      },
    },
    {
      method: 'GET',
      path: '/.well-known/openid-configuration',
      handler: () => {
        const issuer = o.issuer();
        return {
          status: 200,
          headers: { 'cache-control': 'public, max-age=3600' },
          json: {
            issuer,
            token_endpoint: `${issuer}/token`,
            jwks_uri: `${issuer}/.well-known/jwks.json`,
            grant_types_supported: [GRANT_TOKEN_EXCHANGE, GRANT_CLIENT_CREDENTIALS],
            token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
            response_types_supported: [],
            // The algorithm of every token this service signs (access tokens, not ID tokens; the OIDC field is
            // kept because discovery clients expect it).
            id_token_signing_alg_values_supported: [o.alg],
            token_endpoint_auth_signing_alg_values_supported: [o.alg],
          },
        };
      },
    },
  ];
}
