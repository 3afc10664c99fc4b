import { expect } from 'chai';
import type { JWTPayload } from 'jose';
import { grantTargets, mapSubject } from '../../../src/tokens/claims.js';
import { OAuthError } from '../../../src/tokens/oauth-error.js';
import { parseTokensConfig, type ProviderConfig } from '../../../src/tokens/tokens-config.js';

function provider(overrides: Record<string, unknown> = {}): ProviderConfig {
  const config = parseTokensConfig(
    {
      providers: [
        {
          name: 'acme',
          issuer: 'https://idp.example',
          jwksUri: 'https://idp.example/jwks',
          audiences: ['exchange'],
          targetAudiences: ['orders'],
          ...overrides,
        },
      ],
    },
    3600,
  );
  return config.providers[0] as ProviderConfig;
}

function oauthCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof OAuthError) return err.code;
    throw err;
  }
  return 'no error';
}

describe('claim mapping', () => {
  it('prefixes the configured subject claim and copies mapped claims under their new names', () => {
    const p = provider({
      subjectClaim: 'uid',
      subjectPrefix: 'acme|',
      claims: { email: 'mail', groups: 'roles' },
    });
    const mapped = mapSubject(p, { uid: 'u1', mail: 'a@b.c', roles: ['x', 'y'], other: 1 });
    expect(mapped).to.deep.equal({ sub: 'acme|u1', claims: { email: 'a@b.c', groups: ['x', 'y'] } });
  });

  it('leaves out mapped claims the token does not carry, and accepts a numeric subject', () => {
    const mapped = mapSubject(provider({ claims: { email: 'mail' } }), { sub: 42 } as unknown as JWTPayload);
    expect(mapped).to.deep.equal({ sub: '42', claims: {} });
  });

  for (const [what, payload] of [
    ['missing', {}],
    ['empty', { sub: '' }],
    ['an object', { sub: { id: 1 } }],
    ['too long', { sub: 'x'.repeat(256) }],
  ] as const) {
    it(`refuses a subject claim that is ${what} with invalid_request`, () => {
      expect(oauthCode(() => mapSubject(provider(), payload as unknown as JWTPayload))).to.equal(
        'invalid_request',
      );
    });
  }

  it('refuses a mapping onto claims the service sets itself', () => {
    expect(() => provider({ claims: { iss: 'iss' } })).to.throw(/may not map onto/);
  });
});

describe('audience and scope selection', () => {
  it('defaults to the first allowed audience and no scope', () => {
    expect(grantTargets([], undefined, ['a', 'b'], ['read'])).to.deep.equal({ aud: ['a'], scope: undefined });
  });

  it('grants requested audiences and scopes that are allowed, without duplicates', () => {
    expect(grantTargets(['b', 'a', 'b'], 'read  write read', ['a', 'b'], ['read', 'write'])).to.deep.equal({
      aud: ['b', 'a'],
      scope: 'read write',
    });
  });

  it('refuses an audience that is not allowed with invalid_target', () => {
    expect(oauthCode(() => grantTargets(['c'], undefined, ['a'], []))).to.equal('invalid_target');
    expect(oauthCode(() => grantTargets([], undefined, [], []))).to.equal('invalid_target');
  });

  it('refuses a scope that is not allowed with invalid_scope', () => {
    expect(oauthCode(() => grantTargets([], 'admin', ['a'], ['read']))).to.equal('invalid_scope');
  });
});
