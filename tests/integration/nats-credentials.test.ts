import { spawn, type ChildProcess } from 'node:child_process';
import { connect as tcpConnect } from 'node:net';
import { expect } from 'chai';
import { silentLogger } from '../../src/log.js';
import { NatsClient } from '../../src/nats/connection.js';
import { closedPort } from '../support/tcp-proxy.js';

const NATS_SERVER = '/usr/sbin/nats-server';

/** Resolves once something accepts connections on 127.0.0.1:`port`. */
async function listening(port: number, ms = 5000): Promise<void> {
  const started = Date.now();
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = tcpConnect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() - started > ms) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('NATS credentials reach the connection (own nats-server on loopback)', () => {
  let server: ChildProcess;
  let url: string;

  async function startServer(args: string[]): Promise<void> {
    const port = await closedPort();
    url = `nats://127.0.0.1:${port}`;
    server = spawn(NATS_SERVER, ['-a', '127.0.0.1', '-p', String(port), ...args], { stdio: 'ignore' });
    await listening(port);
  }

  afterEach(async () => {
    if (server.exitCode === null) {
      const exited = new Promise((r) => server.once('exit', r));
      server.kill('SIGTERM');
      await exited;
    }
  });

  async function connects(options: Partial<ConstructorParameters<typeof NatsClient>[0]>): Promise<boolean> {
    const client = new NatsClient({
      url,
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
