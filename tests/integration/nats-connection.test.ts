import { expect } from 'chai';
import type { NatsConnection } from '@nats-io/nats-core';
import { createServer, type AddressInfo } from 'node:net';
import { silentLogger } from '../../src/log.js';
import { NatsClient } from '../../src/nats/connection.js';
import { TEST_NATS_URL } from '../support/nats.js';
import { TcpFaultProxy } from '../support/tcp-proxy.js';

const natsAddress = () => {
  const u = new URL(TEST_NATS_URL);
  return { host: u.hostname, port: Number(u.port || 4222) };
};

async function until(what: string, condition: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('NATS connection (real server behind a fault proxy)', () => {
  let proxy: TcpFaultProxy;
  let client: NatsClient | undefined;

  beforeEach(async () => {
    proxy = new TcpFaultProxy(natsAddress());
    await proxy.start();
  });

  afterEach(async () => {
    await client?.stop();
    client = undefined;
    await proxy.stop();
  });

  const newClient = (startWaitMs = 200) =>
    (client = new NatsClient({
      url: `nats://127.0.0.1:${proxy.port}`,
      name: 'connection-test',
      startWaitMs,
      retryMs: 100,
      log: silentLogger(),
    }));

  it('starts while NATS is down, connects when it comes up, and tells waiting listeners', async () => {
    await proxy.setMode('refuse');
    const nats = newClient();
    const seen: NatsConnection[] = [];
    nats.onConnected((nc) => seen.push(nc));
    const started = Date.now();
    await nats.start();
    expect(Date.now() - started).to.be.at.least(190);
    expect(nats.state).to.equal('connecting');
    expect(nats.connection).to.equal(undefined);
    expect(seen).to.have.length(0);

    await proxy.setMode('pass');
    await until('the first connection', () => seen.length === 1);
    expect(nats.state).to.equal('connected');
    expect(nats.connection).to.equal(seen[0]);
    // A listener added later is called at once with the same connection.
    let late: NatsConnection | undefined;
    nats.onConnected((nc) => (late = nc));
    expect(late).to.equal(seen[0]);
  });

  it('reconnects by itself after the server goes away and comes back', async () => {
    const nats = newClient(5000);
    await nats.start();
    expect(nats.state).to.equal('connected');
    await proxy.setMode('refuse');
    await until('disconnected', () => nats.state === 'disconnected');
    await proxy.setMode('pass');
    await until('reconnected', () => nats.state === 'connected');
    const nc = nats.connection as NatsConnection;
    expect(await nc.rtt()).to.be.a('number');
  });

  it('a stop before the first connection ends the retries: nothing dials afterwards', async () => {
    // A port that accepts and hangs up at once: every dial fails, and every dial is counted.
    let dials = 0;
    const dead = createServer((socket) => {
      dials++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
    try {
      const nats = (client = new NatsClient({
        url: `nats://127.0.0.1:${(dead.address() as AddressInfo).port}`,
        name: 'connection-test',
        startWaitMs: 350,
        retryMs: 100,
        log: silentLogger(),
      }));
      await nats.start();
      expect(dials).to.be.at.least(2); // the client itself retries the first connection
      await nats.stop();
      expect(nats.state).to.equal('closed');
      const after = dials;
      await new Promise((r) => setTimeout(r, 600)); // six retry intervals
      expect(dials - after).to.be.at.most(1); // at most the dial already under way
      expect(nats.connection).to.equal(undefined);
    } finally {
      await new Promise((r) => dead.close(r));
    }
  });

  it('stop drains: a message published just before stop reaches a subscriber', async () => {
    const nats = newClient(5000);
    await nats.start();
    const nc = nats.connection as NatsConnection;
    const subject = `connection_test_${process.pid}_${Date.now()}`;
    const other = await import('@nats-io/transport-node').then((m) => m.connect({ servers: TEST_NATS_URL }));
    try {
      const sub = other.subscribe(subject, { max: 1 });
      await other.flush();
      nc.publish(subject, 'last words');
      await nats.stop();
      expect(nc.isClosed()).to.equal(true);
      for await (const m of sub) expect(m.string()).to.equal('last words');
      expect(sub.getReceived()).to.equal(1);
    } finally {
      await other.close();
    }
  });
});
