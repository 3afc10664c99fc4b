import { expect } from 'chai';
import type { HttpRequest, HttpResponse, Route } from '../../../src/http/server.js';
import { KeyStore, MemoryOnlyBackend } from '../../../src/keys/key-store.js';
import { MemoryPublicKeyRepository } from '../../../src/keys/memory-repository.js';
import { PublicKeyReads } from '../../../src/keys/public-key-reads.js';
import { silentLogger } from '../../../src/log.js';
import { ifNoneMatch, keyRoutes } from '../../../src/keys/key-routes.js';
import { makeKey } from '../../support/keys.js';
import { fakeTime, T0 } from '../../support/time.js';

const HOUR = 3_600_000;

function request(params: Record<string, string> = {}, headers: Record<string, string> = {}): HttpRequest {
  return {
    method: 'GET',
    path: '/',
    query: new URLSearchParams(),
    params,
    headers,
    body: () => Promise.resolve(Buffer.alloc(0)),
  };
}

describe('public-key routes', () => {
  let t: ReturnType<typeof fakeTime>;
  let store: KeyStore;

  async function routes(activationDelayS: number): Promise<{ jwks: Route; key: Route }> {
    t = fakeTime();
    store = new KeyStore({
      backend: new MemoryOnlyBackend(new MemoryPublicKeyRepository(t.clock)),
      flushIntervalMs: 1000,
      probeIntervalMs: 1000,
      cleanupIntervalMs: 60_000,
      clock: t.clock,
      log: silentLogger(),
    });
    await store.start();
    const all = keyRoutes(new PublicKeyReads({ keys: store, clock: t.clock }), t.clock, { activationDelayS });
    return {
      jwks: all.find((r) => r.path === '/.well-known/jwks.json')!,
      key: all.find((r) => r.path === '/keys/:kid')!,
    };
  }

  afterEach(async () => {
    await store.stop();
    t.timers.restore();
  });

  const call = async (route: Route, req: HttpRequest): Promise<HttpResponse> => await route.handler(req);

  it('serves the JWKS from memory with a strong ETag and a max-age no longer than the activation delay', async () => {
    const { jwks } = await routes(300);
    const key = makeKey({ expiresAt: T0 + HOUR });
    await store.create(key);
    const res = await call(jwks, request());
    expect(res.status).to.equal(200);
    expect(JSON.parse(String(res.body))).to.deep.equal({ keys: [key.jwk] });
    expect(res.headers).to.include({
      'content-type': 'application/jwk-set+json',
      'cache-control': 'public, max-age=300',
      'content-length': String((res.body as Buffer).length),
    });
    expect(res.headers?.etag).to.match(/^"[A-Za-z0-9_-]+"$/);
  });

  it('answers 304 to a matching If-None-Match (strong, weak, in a list, or *), and 200 once the set changed', async () => {
    const { jwks } = await routes(300);
    await store.create(makeKey({ expiresAt: T0 + HOUR }));
    const etag = (await call(jwks, request())).headers!.etag!;
    for (const header of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const res = await call(jwks, request({}, { 'if-none-match': header }));
      expect(res.status, header).to.equal(304);
      expect(res.body, header).to.be.undefined;
      expect(res.headers, header).to.include({ etag, 'cache-control': 'public, max-age=300' });
    }
    expect((await call(jwks, request({}, { 'if-none-match': '"other"' }))).status).to.equal(200);
    await store.create(makeKey({ expiresAt: T0 + HOUR }));
    const changed = await call(jwks, request({}, { 'if-none-match': etag }));
    expect(changed.status).to.equal(200);
    expect(changed.headers?.etag).not.to.equal(etag);
    expect((JSON.parse(String(changed.body)) as { keys: unknown[] }).keys).to.have.length(2);
  });

  it('never tells verifiers to cache longer than the activation delay', async () => {
    const { jwks, key: one } = await routes(60);
    const key = makeKey({ expiresAt: T0 + 2 * HOUR });
    await store.create(key);
    expect((await call(jwks, request())).headers?.['cache-control']).to.equal('public, max-age=60');
    expect((await call(one, request({ kid: key.kid }))).headers?.['cache-control']).to.equal(
      'public, max-age=60',
    );
  });

  it('caps the JWKS max-age at 300 s even with a longer activation delay', async () => {
    const { jwks } = await routes(900);
    expect((await call(jwks, request())).headers?.['cache-control']).to.equal('public, max-age=300');
  });

  it('serves one key with its ETag, cached no longer than the delay nor past its expiry; 304 on a match', async () => {
    const { key: one } = await routes(300);
    const key = makeKey({ expiresAt: T0 + 100_500 });
    await store.create(key);
    const res = await call(one, request({ kid: key.kid }));
    expect(res.status).to.equal(200);
    expect(JSON.parse(String(res.body))).to.deep.equal(key.jwk);
    expect(res.headers?.['cache-control']).to.equal('public, max-age=100');
    const again = await call(one, request({ kid: key.kid }, { 'if-none-match': res.headers!.etag! }));
    expect(again.status).to.equal(304);
  });

  it('answers an unknown or expired kid 404, not to be cached', async () => {
    const { key: one } = await routes(300);
    const key = makeKey({ expiresAt: T0 + 1000 });
    await store.create(key);
    await t.timers.tickAsync(1000);
    // Both unknown to memory: the two reads share one lookup.
    const answers = [key.kid, 'unknown'].map((kid) => call(one, request({ kid })));
    for (const [i, kid] of [key.kid, 'unknown'].entries()) {
      const res = await answers[i]!;
      expect(res.status, kid).to.equal(404);
      expect(res.headers?.['cache-control']).to.equal('no-store');
      expect(res.json).to.include({ error: 'not_found' });
    }
  });

  it('reads If-None-Match as RFC 9110 does', () => {
    expect(ifNoneMatch(undefined, '"a"')).to.be.false;
    expect(ifNoneMatch('"a"', '"a"')).to.be.true;
    expect(ifNoneMatch(' "b" , W/"a"', '"a"')).to.be.true;
    expect(ifNoneMatch('"b"', '"a"')).to.be.false;
    expect(ifNoneMatch('a', '"a"')).to.be.false;
  });
});
