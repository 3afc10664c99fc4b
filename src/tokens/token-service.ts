import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { FormParams } from '../http/form.js';
import type { PublicKey } from '../keys/public-key.js';
import type { TokenDecision } from './audit.js';
import type { ClaimRules } from './claim-rules.js';
import { grantTargets, mapSubject, type MappedSubject } from './claims.js';
import { ClientRegistry, presentedCredentials } from './client-auth.js';
import { actorTokenParam, delegatingClient, Delegation, priorAct, type ActorToken } from './delegation.js';
import { OAuthError } from './oauth-error.js';
import { presentedTokenError } from './token-errors.js';
import type { RemoteJwks } from './remote-jwks.js';
import { ProofFailedError, type Signer } from './signing-pool.js';
import type { Proofs, SignatureProof } from './signing-protocol.js';
import { checkClaims, checkHeader, readCompactJwt, type CompactJwt } from './subject-token.js';
import type { SigningKey } from '../keys/signing-key.js';
import type { ClientConfig, ProviderConfig } from './tokens-config.js';

export const GRANT_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const GRANT_CLIENT_CREDENTIALS = 'client_credentials';
const TOKEN_TYPE_ACCESS = 'urn:ietf:params:oauth:token-type:access_token';
const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';
/** Subject token types an exchange accepts (RFC 8693 §3); the metadata documents list them. */
export const SUBJECT_TOKEN_TYPES: ReadonlySet<string> = new Set([
  TOKEN_TYPE_JWT,
  TOKEN_TYPE_ACCESS,
  'urn:ietf:params:oauth:token-type:id_token',
]);
/** Token types an exchange may be asked to issue (`requested_token_type`); both yield the same access token. */
export const ISSUABLE_TYPES: ReadonlySet<string> = new Set([TOKEN_TYPE_ACCESS, TOKEN_TYPE_JWT]);
/** Claims a subject token must carry besides `iss` and `aud`: a token that never expires is not exchanged. */
const REQUIRED_CLAIMS = ['exp'] as const;
/**
 * The largest signed part (`header.payload`) of a subject token whose claims CEL rules may see before its signature
 * is verified. What a rule costs grows with the claims it walks, and a forged token could bring any claims the
 * body limit lets through: beyond this size the signature is checked first (one more worker task, for such tokens
 * only), so a forged token can make rules walk at most this much. Real tokens are a fraction of it.
 */
export const CEL_UNVERIFIED_MAX_CHARS = 8192;
/** Parameters RFC 8693 lets a request repeat; any other repeated parameter is an invalid_request (RFC 6749 §3.2). */
const REPEATABLE = new Set(['audience', 'resource']);

/** A successful token response (RFC 6749 §5.1, RFC 8693 §2.2.1). */
export interface TokenResponse {
  readonly access_token: string;
  readonly issued_token_type?: string;
  readonly token_type: 'Bearer';
  readonly expires_in: number;
  readonly scope?: string;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** A provider and its key cache. */
export interface Provider {
  readonly config: ProviderConfig;
  readonly jwks: RemoteJwks;
}

/** Collaborators and settings of {@link TokenService}. */
export interface TokenServiceOptions {
  /** This service's issuer URL (resolved once the listener is bound). */
  readonly issuer: () => string;
  readonly providers: readonly Provider[];
  readonly clients: readonly ClientConfig[];
  readonly signer: Signer;
  /** The key to sign with now; undefined before the first key exists. */
  readonly activeKey: () => SigningKey | undefined;
  readonly clock: Clock;
  readonly skewS: number;
  readonly defaultTtlS: number;
  /**
   * One of this service's unexpired public keys by `kid` (the key store), to verify actor tokens we issued; by
   * default only the active key's.
   */
  readonly ownKey?: (kid: string) => Promise<PublicKey | undefined>;
}

/**
 * The token endpoint's logic, free of HTTP: RFC 8693 token exchange of external providers' JWTs, and
 * client_credentials service tokens. Every refusal is an {@link OAuthError} with the RFC's code.
 */
export class TokenService {
  readonly #o: TokenServiceOptions;
  readonly #providers: Map<string, Provider>;
  readonly #clients: ClientRegistry;
  readonly #delegation: Delegation;

  constructor(options: TokenServiceOptions) {
    this.#o = options;
    this.#providers = new Map(options.providers.map((p) => [p.config.issuer, p]));
    this.#clients = new ClientRegistry(options.clients);
    const activeKey = (kid: string) => {
      const key = options.activeKey();
      return Promise.resolve(key?.kid === kid ? key.publicKey : undefined);
    };
    this.#delegation = new Delegation({
      provider: (iss) => this.#providers.get(iss),
      issuer: options.issuer,
      // The active key is looked up in memory first: most actor tokens of ours were signed with it.
      ownKey: options.ownKey ? async (kid) => (await activeKey(kid)) ?? options.ownKey?.(kid) : activeKey,
      skewS: options.skewS,
    });
  }

  /**
   * Handles one token request: its form parameters and its Authorization header. What it establishes on the way
   * (client, provider, subjects, what was granted) is noted in `decision`, for the audit log.
   */
  async handle(
    form: FormParams,
    authorization: string | undefined,
    decision: TokenDecision = {},
  ): Promise<TokenResponse> {
    refuseRepeated(form);
    const grantType = form.get('grant_type');
    if (!grantType) throw new OAuthError('invalid_request', 'grant_type is required');
    const credentials = presentedCredentials(authorization, form);
    const client = credentials ? this.#clients.authenticate(credentials) : undefined;
    if (client) decision.clientId = client.id;
    switch (grantType) {
      case GRANT_TOKEN_EXCHANGE:
        return this.#exchange(form, client, decision);
      case GRANT_CLIENT_CREDENTIALS:
        if (!client) throw new OAuthError('invalid_client', 'client authentication is required');
        return this.#clientCredentials(form, client, decision);
      default:
        throw new OAuthError('unsupported_grant_type', 'grant_type is not supported');
    }
  }

  #clientCredentials(
    form: FormParams,
    client: ClientConfig,
    decision: TokenDecision,
  ): Promise<TokenResponse> {
    if (!client.grants.includes('client_credentials')) {
      throw new OAuthError('unauthorized_client', 'client may not use client_credentials');
    }
    const { aud, scope } = grantTargets(
      [...form.getAll('audience'), ...form.getAll('resource')],
      form.get('scope') ?? undefined,
      client.audiences,
      client.scopes,
    );
    return this.#issue(decision, { sub: client.id, client_id: client.id }, aud, scope, client.tokenTtlS);
  }

  async #exchange(
    form: FormParams,
    client: ClientConfig | undefined,
    decision: TokenDecision,
  ): Promise<TokenResponse> {
    if (client && !client.grants.includes('token_exchange')) {
      throw new OAuthError('unauthorized_client', 'client may not use token exchange');
    }
    const subjectToken = form.get('subject_token');
    const subjectTokenType = form.get('subject_token_type');
    if (!subjectToken) throw new OAuthError('invalid_request', 'subject_token is required');
    if (!subjectTokenType) throw new OAuthError('invalid_request', 'subject_token_type is required');
    if (!SUBJECT_TOKEN_TYPES.has(subjectTokenType)) {
      throw new OAuthError('invalid_request', 'subject_token_type is not supported');
    }
    const actorToken = actorTokenParam(form);
    const delegator = actorToken === undefined ? undefined : delegatingClient(client);
    const requestedType = form.get('requested_token_type') ?? TOKEN_TYPE_ACCESS;
    if (!ISSUABLE_TYPES.has(requestedType)) {
      throw new OAuthError('invalid_request', 'requested_token_type is not supported');
    }

    const { provider, jwt, proof } = await this.#readSubject(subjectToken);
    decision.provider = provider.config.name;
    if (!client && provider.config.requireClientAuthentication) {
      throw new OAuthError('invalid_client', 'client authentication is required to exchange these tokens');
    }
    // Delegation (RFC 8693 §2.1): the actor token's signature is checked in the same worker task as the subject's.
    const actor =
      actorToken === undefined || !delegator
        ? undefined
        : await this.#delegation.read(actorToken, provider.config, delegator);
    const proofs: Proofs = actor ? [proof, actor.proof] : proof;
    const rules = provider.config.rules;
    // Verified here only when the rules must not see the claims before (see CEL_UNVERIFIED_MAX_CHARS).
    const verified = !rules.empty && jwt.signingInput.length > CEL_UNVERIFIED_MAX_CHARS;
    if (verified && !(await this.#o.signer.check(proofs))) throw await this.#forged(decision, proof, actor);
    let claims: Record<string, unknown>;
    let targets: { aud: string[]; scope: string | undefined };
    // The subject enters the audit record only once the signature is known to hold.
    let mapped: MappedSubject | undefined;
    try {
      const payload = checkClaims(jwt, {
        issuer: provider.config.issuer,
        audience: provider.config.audiences,
        clockTolerance: this.#o.skewS,
        requiredClaims: REQUIRED_CLAIMS,
        now: this.#o.clock.now(),
      });
      mapped = mapSubject(provider.config, payload);
      claims = Object.assign({}, mapped.claims, { sub: mapped.sub, idp: provider.config.name });
      applyClaimRules(rules, payload, claims);
      this.#delegate(payload, actor, claims);
      targets = grantTargets(
        [...form.getAll('audience'), ...form.getAll('resource')],
        form.get('scope') ?? undefined,
        client
          ? provider.config.targetAudiences.filter((a) => client.audiences.includes(a))
          : provider.config.targetAudiences,
        client ? provider.config.scopes.filter((s) => client.scopes.includes(s)) : provider.config.scopes,
      );
    } catch (err) {
      // A forged token learns that it is forged, never which claims, audiences or scopes would pass (jwtVerify
      // too checks the signature before the claims). This costs a signature check on refusals only.
      if (!verified && !(await this.#o.signer.check(proofs)))
        throw await this.#forged(decision, proof, actor);
      if (mapped) noteSubject(decision, provider.config, mapped);
      throw presentedTokenError(err, 'subject_token');
    }
    claims.client_id = exchangeClientId(provider.config, client);
    const ttl = provider.config.tokenTtlS ?? client?.tokenTtlS;
    try {
      const issued = await this.#issue(
        decision,
        claims,
        targets.aud,
        targets.scope,
        ttl,
        requestedType,
        proofs,
      );
      // Issued: the worker verified the signature before it signed.
      noteSubject(decision, provider.config, mapped);
      return issued;
    } catch (err) {
      if (err instanceof ProofFailedError) throw await this.#forged(decision, proof, actor);
      throw err;
    }
  }

  /**
   * The `act` claim (RFC 8693 §4.1): naming the actor when there is one, with the subject token's own `act`
   * nested inside; a subject token's `act` is kept as it is otherwise, so a delegated token never loses its chain.
   */
  #delegate(
    payload: Readonly<Record<string, unknown>>,
    actor: ActorToken | undefined,
    claims: Record<string, unknown>,
  ): void {
    if (actor) claims.act = this.#delegation.act(payload, actor, this.#o.clock.now());
    else if (payload.act !== undefined) claims.act = priorAct(payload);
  }

  /** Which token of a refused exchange is forged: the subject's unless only the actor's signature fails. */
  async #forged(
    decision: TokenDecision,
    subject: SignatureProof,
    actor: ActorToken | undefined,
  ): Promise<OAuthError> {
    if (actor && (await this.#o.signer.check(subject))) {
      return new OAuthError('invalid_request', 'actor_token signature is invalid');
    }
    return invalidSignature(decision);
  }

  /**
   * Reads a subject token up to, not including, its signature and claims (T2), refusing what jwtVerify refuses
   * before it checks a signature: a token that is not a well-formed compact JWS, an issuer that is not a
   * configured provider, an algorithm outside the provider's allow-list, a key the provider does not publish or
   * that does not fit the algorithm. The signature becomes a proof that the signing worker verifies before it
   * signs anything, so an exchange crosses to the worker once and the main thread never runs the costly
   * verification.
   */
  async #readSubject(token: string): Promise<{ provider: Provider; jwt: CompactJwt; proof: SignatureProof }> {
    const jwt = readCompactJwt(token);
    if (!jwt) throw new OAuthError('invalid_request', 'subject_token is not a well-formed JWT');
    const { iss } = jwt.claims;
    const provider = typeof iss === 'string' ? this.#providers.get(iss) : undefined;
    if (!provider) throw new OAuthError('invalid_request', 'subject_token issuer is not trusted');
    try {
      const { alg, kid } = checkHeader(jwt.header, provider.config.algorithms);
      const key = await provider.jwks.getKey(kid, alg);
      return { provider, jwt, proof: { key, alg, signingInput: jwt.signingInput, signature: jwt.signature } };
    } catch (err) {
      throw presentedTokenError(err, 'subject_token');
    }
  }

  /**
   * Signs a token carrying `claims` and the registered claims, and builds the token response. Objects here are
   * built with `Object.assign` rather than object spread: on Node 20 a spread followed by more properties takes a
   * slow path that cost several microseconds per token (measured), which on this hot path is a tenth of a request.
   */
  #issue(
    decision: TokenDecision,
    claims: Record<string, unknown>,
    aud: string[],
    scope: string | undefined,
    ttlS: number | undefined,
    issuedTokenType?: string,
    proof?: Proofs,
  ): Promise<TokenResponse> {
    const key = this.#o.activeKey();
    if (!key) return Promise.reject(new OAuthError('temporarily_unavailable', 'no signing key yet'));
    const nowS = Math.floor(this.#o.clock.now() / 1000);
    // A token never outlives its key's published expiry (less the skew verifiers are granted).
    const keyLimitS = Math.floor(key.publicKey.expiresAt / 1000) - this.#o.skewS;
    const exp = Math.min(nowS + (ttlS ?? this.#o.defaultTtlS), keyLimitS);
    // The registered claims win over anything mapped (configuration forbids mapping onto them anyway).
    const payload: Record<string, unknown> = Object.assign({}, claims, {
      iss: this.#o.issuer(),
      aud: aud.length === 1 ? aud[0] : aud,
      iat: nowS,
      nbf: nowS,
      exp,
      jti: randomUUID(),
    });
    if (scope !== undefined) payload.scope = scope;
    return this.#o.signer.sign(key, payload, proof).then((token) => {
      noteIssued(decision, payload, key.kid);
      const response: Mutable<TokenResponse> = {
        access_token: token,
        token_type: 'Bearer',
        expires_in: exp - nowS,
      };
      if (issuedTokenType !== undefined) response.issued_token_type = issuedTokenType;
      if (scope !== undefined) response.scope = scope;
      return response;
    });
  }
}

/**
 * A provider's CEL claim rules (E5) on a subject token's claims: every validation rule must hold, then each
 * mapping adds its claim to `claims`. Called where claim refusals wait for the signature check, so a forged
 * token never learns which rule it broke.
 */
function applyClaimRules(
  rules: ClaimRules,
  payload: Readonly<Record<string, unknown>>,
  claims: Record<string, unknown>,
): void {
  if (rules.empty) return;
  rules.validate(payload);
  rules.map(payload, claims);
}

/**
 * Refuses a repeated parameter unless RFC 8693 lets it repeat (RFC 6749 §3.2), in one pass: a body of thousands
 * of parameters costs linear time, not a comparison of every pair.
 */
function refuseRepeated(form: FormParams): void {
  const seen = new Set<string>();
  for (const name of form.keys()) {
    if (!seen.has(name)) seen.add(name);
    else if (!REPEATABLE.has(name)) {
      throw new OAuthError('invalid_request', `parameter "${name.slice(0, 50)}" is repeated`);
    }
  }
}

/**
 * Notes the subject of an exchange once its signature is known to hold: a refusal after the worker's check, or
 * an issued token. A refusal that never reached the check (no signing key yet, a failing pool) records no
 * subject, so an unverified token never names one in the audit log. The external subject is the internal one
 * without the provider's prefix.
 */
function noteSubject(decision: TokenDecision, provider: ProviderConfig, mapped: MappedSubject): void {
  decision.subject = mapped.sub;
  decision.externalSubject = mapped.sub.slice(provider.subjectPrefix.length);
}

/** Notes what an issued token says (RFC 9068's claims and the key that signed it). */
function noteIssued(decision: TokenDecision, payload: Record<string, unknown>, kid: string): void {
  decision.clientId = payload.client_id as string;
  decision.subject = payload.sub as string;
  decision.audience = payload.aud as string | string[];
  decision.scope = payload.scope as string | undefined;
  decision.jti = payload.jti as string;
  decision.kid = kid;
}

/**
 * The `client_id` of an exchanged token (RFC 9068 §2.2 requires one): the authenticated client, or, when none
 * authenticated, `idp:` and the provider's name. A configured client id cannot contain `:`, so a resource server
 * can never mistake an unauthenticated exchange for a client's request.
 */
function exchangeClientId(provider: ProviderConfig, client: ClientConfig | undefined): string {
  return client ? client.id : `idp:${provider.name}`;
}

/** The refusal of a subject token whose signature does not verify; what it claimed is not audited as its subject. */
function invalidSignature(decision: TokenDecision): OAuthError {
  delete decision.subject;
  delete decision.externalSubject;
  return new OAuthError('invalid_request', 'subject_token signature is invalid');
}
