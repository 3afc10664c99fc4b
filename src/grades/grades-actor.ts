import type { Logger } from 'pino';
import { Actor } from '../actor/actor.js';
import type { GradeUpdate, ReplicationMessage, UserGrade } from './model.js';
import { GradeStore, type BackupRow } from './store.js';

/** Quotes a CSV field when it needs it (RFC 4180). */
export function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** The Grades actor's messages. */
export type GradesMessage =
  | { readonly type: 'set'; readonly update: GradeUpdate }
  | { readonly type: 'get'; readonly userId: string }
  | { readonly type: 'stream'; readonly seq: number; readonly msg: ReplicationMessage }
  | { readonly type: 'confirm'; readonly n: number; readonly seq: number }
  | { readonly type: 'load'; readonly rows: readonly BackupRow[] }
  | { readonly type: 'restart'; readonly position: number }
  | { readonly type: 'backupOpen' }
  | { readonly type: 'backupNext'; readonly id: number; readonly max: number }
  | { readonly type: 'backupClose'; readonly id: number };

/** The reply to each message type. */
export interface GradesReplies {
  set: UserGrade;
  get: UserGrade | undefined;
  stream: void;
  confirm: void;
  load: void;
  restart: void;
  backupOpen: { id: number; position: number };
  /** CSV lines, '' once the backup has every row. */
  backupNext: string;
  backupClose: void;
}

/** Settings of {@link GradesActor}. */
export interface GradesActorOptions {
  /** Names this process in the messages it publishes; its own messages come back and only confirm writes. */
  readonly origin: string;
  /** Hands a local write to replication (the outbox); absent when the replica runs without NATS. */
  readonly publish?: (msg: ReplicationMessage) => void;
  readonly log: Logger;
}

/**
 * Owns the grades in memory (G3) and the stream position they reflect. HTTP front ends, the replication
 * consumer, publish acknowledgements and backups all reach it through its mailbox, one message at a time, so a
 * backup iterates the records between writes without stopping them.
 */
export class GradesActor extends Actor<GradesMessage, GradesReplies> {
  readonly #store = new GradeStore();
  readonly #o: GradesActorOptions;
  readonly #backups = new Map<number, Iterator<[string, Float64Array]>>();
  #nextN = 1;
  #nextBackup = 1;
  /** The highest stream sequence applied: every message up to it is reflected. */
  #position = 0;

  constructor(options: GradesActorOptions) {
    super('grades', options.log);
    this.#o = options;
  }

  /**
   * Reads a record without a message. Safe because every message of this actor is handled synchronously: between
   * two messages the store is always consistent, and a synchronous read cannot observe a half-applied one. Only
   * reads take this path; every change goes through the mailbox. It lets `GET /get` answer within the request
   * event, which is what keeps reads close to a bare server's speed.
   */
  peek(userId: string): UserGrade | undefined {
    return this.#store.get(userId);
  }

  /** Stream position, record count and unconfirmed writes, for readiness and metrics. */
  get state(): { position: number; records: number; unconfirmed: number } {
    return { position: this.#position, records: this.#store.size, unconfirmed: this.#store.unconfirmed };
  }

  protected override receive(msg: GradesMessage): Promise<GradesReplies[GradesMessage['type']]> {
    // Every message is handled synchronously: the store lives in memory. The mailbox still orders them.
    return Promise.resolve(this.#handle(msg));
  }

  #handle(msg: GradesMessage): GradesReplies[GradesMessage['type']] {
    switch (msg.type) {
      case 'set': {
        const n = this.#nextN++;
        const record = this.#store.applyLocal(msg.update, n);
        this.#o.publish?.({ origin: this.#o.origin, n, update: msg.update });
        return record;
      }
      case 'get':
        return this.#store.get(msg.userId);
      case 'stream':
        if (msg.seq <= this.#position) return; // already reflected (a backup, or a redelivery)
        if (msg.msg.origin === this.#o.origin) this.#store.confirm(msg.msg.n, msg.seq);
        else this.#store.applyRemote(msg.msg.update, msg.seq);
        this.#position = msg.seq;
        return;
      case 'confirm':
        this.#store.confirm(msg.n, msg.seq);
        return;
      case 'load':
        for (const row of msg.rows) this.#store.load(row);
        return;
      case 'restart':
        this.#store.clear();
        this.#backups.clear();
        this.#position = msg.position;
        return;
      case 'backupOpen': {
        const id = this.#nextBackup++;
        this.#backups.set(id, this.#store.backupCursor());
        return { id, position: this.#position };
      }
      case 'backupNext': {
        const cursor = this.#backups.get(msg.id);
        if (!cursor) return '';
        const text = GradeStore.csvLines(cursor, msg.max, csvField);
        if (text === '') this.#backups.delete(msg.id);
        return text;
      }
      case 'backupClose':
        this.#backups.delete(msg.id);
        return;
      default: {
        const unknown: never = msg;
        throw new Error(`unknown message ${JSON.stringify(unknown)}`);
      }
    }
  }
}
