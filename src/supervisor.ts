import type { Logger } from 'pino';
import { describeError } from './errors.js';

/** Anything the supervisor starts and stops: an actor, a server, a connection pool. */
export interface Component {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Where the supervisor is in its life. */
export type SupervisorStatus = 'not-started' | 'starting' | 'running' | 'stopping' | 'stopped';

/**
 * Starts components in dependency order and stops them in reverse. If one fails to start, those already started
 * are stopped again and the error is rethrown. A component that fails to stop is logged and the others still
 * stop. A second `stop()` returns the first one's promise.
 */
export class Supervisor {
  readonly #components: readonly Component[];
  readonly #log: Logger;
  readonly #started: Component[] = [];
  #status: SupervisorStatus = 'not-started';
  #stopping: Promise<void> | undefined;

  constructor(components: readonly Component[], log: Logger) {
    this.#components = components;
    this.#log = log;
  }

  /** Component names in start order (stop runs the reverse). */
  get order(): string[] {
    return this.#components.map((c) => c.name);
  }

  /** The current lifecycle state. */
  get status(): SupervisorStatus {
    return this.#status;
  }

  /** Starts every component in order. */
  async start(): Promise<void> {
    if (this.#status !== 'not-started') throw new Error('supervisor was already started');
    this.#status = 'starting';
    for (const component of this.#components) {
      try {
        await component.start();
        this.#started.push(component);
        this.#log.debug({ component: component.name }, 'started');
      } catch (err) {
        this.#log.error({ component: component.name, err: describeError(err) }, 'start failed');
        await this.stop();
        throw err;
      }
    }
    this.#status = 'running';
  }

  /** Stops every started component in reverse order. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#status = 'stopping';
      for (const component of [...this.#started].reverse()) {
        try {
          await component.stop();
          this.#log.debug({ component: component.name }, 'stopped');
        } catch (err) {
          this.#log.error({ component: component.name, err: describeError(err) }, 'stop failed');
        }
      }
      this.#status = 'stopped';
    })();
    return this.#stopping;
  }
}
