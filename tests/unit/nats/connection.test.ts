import { expect } from 'chai';
import { securityOptions } from '../../../src/nats/connection.js';

describe('NATS connection security options', () => {
  it('passes no credentials and no TLS settings when none are configured', () => {
    expect(securityOptions({})).to.deep.equal({});
  });

  it('maps a user, a token and TLS files to the client’s options', () => {
    const tls = { caFile: '/etc/nats/ca.pem', certFile: '/etc/nats/c.pem', keyFile: '/etc/nats/k.pem' };
    expect(securityOptions({ auth: { type: 'user', user: 'svc', password: 'pw' }, tls })).to.deep.equal({
      user: 'svc',
      pass: 'pw',
      tls,
    });
    expect(securityOptions({ auth: { type: 'token', token: 't' } })).to.deep.equal({ token: 't' });
  });

  it('authenticates with a creds file through an authenticator, reading the file only when connecting', () => {
    const options = securityOptions({ auth: { type: 'creds', file: '/nonexistent/replica.creds' } });
    expect(options.authenticator).to.be.a('function');
    expect(options).not.to.have.any.keys('user', 'pass', 'token');
  });
});
