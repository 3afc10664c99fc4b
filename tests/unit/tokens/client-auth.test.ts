import { expect } from 'chai';
import { ClientRegistry, hashSecret, presentedCredentials } from '../../../src/tokens/client-auth.js';
import { OAuthError } from '../../../src/tokens/oauth-error.js';

const basic = (id: string, secret: string) =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

function code(fn: () => unknown): string {
  try {
    fn();
    return 'no error';
  } catch (err) {
    return err instanceof OAuthError ? err.code : 'other';
  }
}

describe('client authentication', () => {
  const registry = new ClientRegistry([
    {
      id: 'svc-a',
      secretHash: hashSecret('s3cret:with%chars'),
      grants: ['client_credentials'],
      audiences: ['x'],
      scopes: [],
    },
  ]);

  it('reads HTTP Basic credentials, form-urlencoded as RFC 6749 §2.3.1 says', () => {
    const creds = presentedCredentials(basic('svc-a', 's3cret:with%chars'), new URLSearchParams());
    expect(creds).to.deep.equal({
      clientId: 'svc-a',
      clientSecret: 's3cret:with%chars',
      method: 'client_secret_basic',
    });
    expect(registry.authenticate(creds!).id).to.equal('svc-a');
  });

  it('reads client_id and client_secret from the form', () => {
    const creds = presentedCredentials(
      undefined,
      new URLSearchParams({ client_id: 'svc-a', client_secret: 'x' }),
    );
    expect(creds?.method).to.equal('client_secret_post');
  });

  it('finds no credentials in a request that has none', () => {
    expect(presentedCredentials(undefined, new URLSearchParams({ client_id: 'public' }))).to.be.undefined;
  });

  it('refuses two methods at once with invalid_request, and a malformed header with invalid_client', () => {
    const form = new URLSearchParams({ client_id: 'svc-a', client_secret: 'x' });
    expect(code(() => presentedCredentials(basic('svc-a', 'x'), form))).to.equal('invalid_request');
    expect(code(() => presentedCredentials('Bearer abc', new URLSearchParams()))).to.equal('invalid_client');
    expect(code(() => presentedCredentials('Basic bm9jb2xvbg==', new URLSearchParams()))).to.equal(
      'invalid_client',
    );
  });

  it('refuses HTTP Basic with another client_id in the body as invalid_request, and takes the same one', () => {
    const other = new URLSearchParams({ client_id: 'svc-b' });
    expect(code(() => presentedCredentials(basic('svc-a', 'x'), other))).to.equal('invalid_request');
    expect(
      code(() => presentedCredentials(basic('svc-a', 'x'), new URLSearchParams({ client_id: '' }))),
    ).to.equal('invalid_request');
    // Compared once decoded, so an id encoded in the header is the same id in the body.
    const same = presentedCredentials(basic('svc a', 'x'), new URLSearchParams({ client_id: 'svc a' }));
    expect(same).to.deep.equal({ clientId: 'svc a', clientSecret: 'x', method: 'client_secret_basic' });
  });

  it('refuses a wrong secret and an unknown client alike with invalid_client', () => {
    const wrong = { clientId: 'svc-a', clientSecret: 'nope', method: 'client_secret_basic' } as const;
    const unknown = {
      clientId: 'svc-z',
      clientSecret: 's3cret:with%chars',
      method: 'client_secret_basic',
    } as const;
    expect(code(() => registry.authenticate(wrong))).to.equal('invalid_client');
    expect(code(() => registry.authenticate(unknown))).to.equal('invalid_client');
  });

  it('stores secrets as sha256 hex digests', () => {
    expect(hashSecret('abc')).to.equal(
      'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });
});
