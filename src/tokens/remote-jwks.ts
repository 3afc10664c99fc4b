import { KeyObject } from 'node:crypto';
import { importJWK, type JWK } from 'jose';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Clock } from '../clock.js';
import { AppError } from '../errors.js';
import type { FetchJson } from './http-fetch.js';

/**
 * A provider's keys cannot be had, so a token cannot be judged: the last good keys are too old, or the token names
 * a key they lack while the provider is failing (the key may be a new one). A temporary failure, never the
 * client's; `retryAfterS`, when known, is how long until the provider is asked again.
 */
export class ProviderUnavailableError extends AppError {
  constructor(provider: string, options?: { cause?: unknown; retryAfterS?: number }) {
    super('PROVIDER_UNAVAILABLE', `identity provider ${provider} is unavailable`, options);
  }
}

/** The token names a key the provider does not publish (after a refetch, when one was allowed). */
export class UnknownKeyError extends AppError {
  constructor(provider: string, kid: string | undefined) {
    super(
      'UNKNOWN_KEY',
      kid === undefined ? `token has no kid and ${provider} has several keys` : `unknown kid for ${provider}`,
    );
  }
}

/** The provider's key named by the token does not fit the token's algorithm (or is too weak for it). */
export class UnusableKeyError extends AppError {
  constructor(provider: string, alg: string, options?: { cause?: unknown }) {
    super('UNUSABLE_KEY', `the ${provider} key named by the token cannot verify ${alg}`, options);
  }
}

/** Settings of one provider's key cache. */
export interface RemoteJwksOptions {
  readonly provider: string;
  /** The JWKS URL, or the issuer whose `/.well-known/openid-configuration` names it. */
  readonly source: { jwksUri: string } | { discoveryIssuer: string };
  readonly fetchJson: FetchJson;
  readonly clock: Clock;
  /** Keys younger than this are used without asking the provider. */
  readonly cacheMaxAgeMs: number;
  /** The least time between two fetches caused by unknown `kid`s, so forged `kid`s cannot hammer the provider. */
  readonly refetchCooldownMs: number;
  /** How long after the last successful fetch the old keys are still served while the provider is failing. */
  readonly staleMaxMs: number;
  readonly timeoutMs: number;
  readonly log: Logger;
}

const jwksSchema = z.object({ keys: z.array(z.record(z.string(), z.unknown())) });
const discoverySchema = z.object({ jwks_uri: z.string().url() });

interface CachedKey {
  readonly jwk: JWK;
  readonly kty: string;
  readonly crv: unknown;
  /** The key's own `alg`, as published (jose compares it as it is, so a non-string never matches). */
  readonly alg: unknown;
  /** Imported once per algorithm and reused: importing costs more than verifying. */
  readonly imported: Map<string, Promise<KeyObject>>;
}

/** The key type (and curve) each verification algorithm needs, as jose matches JWKS members to a token. */
const KEY_SHAPE: Readonly<Record<string, { kty: string; crv?: string }>> = {
  RS256: { kty: 'RSA' },
  RS384: { kty: 'RSA' },
  RS512: { kty: 'RSA' },
  PS256: { kty: 'RSA' },
  PS384: { kty: 'RSA' },
  PS512: { kty: 'RSA' },
  ES256: { kty: 'EC', crv: 'P-256' },
  ES384: { kty: 'EC', crv: 'P-384' },
  EdDSA: { kty: 'OKP', crv: 'Ed25519' },
};

/**
 * Whether a JWKS member may verify signatures at all, by the rules jose applies to a key set: `use`, when
 * present, is `sig`; `key_ops`, when present, is a list of distinct strings that includes `verify`; `ext`, when
 * present, is a boolean. (A private key, `d`, stays a candidate, as in jose, and fails when it is used.)
 */
function verifiesSignatures(jwk: Record<string, unknown>): boolean {
  const { use, key_ops: ops, ext } = jwk;
  if (use !== undefined && use !== 'sig') return false;
  if (ext !== undefined && typeof ext !== 'boolean') return false;
  if (ops !== undefined) {
    if (!Array.isArray(ops) || !ops.includes('verify')) return false;
    if (ops.some((op, i) => typeof op !== 'string' || ops.indexOf(op) !== i)) return false;
  }
  return typeof jwk.kty === 'string';
}

/** Whether a key can be the one for `alg`: its own `alg`, when present, is that one, and its type and curve fit. */
function fits(key: CachedKey, alg: string): boolean {
  const shape = KEY_SHAPE[alg];
  return (
    shape !== undefined &&
    (key.alg === undefined || key.alg === alg) &&
    key.kty === shape.kty &&
    (shape.crv === undefined || key.crv === shape.crv)
  );
}

/**
 * One provider's signing keys (T2): fetched with the injected `fetchJson`, cached for `cacheMaxAgeMs`, refetched
 * on an unknown `kid` at most once per `refetchCooldownMs`, and, while the provider fails, served from the last
 * good copy for `staleMaxMs` before failing closed with {@link ProviderUnavailableError}. Concurrent callers share
 * one fetch in flight.
 */
export class RemoteJwks {
  readonly #o: RemoteJwksOptions;
  /** Every usable key, in the provider's order. */
  #keys: readonly CachedKey[] = [];
  /** The usable keys that have a `kid`, by `kid` (a provider may, wrongly, give two keys one `kid`). */
  #byKid = new Map<string, CachedKey[]>();
  #fetchedAt: number | undefined;
  #lastAttempt = Number.NEGATIVE_INFINITY;
  /** Whether the latest fetch failed: keys missing from the last good copy may exist, so they cannot be judged. */
  #failing = false;
  #inflight: Promise<void> | undefined;

  constructor(options: RemoteJwksOptions) {
    this.#o = options;
  }

  /**
   * The public key for a token header, chosen as jose chooses from a key set (the one usable key with the
   * token's `kid`, or the only usable key when the token names none, whose type, curve and `alg` fit `alg`; an
   * {@link UnknownKeyError} otherwise), imported for `alg`: jose's import checks the key material, and RSA keys
   * shorter than 2048 bits are refused, as jose's own verification would. A key whose material does not fit is
   * an {@link UnusableKeyError}.
   */
  async getKey(kid: string | undefined, alg: string): Promise<KeyObject> {
    const now = this.#o.clock.now();
    if (this.#fetchedAt === undefined || now - this.#fetchedAt >= this.#o.cacheMaxAgeMs) {
      await this.#refreshOrServeStale();
    }
    let found = this.#find(kid, alg);
    if (!found && now - this.#lastAttempt >= this.#o.refetchCooldownMs) {
      await this.#refreshOrServeStale();
      found = this.#find(kid, alg);
    }
    if (!found) {
      // While the provider cannot be reached, a kid we lack may be one it has just added: temporary, not a refusal.
      if (this.#failing) {
        const untilNextFetchMs = this.#lastAttempt + this.#o.refetchCooldownMs - this.#o.clock.now();
        throw new ProviderUnavailableError(this.#o.provider, {
          retryAfterS: Math.max(1, Math.ceil(untilNextFetchMs / 1000)),
        });
      }
      throw new UnknownKeyError(this.#o.provider, kid);
    }
    // Counted among the candidates, as jose counts it, so a token without kid cannot pick the public key beside it.
    if ('d' in found.jwk) throw new UnusableKeyError(this.#o.provider, alg);
    let imported = found.imported.get(alg);
    if (!imported) {
      imported = importForAlg(found.jwk, alg).catch((err: unknown) => {
        throw new UnusableKeyError(this.#o.provider, alg, { cause: err });
      });
      found.imported.set(alg, imported);
      // A key that does not fit the algorithm fails now and on every later try, never as a cached success.
      imported.catch(() => found?.imported.delete(alg));
    }
    return imported;
  }

  /**
   * The one key that fits the token, as jose picks it from a key set: among the keys with the token's `kid` (a key
   * without one is never named by a token that has one), or among all keys when the token names none; `undefined`
   * when none fits or several do.
   */
  #find(kid: string | undefined, alg: string): CachedKey | undefined {
    const pool = kid === undefined ? this.#keys : this.#byKid.get(kid);
    if (pool === undefined) return undefined;
    let match: CachedKey | undefined;
    for (const key of pool) {
      if (!fits(key, alg)) continue;
      if (match) return undefined;
      match = key;
    }
    return match;
  }

  async #refreshOrServeStale(): Promise<void> {
    try {
      this.#inflight ??= this.#refresh().finally(() => (this.#inflight = undefined));
      await this.#inflight;
    } catch (err) {
      this.#failing = true;
      const age = this.#fetchedAt === undefined ? Infinity : this.#o.clock.now() - this.#fetchedAt;
      if (age > this.#o.staleMaxMs) throw new ProviderUnavailableError(this.#o.provider, { cause: err });
      this.#o.log.warn(
        { provider: this.#o.provider, ageMs: age, err: (err as Error).message },
        'provider keys could not be refreshed; serving the last good copy',
      );
    }
  }

  async #refresh(): Promise<void> {
    this.#lastAttempt = this.#o.clock.now();
    const limits = { timeoutMs: this.#o.timeoutMs, maxBytes: 512 * 1024 };
    let jwksUri: string;
    if ('jwksUri' in this.#o.source) {
      jwksUri = this.#o.source.jwksUri;
    } else {
      const issuer = this.#o.source.discoveryIssuer.replace(/\/$/, '');
      const doc = discoverySchema.parse(
        await this.#o.fetchJson(`${issuer}/.well-known/openid-configuration`, limits),
      );
      jwksUri = doc.jwks_uri;
    }
    const { keys } = jwksSchema.parse(await this.#o.fetchJson(jwksUri, limits));
    const next: CachedKey[] = [];
    const byKid = new Map<string, CachedKey[]>();
    for (const jwk of keys) {
      if (!verifiesSignatures(jwk)) continue;
      const key: CachedKey = {
        jwk: jwk,
        kty: jwk.kty as string,
        crv: jwk.crv,
        alg: jwk.alg,
        imported: new Map(),
      };
      next.push(key);
      if (typeof jwk.kid === 'string') {
        const named = byKid.get(jwk.kid);
        if (named) named.push(key);
        else byKid.set(jwk.kid, [key]);
      }
    }
    this.#keys = next;
    this.#byKid = byKid;
    this.#fetchedAt = this.#o.clock.now();
    this.#failing = false;
    this.#o.log.debug({ provider: this.#o.provider, keys: next.length }, 'provider keys fetched');
  }
}

/** Imports a JWK for one algorithm as a node:crypto KeyObject, refusing RSA keys under 2048 bits. */
async function importForAlg(jwk: JWK, alg: string): Promise<KeyObject> {
  const imported = await importJWK(jwk, alg);
  if (imported instanceof Uint8Array) throw new Error('a symmetric key cannot verify subject tokens');
  const key = KeyObject.from(imported);
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (bits !== undefined && bits < 2048) throw new Error(`${alg} needs an RSA key of 2048 bits or more`);
  return key;
}
