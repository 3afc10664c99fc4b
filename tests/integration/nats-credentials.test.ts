import { expect } from 'chai';
import { silentLogger } from '../../src/log.js';
import { NatsClient } from '../../src/nats/connection.js';
import { startNatsServer, type OwnNatsServer } from '../support/nats-server.js';

describe('NATS credentials reach the connection (own nats-server on loopback)', () => {
  let server: OwnNatsServer;

  async function startServer(args: string[]): Promise<void> {
    server = await startNatsServer(args);
  }

  afterEach(() => server.stop());

  async function connects(options: Partial<ConstructorParameters<typeof NatsClient>[0]>): Promise<boolean> {
    const client = new NatsClient({
      url: server.url,
      name: 'test',
      startWaitMs: 1500,
      retryMs: 300,
      log: silentLogger(),
      ...options,
    });
    try {
      await client.start();
      return client.state === 'connected';
    } finally {
      await client.stop();
    }
  }

  it('user and password: connects with them, not without', async () => {
    await startServer(['--user', 'svc', '--pass', 'nats-password']);
    expect(await connects({ auth: { type: 'user', user: 'svc', password: 'nats-password' } })).to.be.true;
    expect(await connects({ auth: { type: 'user', user: 'svc', password: 'wrong' } })).to.be.false;
    expect(await connects({})).to.be.false;
  });

  it('token: connects with it, not without', async () => {
    await startServer(['--auth', 'a-nats-token']);
    expect(await connects({ auth: { type: 'token', token: 'a-nats-token' } })).to.be.true;
    expect(await connects({})).to.be.false;
  });
});
