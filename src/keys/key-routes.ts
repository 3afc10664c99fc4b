import type { Clock } from '../clock.js';
import type { HttpRequest, HttpResponse, Route } from '../http/server.js';
import type { KeySetSnapshot, ServedKey } from './key-set-snapshot.js';
import type { PublicKeyReads } from './public-key-reads.js';

/** How long verifiers may cache the JWKS at most: short, since a new key is published shortly before it is used. */
export const JWKS_MAX_AGE_S = 300;
/** The most a single key may be cached; a key never changes, but it does expire. */
const KEY_MAX_AGE_S = 3600;

/** Settings of {@link keyRoutes}. */
export interface KeyRoutesOptions {
  /**
   * How long a rotated key is published before it signs (`KEY_ACTIVATION_DELAY_S`). No response tells verifiers
   * to cache longer: one that honours `Cache-Control` then sees every key before a token signed with it exists.
   */
  readonly activationDelayS: number;
}

/**
 * True when `If-None-Match` names `etag` (RFC 9110 §13.1.2: weak comparison, so `W/"x"` matches `"x"`), or is `*`.
 */
export function ifNoneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header === etag) return true;
  for (const part of header.split(',')) {
    const tag = part.trim();
    if (tag === '*' || tag === etag || (tag.startsWith('W/') && tag.slice(2) === etag)) return true;
  }
  return false;
}

const NOT_FOUND_HEADERS: Readonly<Record<string, string>> = { 'cache-control': 'no-store' };

/**
 * Public-key endpoints (T4): `GET /keys/{kid}` and `GET /.well-known/jwks.json`, answered from the key store's
 * snapshot in memory (issue 14), with a strong `ETag` and 304 for a matching `If-None-Match`. Only public members
 * are ever stored, so only public members can be served.
 */
export function keyRoutes(reads: PublicKeyReads, clock: Clock, options: KeyRoutesOptions): Route[] {
  const jwksMaxAgeS = Math.max(0, Math.min(JWKS_MAX_AGE_S, options.activationDelayS));
  const keyMaxAgeS = Math.max(0, Math.min(KEY_MAX_AGE_S, options.activationDelayS));
  // Headers are built once per snapshot: a JWKS request allocates nothing of its own.
  let built: KeySetSnapshot | undefined;
  let ok: Readonly<Record<string, string>> = {};
  let notModified: Readonly<Record<string, string>> = {};

  const keyResponse = (req: HttpRequest, served: ServedKey | undefined, kid: string): HttpResponse => {
    if (!served) {
      return {
        status: 404,
        headers: NOT_FOUND_HEADERS,
        json: {
          error: 'not_found',
          message: `no unexpired key with kid ${JSON.stringify(kid.slice(0, 100))}`,
        },
      };
    }
    const left = Math.floor((served.key.expiresAt - clock.now()) / 1000);
    const cache = `public, max-age=${Math.max(0, Math.min(keyMaxAgeS, left))}`;
    if (ifNoneMatch(req.headers['if-none-match'], served.etag)) {
      return { status: 304, headers: { etag: served.etag, 'cache-control': cache } };
    }
    return {
      status: 200,
      headers: {
        'content-type': 'application/json',
        'content-length': String(served.body.length),
        etag: served.etag,
        'cache-control': cache,
      },
      body: served.body,
    };
  };

  return [
    {
      method: 'GET',
      path: '/keys/:kid',
      handler: (req) => {
        const kid = req.params.kid ?? '';
        const found = reads.find(kid);
        return found instanceof Promise
          ? found.then((served) => keyResponse(req, served, kid))
          : keyResponse(req, found, kid);
      },
    },
    {
      method: 'GET',
      path: '/.well-known/jwks.json',
      handler: (req) => {
        const snapshot = reads.jwks();
        if (snapshot !== built) {
          const cache = `public, max-age=${jwksMaxAgeS}`;
          ok = {
            'content-type': 'application/jwk-set+json',
            'content-length': String(snapshot.jwks.length),
            etag: snapshot.etag,
            'cache-control': cache,
          };
          notModified = { etag: snapshot.etag, 'cache-control': cache };
          built = snapshot;
        }
        if (ifNoneMatch(req.headers['if-none-match'], snapshot.etag)) {
          return { status: 304, headers: notModified };
        }
        return { status: 200, headers: ok, body: snapshot.jwks };
      },
    },
  ];
}
