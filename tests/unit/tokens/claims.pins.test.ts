import { expect } from 'chai';
import type { JWTPayload } from 'jose';
import { grantTargets, mapSubject } from '../../../src/tokens/claims.js';
import { OAuthError } from '../../../src/tokens/oauth-error.js';
import { parseTokensConfig, type ProviderConfig } from '../../../src/tokens/tokens-config.js';

// Claim mapping and target selection (T2, T3) at the edges mutation testing found unpinned.

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

/** The OAuth error `run` throws, as "code: message", or "no error". */
function refusal(run: () => unknown): string {
  try {
    run();
    return 'no error';
  } catch (err) {
    if (err instanceof OAuthError) return `${err.code}: ${err.message}`;
    throw err;
  }
}

describe('claims – pinned requirements', () => {
  it('T2: a subject of exactly 255 characters is taken, 256 is refused, naming the configured claim', () => {
    const p = provider({ subjectClaim: 'uid' });
    expect(mapSubject(p, { uid: 'x'.repeat(255) }).sub).to.equal('x'.repeat(255));
    expect(refusal(() => mapSubject(p, { uid: 'x'.repeat(256) }))).to.equal(
      'invalid_request: subject token has no usable "uid" claim',
    );
    expect(mapSubject(p, { uid: 'x' }).sub).to.equal('x');
  });

  it('T2: a numeric subject must be finite', () => {
    for (const sub of [Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(
        refusal(() => mapSubject(provider(), { sub } as unknown as JWTPayload)),
        String(sub),
      ).to.equal('invalid_request: subject token has no usable "sub" claim');
    }
    expect(mapSubject(provider(), { sub: 0 } as unknown as JWTPayload).sub).to.equal('0');
  });

  it('T2: a mapped claim that is null or false is copied; only an absent one is left out', () => {
    const p = provider({ claims: { a: 'x', b: 'y', c: 'z' } });
    expect(mapSubject(p, { sub: 'u', x: null, y: false }).claims).to.deep.equal({
      a: null,
      b: false,
    });
  });

  it('T3: refusals name what was not allowed, cut to a bounded length', () => {
    expect(refusal(() => grantTargets(['c'], undefined, ['a'], []))).to.equal(
      'invalid_target: audience not allowed: c',
    );
    const long = 'a'.repeat(300);
    expect(refusal(() => grantTargets([long], undefined, ['a'], []))).to.equal(
      `invalid_target: audience not allowed: ${'a'.repeat(200)}`,
    );
    expect(refusal(() => grantTargets([], `read ${'s'.repeat(150)}`, ['a'], ['read']))).to.equal(
      `invalid_scope: scope not allowed: ${'s'.repeat(100)}`,
    );
    expect(refusal(() => grantTargets([], undefined, [], []))).to.equal(
      'invalid_target: no audience is allowed for this request',
    );
  });

  it('T3: a scope of only spaces grants no scope; every requested audience is checked, not only the first', () => {
    expect(grantTargets([], '  ', ['a'], ['read'])).to.deep.equal({ aud: ['a'], scope: undefined });
    expect(grantTargets([], '', ['a'], ['read'])).to.deep.equal({ aud: ['a'], scope: undefined });
    expect(refusal(() => grantTargets(['a', 'z'], undefined, ['a', 'b'], []))).to.equal(
      'invalid_target: audience not allowed: z',
    );
    expect(refusal(() => grantTargets([], 'read admin', ['a'], ['read']))).to.equal(
      'invalid_scope: scope not allowed: admin',
    );
    expect(grantTargets(['b'], undefined, ['a', 'b'], [])).to.deep.equal({ aud: ['b'], scope: undefined });
  });
});
