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
import { withoutCredentials } from '../log.js';

/** Where the connection is. */
export type NatsState = 'connecting' | 'connected' | 'disconnected' | 'closed';

/** Settings of {@link NatsClient}. */
export interface NatsClientOptions {
  readonly url: string;
  /** Shown in the server's connection list. */
  readonly name: string;
  /** How long `start()` waits for the first connection before letting start-up go on without it. */
  readonly startWaitMs: number;
  /** Delay between connection attempts, the first connection's and reconnections' alike. */
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
 * The process's one NATS connection. The client itself retries the first connection (`waitOnFirstConnect`) and
 * reconnects forever after it, so a replica can start while NATS is down; `start()` only waits `startWaitMs`
 * for it. `stop()` drains: subscriptions finish what they hold and publishes are flushed before the socket
 * closes. A stop before the first connection ends the client's dial loop at its next attempt.
 */
export class NatsClient {
  readonly name = 'nats';
  readonly #o: NatsClientOptions;
  #nc: NatsConnection | undefined;
  #connecting: Promise<void> | undefined;
  #state: NatsState = 'connecting';
  #stopped = false;
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
    this.#connecting = connect({
      servers: this.#o.url,
      name: this.#o.name,
      waitOnFirstConnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: this.#o.retryMs,
      timeout: Math.max(500, this.#o.retryMs),
      ...securityOptions(this.#o),
      // Asked before every dial: the client documents that a throw here ends a first connection still under
      // way, which is how a stop before NATS was ever reached ends the client's retry loop.
      reconnectToServer: () => {
        if (this.#stopped) throw new Error('NATS client stopped');
        return null;
      },
    }).then(
      (nc) => this.#connected(nc),
      (err: unknown) => {
        if (!this.#stopped) this.#o.log.error({ err: describeError(err) }, 'NATS connection gave up');
        this.#state = 'closed';
      },
    );
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#o.startWaitMs)));
    await Promise.race([this.#connecting, waited]);
    clearTimeout(timer);
    if (!this.#nc)
      this.#o.log.warn({ url: withoutCredentials(this.#o.url) }, 'NATS not reachable yet; still trying');
  }

  /** Ends a first connection still under way, or drains the connection. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const nc = this.#nc;
    if (nc && !nc.isClosed()) {
      await nc
        .drain()
        .catch((err: unknown) => this.#o.log.warn({ err: describeError(err) }, 'NATS drain failed'));
    }
    this.#state = 'closed';
  }

  async #connected(nc: NatsConnection): Promise<void> {
    if (this.#stopped) {
      await nc.close();
      return;
    }
    this.#nc = nc;
    this.#state = 'connected';
    this.#o.log.info({ server: nc.getServer() }, 'NATS connected');
    void this.#watch(nc);
    for (const listener of this.#listeners.splice(0)) listener(nc);
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
