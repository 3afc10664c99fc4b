import { expect } from 'chai';
import { Registry } from 'prom-client';
import type { HttpRequest, Route } from '../../../src/http/server.js';
import { silentLogger } from '../../../src/log.js';
import { tokenRoutes } from '../../../src/tokens/token-routes.js';
import type { TokenService } from '../../../src/tokens/token-service.js';

const ISSUER = 'https://sts.internal.test';

describe('token routes – server metadata', () => {
  let routes: Route[];

  before(() => {
    routes = tokenRoutes({
      // The metadata handlers never reach the service.
      service: {} as TokenService,
      issuer: () => ISSUER,
      alg: 'ES256',
      registry: new Registry(),
      log: silentLogger(),
    });
  });

  async function get(path: string) {
    const route = routes.find((r) => r.method === 'GET' && r.path === path);
    expect(route, path).to.exist;
    return route!.handler({ method: 'GET', path, headers: {} } as HttpRequest);
  }

  it('serves one document at the OIDC discovery path and the RFC 8414 path, cached for an hour', async () => {
    const oidc = await get('/.well-known/openid-configuration');
    const oauth = await get('/.well-known/oauth-authorization-server');
    expect(oauth.json).to.deep.equal(oidc.json);
    for (const response of [oidc, oauth]) {
      expect(response.status).to.equal(200);
      expect(response.headers).to.deep.include({ 'cache-control': 'public, max-age=3600' });
    }
  });

  it('names the issuer, endpoints, grants, client authentication, algorithm and token types', async () => {
    const { json } = await get('/.well-known/oauth-authorization-server');
    expect(json).to.deep.equal({
      issuer: ISSUER,
      token_endpoint: `${ISSUER}/token`,
      jwks_uri: `${ISSUER}/.well-known/jwks.json`,
      grant_types_supported: ['urn:ietf:params:oauth:grant-type:token-exchange', 'client_credentials'],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      response_types_supported: [],
      id_token_signing_alg_values_supported: ['ES256'],
      token_exchange_subject_token_types_supported: [
        'urn:ietf:params:oauth:token-type:jwt',
        'urn:ietf:params:oauth:token-type:access_token',
        'urn:ietf:params:oauth:token-type:id_token',
      ],
      token_exchange_requested_token_types_supported: [
        'urn:ietf:params:oauth:token-type:access_token',
        'urn:ietf:params:oauth:token-type:jwt',
      ],
    });
  });
});
