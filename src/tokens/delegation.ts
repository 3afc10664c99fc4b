import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import type { FormParams } from '../http/form.js';
import type { PublicKey } from '../keys/public-key.js';
import { OAuthError } from './oauth-error.js';
import { presentedTokenError } from './token-errors.js';
import type { RemoteJwks } from './remote-jwks.js';
import type { SignatureProof } from './signing-protocol.js';
import {
  checkClaims,
  checkHeader,
  readCompactJwt,
  type ClaimChecks,
  type CompactJwt,
} from './subject-token.js';
import type { ClientConfig, ProviderConfig } from './tokens-config.js';

/** Token types an actor token may be (RFC 8693 §3): JWTs, as subject tokens are. */
const ACTOR_TOKEN_TYPES = new Set([
  'urn:ietf:params:oauth:token-type:jwt',
  'urn:ietf:params:oauth:token-type:access_token',
  'urn:ietf:params:oauth:token-type:id_token',
]);
/** The algorithms this service signs with, the only ones its own tokens can carry. */
const OWN_ALGORITHMS = ['ES256', 'EdDSA', 'RS256'] as const;
/** Public keys of our own, imported once; a handful live at a time, so the cache is small. */
const OWN_KEY_CACHE = 32;

/** An actor token read up to, not including, its signature and claims (the same stage as a subject token). */
export interface ActorToken {
  readonly jwt: CompactJwt;
  /** Its signature, to be verified in the signing worker in the same task as the subject token's. */
  readonly proof: SignatureProof;
  /** What its claims must satisfy, but for the time, given when they are checked. */
  readonly checks: Omit<ClaimChecks, 'now'>;
  /** The client the token was issued to, when it is one of ours (it may be presented only by that client). */
  readonly ownClient: string | null;
}

/** Where actor tokens may come from. */
export interface DelegationOptions {
  /** The configured provider whose `issuer` this is, with its key cache. */
  readonly provider: (
    iss: string,
  ) => { readonly config: ProviderConfig; readonly jwks: RemoteJwks } | undefined;
  /** This service's issuer: a token of ours may be an actor token too. */
  readonly issuer: () => string;
  /** One of our own unexpired public keys, by `kid` (the key store); undefined when unknown. */
  readonly ownKey: (kid: string) => Promise<PublicKey | undefined>;
  readonly skewS: number;
}

/**
 * The `actor_token` of a token exchange request (RFC 8693 §2.1), or undefined when there is none. Its type is
 * required with it and refused without it (invalid_request).
 */
export function actorTokenParam(form: FormParams): string | undefined {
  const token = form.get('actor_token');
  const type = form.get('actor_token_type');
  if (!token) {
    if (type !== null || token !== null) {
      throw new OAuthError('invalid_request', 'actor_token_type must come with a non-empty actor_token');
    }
    return undefined;
  }
  if (!type) throw new OAuthError('invalid_request', 'actor_token_type is required with actor_token');
  if (!ACTOR_TOKEN_TYPES.has(type))
    throw new OAuthError('invalid_request', 'actor_token_type is not supported');
  return token;
}

/**
 * The client of an exchange with an actor, which must have authenticated (invalid_client otherwise) and be
 * configured with `mayDelegate` (unauthorized_client otherwise).
 */
export function delegatingClient(client: ClientConfig | undefined): ClientConfig {
  if (!client) throw new OAuthError('invalid_client', 'client authentication is required for delegation');
  if (client.mayDelegate !== true) throw new OAuthError('unauthorized_client', 'client may not delegate');
  return client;
}

/**
 * Delegation (RFC 8693 §1.1, §2.1, §4.1, §4.4): reads actor tokens, which come from a configured provider that
 * allows delegation, or from this service itself (checked against our own keys), and computes the `act` claim of
 * the token issued to the actor on the subject's behalf.
 */
export class Delegation {
  readonly #o: DelegationOptions;
  readonly #ownKeys = new Map<string, KeyObject>();

  constructor(options: DelegationOptions) {
    this.#o = options;
  }

  /**
   * Reads an actor token as a subject token is read (well-formed compact JWS, trusted issuer, allowed algorithm,
   * a key that issuer publishes), refusing with RFC 8693's invalid_request. `subject` is the provider of the
   * subject token, which must allow delegation; `client` the authenticated client.
   */
  async read(token: string, subject: ProviderConfig, client: ClientConfig): Promise<ActorToken> {
    if (subject.allowDelegation !== true) {
      throw new OAuthError('invalid_request', 'subject_token issuer does not allow delegation');
    }
    const jwt = readCompactJwt(token);
    if (!jwt) throw new OAuthError('invalid_request', 'actor_token is not a well-formed JWT');
    const { iss } = jwt.claims;
    if (typeof iss !== 'string') throw new OAuthError('invalid_request', 'actor_token issuer is not trusted');
    try {
      if (iss === this.#o.issuer()) return await this.#readOwn(jwt, iss, client);
      const provider = this.#o.provider(iss);
      if (!provider) throw new OAuthError('invalid_request', 'actor_token issuer is not trusted');
      if (provider.config.allowDelegation !== true) {
        throw new OAuthError('invalid_request', 'actor_token issuer does not allow delegation');
      }
      const { alg, kid } = checkHeader(jwt.header, provider.config.algorithms);
      const key = await provider.jwks.getKey(kid, alg);
      return {
        jwt,
        proof: { key, alg, signingInput: jwt.signingInput, signature: jwt.signature },
        checks: {
          issuer: iss,
          audience: provider.config.audiences,
          clockTolerance: this.#o.skewS,
          requiredClaims: ['exp', 'sub'],
        },
        ownClient: null,
      };
    } catch (err) {
      throw presentedTokenError(err, 'actor_token');
    }
  }

  /** A token this service issued: one of our unexpired keys, by `kid`, in its own algorithm. */
  async #readOwn(jwt: CompactJwt, iss: string, client: ClientConfig): Promise<ActorToken> {
    const { alg, kid } = checkHeader(jwt.header, OWN_ALGORITHMS);
    const publicKey = kid === undefined ? undefined : await this.#o.ownKey(kid);
    if (!publicKey) throw new OAuthError('invalid_request', 'actor_token key is unknown');
    if (publicKey.alg !== alg)
      throw new OAuthError('invalid_request', 'actor_token key does not fit its algorithm');
    const { aud } = jwt.claims;
    return {
      jwt,
      proof: {
        key: this.#ownKeyObject(publicKey),
        alg,
        signingInput: jwt.signingInput,
        signature: jwt.signature,
      },
      checks: {
        issuer: iss,
        // Our tokens are for internal audiences, none of which is this service: any audience it names will do
        // (present, a string or strings), since the token is bound to its client instead (below).
        audience:
          typeof aud === 'string'
            ? [aud]
            : Array.isArray(aud)
              ? aud.filter((a) => typeof a === 'string')
              : [],
        clockTolerance: this.#o.skewS,
        requiredClaims: ['exp', 'sub'],
      },
      ownClient: client.id,
    };
  }

  #ownKeyObject(key: PublicKey): KeyObject {
    let object = this.#ownKeys.get(key.kid);
    if (!object) {
      if (this.#ownKeys.size >= OWN_KEY_CACHE) this.#ownKeys.clear();
      object = createPublicKey({ key: key.jwk as unknown as JsonWebKey, format: 'jwk' });
      this.#ownKeys.set(key.kid, object);
    }
    return object;
  }

  /**
   * The `act` claim for a token issued to `actor` on behalf of the subject whose (claim-checked) payload is
   * `subject`. Checks the actor token's claims, binds a token of ours to the client it was issued to, and honours
   * the subject token's `may_act` (§4.4: when present it must name the actor, by `sub` and by `iss` if it gives
   * one). The actor is named as its token names it, `{ sub, iss }`; a subject token that was itself delegated
   * keeps its `act` nested inside (§4.1). Refusals are invalid_request (§2.2.2); the caller gives them only
   * once both signatures have verified.
   */
  act(subject: Readonly<Record<string, unknown>>, actor: ActorToken, now: number): Record<string, unknown> {
    let claims: Readonly<Record<string, unknown>>;
    try {
      claims = checkClaims(actor.jwt, { ...actor.checks, now });
    } catch (err) {
      throw presentedTokenError(err, 'actor_token');
    }
    const { sub, iss } = claims;
    if (typeof sub !== 'string' || sub.length === 0 || sub.length > 255) {
      throw new OAuthError('invalid_request', 'actor_token has no usable "sub" claim');
    }
    if (actor.ownClient !== null && claims.client_id !== actor.ownClient) {
      throw new OAuthError('invalid_request', 'actor_token was issued to another client');
    }
    // A delegated token names its subject, not the party that acted with it: that party cannot act as its subject.
    if (claims.act !== undefined) {
      throw new OAuthError('invalid_request', 'actor_token is itself a delegated token (it has "act")');
    }
    const mayAct = subject.may_act;
    if (mayAct !== undefined) {
      if (
        !isObject(mayAct) ||
        typeof mayAct.sub !== 'string' ||
        !['string', 'undefined'].includes(typeof mayAct.iss)
      ) {
        throw new OAuthError('invalid_request', 'subject_token "may_act" claim is malformed');
      }
      if (mayAct.sub !== sub || (mayAct.iss !== undefined && mayAct.iss !== iss)) {
        throw new OAuthError('invalid_request', 'subject_token "may_act" does not name the actor');
      }
    }
    const act: Record<string, unknown> = { sub, iss };
    const prior = priorAct(subject);
    if (prior) act.act = prior;
    return act;
  }
}

/**
 * The `act` claim a subject token already carries (it was itself issued to an actor), which the new token keeps;
 * undefined when there is none. One that is not a JSON object is refused.
 */
export function priorAct(subject: Readonly<Record<string, unknown>>): Record<string, unknown> | undefined {
  const { act } = subject;
  if (act === undefined) return undefined;
  if (!isObject(act)) throw new OAuthError('invalid_request', 'subject_token "act" claim is malformed');
  return act;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
