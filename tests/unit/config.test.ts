import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { loadConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';

const SECRET = 'a-cluster-secret-of-at-least-32-bytes';
/** An existing file, standing in for CA, certificate and creds files. */
const HERE = fileURLToPath(import.meta.url);

describe('configuration', () => {
  it('with nothing set, runs one self-contained replica on port 8080', () => {
    const config = loadConfig({});
    expect(config.tokens.port).to.equal(8080);
    expect(config.database).to.be.undefined;
    expect(config.nats).to.be.undefined;
    expect(config.replicaId).to.match(/^replica-[0-9a-f]{8}$/);
    expect(config.keyStore).to.deep.equal({
      pgTimeoutMs: 500,
      flushIntervalMs: 5000,
      probeIntervalMs: 2000,
      cleanupIntervalMs: 60_000,
      reloadIntervalMs: 30_000,
    });
    expect(config.signing).to.include({ activationDelayS: 300, startupHold: false });
    expect(config.signing.alg).to.equal('ES256');
    expect(config.http).to.deep.equal({
      headersTimeoutMs: 5000,
      requestTimeoutMs: 15_000,
      keepAliveTimeoutMs: 5000,
      maxConnections: 1000,
    });
  });

  it('reads every setting it is given, treating empty values as unset', () => {
    const config = loadConfig({
      TOKENS_PORT: '9000',
      REPLICA_ID: 'r1',
      DATABASE_URL: 'postgres://u@127.0.0.1:5432/db',
      DATABASE_SCHEMA: 'ks_test',
      NATS_URL: 'nats://127.0.0.1:4222',
      KEYSTORE_PG_TIMEOUT_MS: '250',
      SIGNING_ALG: 'EdDSA',
      LOG_LEVEL: '',
      HTTP_HEADERS_TIMEOUT_MS: '2000',
      HTTP_REQUEST_TIMEOUT_MS: '4000',
      HTTP_KEEP_ALIVE_TIMEOUT_MS: '65000',
      HTTP_MAX_CONNECTIONS: '200',
    });
    expect(config.tokens.port).to.equal(9000);
    expect(config.replicaId).to.equal('r1');
    expect(config.database).to.include({ url: 'postgres://u@127.0.0.1:5432/db', schema: 'ks_test' });
    expect(config.nats?.url).to.equal('nats://127.0.0.1:4222');
    expect(config.keyStore.pgTimeoutMs).to.equal(250);
    expect(config.signing.alg).to.equal('EdDSA');
    expect(config.logLevel).to.equal('info');
    expect(config.http).to.deep.equal({
      headersTimeoutMs: 2000,
      requestTimeoutMs: 4000,
      keepAliveTimeoutMs: 65_000,
      maxConnections: 200,
    });
  });

  it('sends the token audit log to stdout unless told a file or off', () => {
    expect(loadConfig({}).tokenIssuer.auditLog).to.equal('stdout');
    expect(loadConfig({ TOKENS_AUDIT_LOG: '' }).tokenIssuer.auditLog).to.equal('stdout');
    expect(loadConfig({ TOKENS_AUDIT_LOG: 'off' }).tokenIssuer.auditLog).to.equal('off');
    expect(loadConfig({ TOKENS_AUDIT_LOG: '/var/log/sts/audit.log' }).tokenIssuer.auditLog).to.deep.equal({
      path: '/var/log/sts/audit.log',
    });
  });

  it('defaults the activation delay to the JWKS max-age, or just under a shorter rotation interval', () => {
    expect(loadConfig({}).signing.activationDelayS).to.equal(300);
    expect(loadConfig({ KEY_ROTATION_INTERVAL_S: '60' }).signing.activationDelayS).to.equal(59);
    expect(loadConfig({ KEY_ROTATION_INTERVAL_S: '1' }).signing.activationDelayS).to.equal(0);
    expect(loadConfig({ KEY_ACTIVATION_DELAY_S: '0' }).signing.activationDelayS).to.equal(0);
    expect(loadConfig({ KEY_STARTUP_HOLD: 'true' }).signing.startupHold).to.be.true;
    expect(loadConfig({ KEYSTORE_RELOAD_INTERVAL_MS: '5000' }).keyStore.reloadIntervalMs).to.equal(5000);
  });

  const bad: [string, Record<string, string>, RegExp][] = [
    ['a port out of range', { TOKENS_PORT: '70000' }, /TOKENS_PORT/],
    ['a non-numeric timeout', { KEYSTORE_PG_TIMEOUT_MS: 'soon' }, /KEYSTORE_PG_TIMEOUT_MS/],
    ['a database URL of another protocol', { DATABASE_URL: 'mysql://127.0.0.1/x' }, /DATABASE_URL/],
    ['a schema that is not an identifier', { DATABASE_SCHEMA: 'x; drop table' }, /DATABASE_SCHEMA/],
    ['an unknown algorithm', { SIGNING_ALG: 'none' }, /SIGNING_ALG/],
    ['a replica id with spaces', { REPLICA_ID: 'a b' }, /REPLICA_ID/],
    [
      'an activation delay as long as the rotation interval',
      { KEY_ROTATION_INTERVAL_S: '300', KEY_ACTIVATION_DELAY_S: '300' },
      /KEY_ACTIVATION_DELAY_S: must be shorter than KEY_ROTATION_INTERVAL_S/,
    ],
    ['a start-up hold that is not a boolean', { KEY_STARTUP_HOLD: 'yes' }, /KEY_STARTUP_HOLD/],
    [
      'a cluster secret under 32 bytes',
      { CLUSTER_SECRET: 'x'.repeat(31) },
      /CLUSTER_SECRET: at least 32 bytes/,
    ],
    [
      'a previous cluster secret without a current one',
      { CLUSTER_SECRET_PREVIOUS: SECRET },
      /CLUSTER_SECRET_PREVIOUS: needs CLUSTER_SECRET/,
    ],
    ['a NATS user without a password', { NATS_USER: 'svc' }, /NATS_PASSWORD/],
    [
      'two NATS authentications',
      { NATS_TOKEN: 't', NATS_USER: 'u', NATS_PASSWORD: 'p' },
      /NATS_TOKEN: one NATS/,
    ],
    [
      'a NATS file that does not exist',
      { NATS_TLS_CA_FILE: '/nonexistent/ca.pem' },
      /NATS_TLS_CA_FILE: no such/,
    ],
    ['a NATS client certificate without its key', { NATS_TLS_CERT_FILE: HERE }, /NATS_TLS_KEY_FILE/],
    [
      'accepted algorithms without the signing one',
      { KEY_ACCEPT_ALGS: 'EdDSA' },
      /KEY_ACCEPT_ALGS: must include/,
    ],
    ['an unknown accepted algorithm', { KEY_ACCEPT_ALGS: 'ES256,HS256' }, /KEY_ACCEPT_ALGS/],
    [
      'a pg query timeout not longer than the key store timeout',
      { DATABASE_QUERY_TIMEOUT_MS: '400' },
      /DATABASE_QUERY_TIMEOUT_MS: must be longer than KEYSTORE_PG_TIMEOUT_MS/,
    ],
    [
      'a headers timeout longer than the request timeout',
      { HTTP_HEADERS_TIMEOUT_MS: '20000' },
      /HTTP_HEADERS_TIMEOUT_MS: must not exceed HTTP_REQUEST_TIMEOUT_MS/,
    ],
    ['no connections allowed', { HTTP_MAX_CONNECTIONS: '0' }, /HTTP_MAX_CONNECTIONS/],
  ];
  for (const [what, env, message] of bad) {
    it(`stops start-up on ${what}, naming the setting`, () => {
      expect(() => loadConfig(env))
        .to.throw(ConfigError)
        .with.property('message')
        .that.matches(message);
    });
  }
});

describe('configuration – cluster trust', () => {
  it('reads the cluster secrets, NATS credentials and TLS files, and the accepted algorithms', () => {
    const config = loadConfig({
      NATS_URL: 'tls://127.0.0.1:4222',
      NATS_USER: 'svc',
      NATS_PASSWORD: 'pw',
      NATS_TLS_CA_FILE: HERE,
      CLUSTER_SECRET: SECRET,
      CLUSTER_SECRET_PREVIOUS: `${SECRET}-old`,
      SIGNING_ALG: 'EdDSA',
      KEY_ACCEPT_ALGS: 'ES256, EdDSA',
    });
    expect(config.nats?.auth).to.deep.equal({ type: 'user', user: 'svc', password: 'pw' });
    expect(config.nats?.tls).to.deep.equal({ caFile: HERE });
    expect(config.clusterSecret).to.deep.equal({ current: SECRET, previous: `${SECRET}-old` });
    expect(config.signing.acceptAlgs).to.deep.equal(['ES256', 'EdDSA']);
    expect(loadConfig({ NATS_URL: 'nats://127.0.0.1:4222', NATS_CREDS_FILE: HERE }).nats?.auth).to.deep.equal(
      {
        type: 'creds',
        file: HERE,
      },
    );
    expect(loadConfig({ NATS_URL: 'nats://127.0.0.1:4222', NATS_TOKEN: 't' }).nats?.auth).to.deep.equal({
      type: 'token',
      token: 't',
    });
  });

  it('takes NATS credentials written into the URL, which the client would not send', () => {
    const auth = (url: string) => loadConfig({ NATS_URL: url }).nats?.auth;
    expect(auth('nats://svc:p%40ss@127.0.0.1:4222')).to.deep.equal({
      type: 'user',
      user: 'svc',
      password: 'p@ss',
    });
    expect(auth('nats://a-token@127.0.0.1:4222')).to.deep.equal({ type: 'token', token: 'a-token' });
    expect(loadConfig({ NATS_URL: 'nats://x:y@127.0.0.1:4222', NATS_TOKEN: 't' }).nats?.auth).to.deep.equal({
      type: 'token',
      token: 't',
    });
  });

  it('by default: no cluster secret, anonymous NATS, and only the signing algorithm trusted', () => {
    const config = loadConfig({ NATS_URL: 'nats://127.0.0.1:4222' });
    expect(config.clusterSecret).to.be.undefined;
    expect(config.nats?.auth).to.be.undefined;
    expect(config.nats?.tls).to.be.undefined;
    expect(config.signing.acceptAlgs).to.deep.equal(['ES256']);
  });
});

describe('log hygiene', () => {
  it('NATS URLs are logged without their credentials', async () => {
    const { withoutCredentials } = await import('../../src/log.js');
    expect(withoutCredentials('nats://alice:s3cret@127.0.0.1:4222')).to.equal('nats://127.0.0.1:4222');
    expect(withoutCredentials('not a url')).to.equal('(unparseable url)');
  });
});
