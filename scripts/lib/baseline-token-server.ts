/**
 * The benchmark's baseline: a straightforward token server in one `node:http` process. It checks the client's
 * secret (SHA-256, constant time), verifies subject tokens with jose `jwtVerify` against a local JWKS, and signs
 * with jose `SignJWT` (ES256) on its main thread. Prints `{"port":N}` once listening.
 *
 * Usage: node .bench/dist/scripts/lib/baseline-token-server.js <issuer> <jwks-json> <client-id> <secret> (compiled by
 *        bench-tokens.ts; under tsx: node --import tsx scripts/lib/baseline-token-server.ts …)
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { createLocalJWKSet, generateKeyPair, jwtVerify, SignJWT, type JSONWebKeySet } from 'jose';

const [providerIssuer = '', jwksJson = '{}', clientId = '', secret = ''] = process.argv.slice(2);
const jwks = createLocalJWKSet(JSON.parse(jwksJson) as JSONWebKeySet);
const digest = createHash('sha256').update(secret).digest();
const { privateKey } = await generateKeyPair('ES256');

async function issue(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid: 'baseline', typ: 'at+jwt' })
    .setIssuer('http://baseline')
    .setAudience('orders')
    .setIssuedAt()
    .setNotBefore('0s')
    .setExpirationTime('15m')
    .setJti(randomUUID())
    .sign(privateKey);
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    void (async () => {
      const form = new URLSearchParams(Buffer.concat(chunks).toString());
      try {
        let token: string;
        if (form.get('grant_type') === 'client_credentials') {
          const [id, pass] = Buffer.from((req.headers.authorization ?? '').slice(6), 'base64')
            .toString()
            .split(':');
          const ok =
            timingSafeEqual(
              createHash('sha256')
                .update(pass ?? '')
                .digest(),
              digest,
            ) && id === clientId;
          if (!ok) throw new Error('invalid_client');
          token = await issue({ sub: id, client_id: id });
        } else {
          const { payload } = await jwtVerify(form.get('subject_token') ?? '', jwks, {
            issuer: providerIssuer,
            audience: 'token-exchange',
            algorithms: ['ES256'],
          });
          token = await issue({ sub: `acme|${payload.sub}` });
        }
        const body = JSON.stringify({ access_token: token, token_type: 'Bearer', expires_in: 900 });
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(body);
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"invalid_request"}');
      }
    })();
  });
});
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: (server.address() as { port: number }).port }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
