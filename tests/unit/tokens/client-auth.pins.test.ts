import { expect } from 'chai';
import {
  BASIC_CHALLENGE,
  ClientRegistry,
  hashSecret,
  presentedCredentials,
} from '../../../src/tokens/client-auth.js';
import { OAuthError } from '../../../src/tokens/oauth-error.js';

// Client authentication (T3) at the edges mutation testing found unpinned.

const rawBasic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

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

describe('client authentication – pinned requirements', () => {
  it('T3: HTTP Basic credentials are form-decoded: + is a space, %XX an escape, a plain value kept as it is', () => {
    expect(presentedCredentials(rawBasic('svc+a', 'a+b%2Bc'), new URLSearchParams())).to.deep.equal({
      clientId: 'svc a',
      clientSecret: 'a b+c',
      method: 'client_secret_basic',
    });
    expect(presentedCredentials(rawBasic('svc-a', 'p%41ss'), new URLSearchParams())?.clientSecret).to.equal(
      'pAss',
    );
    expect(presentedCredentials(rawBasic('svc-a', 'plain'), new URLSearchParams())?.clientSecret).to.equal(
      'plain',
    );
  });

  it('T3: a Basic header whose id or secret is not valid form encoding is a malformed header (invalid_client)', () => {
    for (const [id, secret] of [
      ['svc%zz', 'x'],
      ['svc', '%E2%82'],
    ] as const) {
      expect(refusal(() => presentedCredentials(rawBasic(id, secret), new URLSearchParams()))).to.equal(
        'invalid_client: malformed Authorization header',
      );
    }
    expect(refusal(() => presentedCredentials('Bearer x', new URLSearchParams()))).to.equal(
      'invalid_client: malformed Authorization header',
    );
  });

  it('T3: two methods at once, or another client_id, are refused with their own messages', () => {
    expect(
      refusal(() => presentedCredentials(rawBasic('a', 'b'), new URLSearchParams({ client_secret: 'b' }))),
    ).to.equal('invalid_request: use one client authentication method, not two');
    expect(
      refusal(() => presentedCredentials(rawBasic('a', 'b'), new URLSearchParams({ client_id: 'c' }))),
    ).to.equal('invalid_request: client_id does not match the authenticated client');
  });

  it('T3: client_secret in the body without client_id is a post with an empty id, which authenticates no one', () => {
    const creds = presentedCredentials(undefined, new URLSearchParams({ client_secret: 's' }));
    expect(creds).to.deep.equal({ clientId: '', clientSecret: 's', method: 'client_secret_post' });
    const registry = new ClientRegistry([
      {
        id: 'svc-a',
        secretHash: hashSecret('s'),
        grants: ['client_credentials'],
        audiences: ['x'],
        scopes: [],
      },
    ]);
    expect(refusal(() => registry.authenticate(creds!))).to.equal(
      'invalid_client: client authentication failed',
    );
    const both = presentedCredentials(
      undefined,
      new URLSearchParams({ client_id: 'svc-a', client_secret: 's' }),
    );
    expect(both).to.deep.equal({ clientId: 'svc-a', clientSecret: 's', method: 'client_secret_post' });
    expect(registry.authenticate(both!).id).to.equal('svc-a');
  });

  it('T3: an empty client_secret is presented as empty, and checked like any other', () => {
    const registry = new ClientRegistry([
      {
        id: 'svc-e',
        secretHash: hashSecret(''),
        grants: ['client_credentials'],
        audiences: ['x'],
        scopes: [],
      },
    ]);
    const creds = presentedCredentials(
      undefined,
      new URLSearchParams({ client_id: 'svc-e', client_secret: '' }),
    );
    expect(creds?.clientSecret).to.equal('');
    expect(registry.authenticate(creds!).id).to.equal('svc-e');
  });

  it('T3: a 401 challenges for Basic in the token realm, UTF-8 (RFC 7617 §2.1)', () => {
    expect(BASIC_CHALLENGE).to.equal('Basic realm="token", charset="UTF-8"');
  });
});
