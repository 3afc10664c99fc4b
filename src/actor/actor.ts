import type { Logger } from 'pino';
import { ActorStoppedError } from '../errors.js';
import { Mailbox } from './mailbox.js';

/** Where an actor is in its life. Only a `running` actor accepts messages. */
export type ActorStatus = 'not-started' | 'running' | 'stopping' | 'stopped';

/** A message and the promise that waits for its reply. */
interface Envelope<M> {
  readonly msg: M;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: unknown) => void;
}

/**
 * An actor owns its state and handles one message at a time through a {@link Mailbox}; nothing else touches that
 * state. `M` is the union of its messages (keyed on `type`), `R` maps each message type to its reply type.
 *
 * Lifecycle: `start()` runs `onStart()` and opens the mailbox; `stop()` closes the mailbox, lets every message
 * already queued finish, then runs `onStop()`. A second `stop()` returns the first one's promise.
 */
export abstract class Actor<M extends { type: string }, R extends { [K in M['type']]: unknown }> {
  readonly name: string;
  protected readonly log: Logger;
  readonly #mailbox: Mailbox<Envelope<M>>;
  #status: ActorStatus = 'not-started';
  #stopping: Promise<void> | undefined;

  protected constructor(name: string, log: Logger) {
    this.name = name;
    this.log = log.child({ actor: name });
    this.#mailbox = new Mailbox<Envelope<M>>(
      async (envelope) => {
        try {
          envelope.resolve(await this.receive(envelope.msg));
        } catch (err) {
          envelope.reject(err);
        }
      },
      // Envelope handling catches everything; this only fires if a reply callback itself throws.
      (err) => this.log.error({ err }, 'mailbox handler failed'),
    );
  }

  /** The actor's lifecycle state. */
  get status(): ActorStatus {
    return this.#status;
  }

  /** Messages waiting in the mailbox. */
  get backlog(): number {
    return this.#mailbox.size;
  }

  /** Handles one message; called by the mailbox only, never concurrently. */
  protected abstract receive(msg: M): Promise<R[M['type']]>;

  /** Hook run once by `start()` before the first message is accepted. */
  protected async onStart(): Promise<void> {}

  /** Hook run once by `stop()` after the last queued message was handled. */
  protected async onStop(): Promise<void> {}

  /** Starts the actor; rejects (and leaves it stopped) if `onStart` fails. */
  async start(): Promise<void> {
    if (this.#status !== 'not-started') throw new Error(`${this.name} was already started`);
    try {
      await this.onStart();
    } catch (err) {
      this.#status = 'stopped';
      throw err;
    }
    this.#status = 'running';
  }

  /** Stops accepting messages, finishes the queued ones, then runs `onStop`. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      const wasRunning = this.#status === 'running';
      this.#status = 'stopping';
      await this.#mailbox.close();
      try {
        if (wasRunning) await this.onStop();
      } finally {
        this.#status = 'stopped';
      }
    })();
    return this.#stopping;
  }

  /** Sends a message and waits for its reply. Rejects with ActorStoppedError if the actor is not running. */
  ask<K extends M['type']>(msg: Extract<M, { type: K }>): Promise<R[K]> {
    return new Promise<R[K]>((resolve, reject) => {
      if (
        this.#status !== 'running' ||
        !this.#mailbox.post({ msg, resolve: resolve as (v: unknown) => void, reject })
      ) {
        reject(new ActorStoppedError(this.name));
      }
    });
  }

  /** Sends a message without waiting; a failure is logged, never thrown. Dropped if the actor is not running. */
  tell(msg: M): void {
    if (this.#status !== 'running') return;
    this.#mailbox.post({
      msg,
      resolve: () => undefined,
      reject: (err) => this.log.error({ err, message: msg.type }, 'message failed'),
    });
  }
}
