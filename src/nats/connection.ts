import { readFileSync } from 'node:fs';
import {
  connect,
  credsAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
} from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { NatsAuth } from '../config.js';
import { describeError } from '../errors.js';

/** Where the connection is. */
export type NatsState = 'connecting' | 'connected' | 'disconnected' | 'closed';

/** Settings of {@link NatsClient}. */
export interface NatsClientOptions {
  readonly url: string;
  /** Shown in the server's connection list. */
  readonly name: string;
  /** How long `start()` waits for the first connection before letting start-up go on without it. */
  readonly startWaitMs: number;
  /** Delay between first-connection attempts. */
  readonly retryMs: number;
  /** How to authenticate; unset: anonymously. */
  readonly auth?: NatsAuth;
  /** TLS files (a CA to trust, a client certificate and key); unset: as the URL says. */
  readonly tls?: { readonly caFile?: string; readonly certFile?: string; readonly keyFile?: string };
  readonly log: Logger;
}

/** The connection options that carry `auth` and `tls`; a creds file is read again at every (re)connect. */
export function securityOptions(
  o: Pick<NatsClientOptions, 'auth' | 'tls'>,
): Pick<ConnectionOptions, 'user' | 'pass' | 'token' | 'authenticator' | 'tls'> {
  const tls = o.tls ? { tls: { ...o.tls } } : {};
  switch (o.auth?.type) {
    case undefined:
      return tls;
    case 'user':
      return { ...tls, user: o.auth.user, pass: o.auth.password };
    case 'token':
      return { ...tls, token: o.auth.token };
    case 'creds': {
      const file = o.auth.file;
      return { ...tls, authenticator: credsAuthenticator(() => readFileSync(file)) };
    }
    default: {
      const unknown: never = o.auth;
      throw new Error(`unknown NATS authentication ${JSON.stringify(unknown)}`);
    }
  }
}

/**
 * The process's one NATS connection. The first connection is retried in the background until it succeeds, so a
 * replica can start while NATS is down; after that the client's own reconnect logic (forever) takes over.
 * `stop()` drains: subscriptions finish what they hold and publishes are flushed before the socket closes.
 */
export class NatsClient {
  readonly name = 'nats';
  readonly #o: NatsClientOptions;
  #nc: NatsConnection | undefined;
  #state: NatsState = 'connecting';
  #stopped = false;
  #retry: NodeJS.Timeout | undefined;
  readonly #listeners: ((nc: NatsConnection) => void)[] = [];

  constructor(options: NatsClientOptions) {
    this.#o = options;
  }

  /** The current state. */
  get state(): NatsState {
    return this.#state;
  }

  /** The connection, once there has been one. */
  get connection(): NatsConnection | undefined {
    return this.#nc;
  }

  /** Calls `listener` with the connection once it exists (at once if it already does). */
  onConnected(listener: (nc: NatsConnection) => void): void {
    if (this.#nc) listener(this.#nc);
    else this.#listeners.push(listener);
  }

  /** Starts connecting; waits at most `startWaitMs` for the first connection. */
  async start(): Promise<void> {
    const first = new Promise<void>((resolve) => this.onConnected(() => resolve()));
    void this.#attempt();
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#o.startWaitMs)));
    await Promise.race([first, waited]);
    clearTimeout(timer);
    if (!this.#nc)
      this.#o.log.warn({ url: withoutCredentials(this.#o.url) }, 'NATS not reachable yet; still trying');
  }

  /** Stops retrying and drains the connection. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#retry);
    const nc = this.#nc;
    if (nc && !nc.isClosed()) {
      await nc
        .drain()
        .catch((err: unknown) => this.#o.log.warn({ err: describeError(err) }, 'NATS drain failed'));
    }
    this.#state = 'closed';
  }

  async #attempt(): Promise<void> {
    if (this.#stopped) return;
    try {
      const nc = await connect({
        servers: this.#o.url,
        name: this.#o.name,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        timeout: Math.max(500, this.#o.retryMs),
        ...securityOptions(this.#o),
      });
      if (this.#stopped) {
        await nc.close();
        return;
      }
      this.#nc = nc;
      this.#state = 'connected';
      this.#o.log.info({ server: nc.getServer() }, 'NATS connected');
      void this.#watch(nc);
      for (const listener of this.#listeners.splice(0)) listener(nc);
    } catch (err) {
      this.#o.log.debug({ err: describeError(err) }, 'NATS connect failed; retrying');
      this.#retry = setTimeout(() => void this.#attempt(), this.#o.retryMs);
      this.#retry.unref();
    }
  }

  async #watch(nc: NatsConnection): Promise<void> {
    for await (const status of nc.status()) {
      switch (status.type) {
        case 'disconnect':
          this.#state = 'disconnected';
          this.#o.log.warn('NATS disconnected');
          break;
        case 'reconnect':
          this.#state = 'connected';
          this.#o.log.info('NATS reconnected');
          break;
        case 'close':
          this.#state = 'closed';
          break;
        default:
          break;
      }
    }
  }
}

/** A URL fit for a log line: user and password removed. */
export function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return '(unparseable url)';
  }
}
