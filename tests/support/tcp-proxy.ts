import { connect, createServer, type Server, type Socket } from 'node:net';

/** How the proxy treats traffic: forward it, refuse connections, or accept and never answer. */
export type ProxyMode = 'pass' | 'refuse' | 'stall';

interface Link {
  readonly client: Socket;
  readonly upstream: Socket | undefined;
  /** Saw a stall: bytes were dropped, so the link cannot be resumed, only cut. */
  tainted: boolean;
}

/**
 * A fault-injecting TCP proxy on loopback, for simulating outages of a real server without touching it.
 * - `pass`: forwards both ways.
 * - `refuse`: the port is closed (connects fail with ECONNREFUSED) and open links are cut.
 * - `stall`: connects are accepted and never answered; open links stop carrying bytes.
 * Returning to `pass` cuts links that stalled (their streams are out of step), as a real network would reset them.
 */
export class TcpFaultProxy {
  readonly #target: { host: string; port: number };
  readonly #links = new Set<Link>();
  #server: Server | undefined;
  #port = 0;
  #mode: ProxyMode = 'pass';

  constructor(target: { host: string; port: number }) {
    this.#target = target;
  }

  /** The loopback port clients should connect to; stays the same across mode changes. */
  get port(): number {
    return this.#port;
  }

  get mode(): ProxyMode {
    return this.#mode;
  }

  /** Links currently open. */
  get connections(): number {
    return this.#links.size;
  }

  /** Starts listening on a free loopback port. */
  async start(): Promise<void> {
    await this.#listen(0);
  }

  /** Switches the fault mode. */
  async setMode(mode: ProxyMode): Promise<void> {
    if (mode === this.#mode) return;
    const previous = this.#mode;
    this.#mode = mode;
    if (mode === 'refuse') {
      this.cut();
      await this.#close();
    } else if (mode === 'stall') {
      for (const link of this.#links) link.tainted = true;
      if (previous === 'refuse') await this.#listen(this.#port);
    } else {
      for (const link of [...this.#links]) if (link.tainted) this.#destroy(link);
      if (previous === 'refuse') await this.#listen(this.#port);
    }
  }

  /** Cuts every open link at once. */
  cut(): void {
    for (const link of [...this.#links]) this.#destroy(link);
  }

  /** Cuts everything and closes the port. */
  async stop(): Promise<void> {
    this.cut();
    await this.#close();
  }

  #accept(client: Socket): void {
    client.on('error', () => undefined);
    if (this.#mode === 'stall') {
      const link: Link = { client, upstream: undefined, tainted: true };
      this.#links.add(link);
      client.on('close', () => this.#links.delete(link));
      return;
    }
    const upstream = connect(this.#target.port, this.#target.host);
    const link: Link = { client, upstream, tainted: false };
    this.#links.add(link);
    upstream.on('error', () => this.#destroy(link));
    client.on('close', () => this.#destroy(link));
    upstream.on('close', () => this.#destroy(link));
    client.on('data', (chunk: Buffer) => {
      if (!link.tainted) upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!link.tainted) client.write(chunk);
    });
  }

  #destroy(link: Link): void {
    this.#links.delete(link);
    link.client.destroy();
    link.upstream?.destroy();
  }

  #listen(port: number): Promise<void> {
    const server = createServer((socket) => this.#accept(socket));
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        const address = server.address();
        if (address && typeof address === 'object') this.#port = address.port;
        resolve();
      });
    });
  }

  #close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return Promise.resolve();
    return new Promise((resolve) => server.close(() => resolve()));
  }
}

/** A loopback listener that accepts connections and never answers: a black hole. */
export async function startBlackHole(): Promise<{ port: number; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    stop: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A loopback port with nothing listening on it (connects are refused). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
