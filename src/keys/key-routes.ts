import type { Clock } from '../clock.js';
import { NotFoundError } from '../errors.js';
import type { Route } from '../http/server.js';
import type { KeyStore } from './key-store.js';

/** How long verifiers may cache the JWKS: short, since a new key is published shortly before it is used. */
const JWKS_MAX_AGE_S = 300;
/** The most a single key may be cached; a key never changes, but it does expire. */
const KEY_MAX_AGE_S = 3600;

/**
 * Public-key endpoints (T4): `GET /keys/{kid}` and `GET /.well-known/jwks.json`. Only public members are ever
 * stored, so only public members can be served.
 */
export function keyRoutes(keyStore: KeyStore, clock: Clock): Route[] {
  return [
    {
      method: 'GET',
      path: '/keys/:kid',
      handler: async (req) => {
        const kid = req.params.kid ?? '';
        const key = await keyStore.get(kid);
        if (!key) throw new NotFoundError(`no unexpired key with kid ${JSON.stringify(kid.slice(0, 100))}`);
        const maxAge = Math.max(0, Math.min(KEY_MAX_AGE_S, Math.floor((key.expiresAt - clock.now()) / 1000)));
        return { status: 200, headers: { 'cache-control': `public, max-age=${maxAge}` }, json: key.jwk };
      },
    },
    {
      method: 'GET',
      path: '/.well-known/jwks.json',
      handler: async () => {
        const keys = await keyStore.list();
        return {
          status: 200,
          headers: {
            'content-type': 'application/jwk-set+json',
            'cache-control': `public, max-age=${JWKS_MAX_AGE_S}`,
          },
          json: { keys: keys.map((k) => k.jwk) },
        };
      },
    },
  ];
}
