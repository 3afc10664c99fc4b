import { expect } from 'chai';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FetchError, undiciFetchJson } from '../../../src/tokens/http-fetch.js';

describe('provider document fetch', () => {
  let server: Server;
  let base: string;
  let answer: (res: ServerResponse) => void;

  before(async () => {
    server = createServer((_req, res) => answer(res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  /** Lets any error event a discarded body would emit surface (mocha fails the test on an uncaught one). */
  const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

  it('reads a JSON document', async () => {
    answer = (res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys":[]}');
    expect(await undiciFetchJson(`${base}/jwks`, { timeoutMs: 1000, maxBytes: 1024 })).to.deep.equal({
      keys: [],
    });
  });

  it('turns an error status into a FetchError and discards the body without an uncaught error', async () => {
    answer = (res) => res.writeHead(500, { 'content-type': 'text/plain' }).end('provider is down');
    for (let i = 0; i < 3; i++) {
      const err = await undiciFetchJson(`${base}/jwks`, { timeoutMs: 1000, maxBytes: 1024 }).catch(
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(FetchError);
      expect((err as Error).message).to.match(/answered 500/);
    }
    await settle();
  });

  it('refuses a body over the size cap, and malformed JSON, as FetchErrors', async () => {
    answer = (res) => res.writeHead(200).end('x'.repeat(4096));
    expect(
      await undiciFetchJson(`${base}/jwks`, { timeoutMs: 1000, maxBytes: 1024 }).catch((e: unknown) => e),
    ).to.be.instanceOf(FetchError);
    answer = (res) => res.writeHead(200).end('{nope');
    expect(
      await undiciFetchJson(`${base}/jwks`, { timeoutMs: 1000, maxBytes: 1024 }).catch((e: unknown) => e),
    ).to.be.instanceOf(FetchError);
    await settle();
  });
});
