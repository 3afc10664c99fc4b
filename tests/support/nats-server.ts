import { spawn } from 'node:child_process';
import { connect as tcpConnect } from 'node:net';
import { closedPort } from './tcp-proxy.js';

const NATS_SERVER = process.env.TEST_NATS_SERVER ?? '/usr/sbin/nats-server';

/** A nats-server of a test's own, on a free loopback port, so the shared server is never reconfigured. */
export interface OwnNatsServer {
  readonly url: string;
  /** Stops the server and waits for it to exit. */
  stop(): Promise<void>;
}

/** Starts `nats-server` on 127.0.0.1 with `args` (e.g. `['-c', file]`); resolves once it accepts connections. */
export async function startNatsServer(args: readonly string[]): Promise<OwnNatsServer> {
  const port = await closedPort();
  const server = spawn(NATS_SERVER, ['-a', '127.0.0.1', '-p', String(port), ...args], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  await listening(port);
  return {
    url: `nats://127.0.0.1:${port}`,
    stop: async () => {
      if (server.exitCode === null && server.signalCode === null) server.kill('SIGTERM');
      await exited;
    },
  };
}

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
