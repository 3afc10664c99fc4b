import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload, type CryptoKey } from 'jose';

/**
 * A test identity provider of our own: one ES256 key, its JWKS and an OIDC discovery document served on
 * loopback, and a `sign` that issues its tokens. `mode` makes it fail like a real provider can.
 */
export class TestIdp {
  mode: 'up' | 'error' | 'hang' = 'up';
  jwksHits = 0;
  readonly kid: string;
  #server: Server | undefined;
  #privateKey!: CryptoKey;
  #jwk!: JWK;
  #issuer = '';

  constructor(kid = 'idp-key-1') {
    this.kid = kid;
  }

  /** Issuer URL, `http://127.0.0.1:<port>`. */
  get issuer(): string {
    return this.#issuer;
  }

  get jwksUri(): string {
    return `${this.#issuer}/jwks`;
  }

  /** The public JWK (for tests that skip HTTP). */
  get publicJwk(): JWK {
    return this.#jwk;
  }

  async start(): Promise<this> {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    this.#privateKey = privateKey;
    this.#jwk = { ...(await exportJWK(publicKey)), kid: this.kid, alg: 'ES256', use: 'sig' };
    this.#server = createServer((req, res) => {
      if (this.mode === 'hang') return;
      if (this.mode === 'error') {
        res.writeHead(500).end();
        return;
      }
      if (req.url === '/jwks') {
        this.jwksHits++;
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [this.#jwk] }));
      } else if (req.url === '/.well-known/openid-configuration') {
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ issuer: this.#issuer, jwks_uri: this.jwksUri }));
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => this.#server?.listen(0, '127.0.0.1', resolve));
    this.#issuer = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this;
  }

  /**
   * This provider's entry for a tokens config file: name `acme`, its JWKS URL, ES256 only, subject token audience
   * `token-exchange`, internal subjects prefixed `acme|`; `overrides` adds or replaces fields.
   */
  providerConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      name: 'acme',
      issuer: this.#issuer,
      jwksUri: this.jwksUri,
      audiences: ['token-exchange'],
      algorithms: ['ES256'],
      subjectPrefix: 'acme|',
      targetAudiences: ['orders'],
      ...overrides,
    };
  }

  /** A token of this provider: `iss` set, one hour of life unless `claims` say otherwise. */
  sign(claims: JWTPayload, options: { kid?: string; expiresIn?: string | number } = {}): Promise<string> {
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid: options.kid ?? this.kid, typ: 'JWT' })
      .setIssuer(claims.iss ?? this.#issuer)
      .setIssuedAt()
      .setExpirationTime(options.expiresIn ?? '1h')
      .sign(this.#privateKey);
  }

  async stop(): Promise<void> {
    this.#server?.closeAllConnections();
    await new Promise<void>((resolve) => this.#server?.close(() => resolve()));
  }
}
