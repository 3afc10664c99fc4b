import { hash, timingSafeEqual } from 'node:crypto';
import { parseBasic } from '../http/basic-auth.js';
import type { FormParams } from '../http/form.js';
import type { ClientConfig } from './tokens-config.js';
import { OAuthError } from './oauth-error.js';

/** Credentials as a client presented them. */
export interface PresentedCredentials {
  readonly clientId: string;
  readonly clientSecret: string;
  readonly method: 'client_secret_basic' | 'client_secret_post';
}

/** The `WWW-Authenticate` challenge sent with a 401 invalid_client. */
export const BASIC_CHALLENGE = 'Basic realm="token", charset="UTF-8"';

/** `sha256:<hex>` of a secret: the form a client's secret is stored in. */
export function hashSecret(secret: string): string {
  return `sha256:${hash('sha256', secret, 'hex')}`;
}

/**
 * Finds the credentials of a token request: HTTP Basic (RFC 6749 §2.3.1, form-urlencoded id and secret) or
 * `client_id`/`client_secret` in the body. Using both is an invalid_request, and so is HTTP Basic with a
 * `client_id` in the body that names another client (which one would the request be for?); neither is
 * `undefined`.
 */
export function presentedCredentials(
  authorization: string | undefined,
  form: FormParams,
): PresentedCredentials | undefined {
  const inBody = form.has('client_secret');
  if (authorization !== undefined) {
    if (inBody) throw new OAuthError('invalid_request', 'use one client authentication method, not two');
    const basic = parseBasic(authorization);
    if (!basic) throw new OAuthError('invalid_client', 'malformed Authorization header');
    let clientId: string;
    let clientSecret: string;
    try {
      clientId = formDecode(basic.user);
      clientSecret = formDecode(basic.password);
    } catch {
      throw new OAuthError('invalid_client', 'malformed Authorization header');
    }
    const named = form.get('client_id');
    if (named !== null && named !== clientId) {
      throw new OAuthError('invalid_request', 'client_id does not match the authenticated client');
    }
    return { clientId, clientSecret, method: 'client_secret_basic' };
  }
  if (inBody) {
    return {
      clientId: form.get('client_id') ?? '',
      clientSecret: form.get('client_secret') ?? '',
      method: 'client_secret_post',
    };
  }
  return undefined;
}

/** Decodes a form-urlencoded value (`+` is a space); a plain value, the usual case, is returned as it is. */
function formDecode(value: string): string {
  if (!value.includes('%') && !value.includes('+')) return value;
  return decodeURIComponent(value.replace(/\+/g, ' '));
}

/**
 * The configured clients, looked up by id, with secrets compared as SHA-256 digests in constant time. An unknown
 * id costs the same comparison as a wrong secret, so timing tells nothing about which ids exist.
 */
export class ClientRegistry {
  readonly #clients: Map<string, { config: ClientConfig; digest: Buffer }>;
  readonly #decoy = Buffer.alloc(32);

  constructor(clients: readonly ClientConfig[]) {
    this.#clients = new Map(
      clients.map((c) => [
        c.id,
        { config: c, digest: Buffer.from(c.secretHash.slice('sha256:'.length), 'hex') },
      ]),
    );
  }

  /** The client whose id and secret match; throws invalid_client otherwise. */
  authenticate(credentials: PresentedCredentials): ClientConfig {
    const entry = this.#clients.get(credentials.clientId);
    // One-shot hashing: a Hash object per request costs more than the digest itself.
    const presented = hash('sha256', credentials.clientSecret, 'buffer');
    const matches = timingSafeEqual(presented, entry?.digest ?? this.#decoy);
    if (!entry || !matches) throw new OAuthError('invalid_client', 'client authentication failed');
    return entry.config;
  }
}
