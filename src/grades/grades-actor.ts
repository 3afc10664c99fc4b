import type { Logger } from 'pino';
import { Actor } from '../actor/actor.js';
import { BACKUP_COLUMNS, csvField, type BackupSource } from './backup.js';
import type { GradeUpdate, ReplicationMessage, UserGrade } from './model.js';
import { GradeStore, type BackupCursor, type BackupRow } from './store.js';
import { lastN } from './wire.js';

/** Quotes a CSV field when it needs it (RFC 4180); defined beside the backup's reader. */
export { csvField };

/** The empty metadata columns that end every record line of a backup. */
const ROW_TAIL = ','.repeat(BACKUP_COLUMNS.length - 9);

/** One of this replica's writes the stream stored; `provisional` when it was shown before (a logged write). */
export interface StoredWrite {
  readonly n: number;
  readonly update: GradeUpdate;
  readonly provisional: boolean;
}

/** The Grades actor's messages. */
export type GradesMessage =
  /** A write of a replica without a stream (standalone). */
  | { readonly type: 'unreplicated'; readonly update: GradeUpdate }
  /** This replica's write `n`, accepted while the stream is unreachable: provisional until confirmed. */
  | { readonly type: 'local'; readonly n: number; readonly update: GradeUpdate }
  /**
   * The stream stored these writes of this replica, in this order, in one message at `seq`: provisional ones
   * are confirmed, the others applied (the reply holds the record after each, undefined for provisional ones).
   */
  | { readonly type: 'stored'; readonly seq: number; readonly writes: readonly StoredWrite[] }
  /** The message at `seq` from the consumer; `own` when this replica's origin wrote it. */
  | { readonly type: 'stream'; readonly seq: number; readonly msg: ReplicationMessage; readonly own: boolean }
  /** A malformed message at `seq`: nothing to apply, but the position moves past it. */
  | { readonly type: 'skip'; readonly seq: number }
  | { readonly type: 'load'; readonly rows: readonly BackupRow[] }
  /**
   * Empties the store: the data will reflect the stream up to `position` of the stream made at `streamCreated`,
   * and `marks` (a backup's) are each origin's last write counter applied up to there.
   */
  | {
      readonly type: 'restart';
      readonly position: number;
      readonly streamCreated: string;
      readonly marks?: ReadonlyMap<string, number>;
    }
  | { readonly type: 'backupOpen' }
  | { readonly type: 'backupNext'; readonly id: number; readonly max: number }
  | { readonly type: 'backupClose'; readonly id: number };

/** What became of a stream message (see {@link GradesReplies.stream}). */
export type StreamOutcome =
  { readonly status: 'applied' | 'reflected' } | { readonly status: 'replayed'; readonly mark: number };

/** The reply to each message type. */
export interface GradesReplies {
  unreplicated: UserGrade;
  local: UserGrade;
  stored: (UserGrade | undefined)[];
  /**
   * `applied`; `reflected` when at or below the position (a backup or a redelivery); `replayed` when its origin's
   * mark already covers it (a copy of an older message, skipped).
   */
  stream: StreamOutcome;
  skip: void;
  load: void;
  restart: void;
  backupOpen: { id: number; position: number; streamCreated: string; marks: ReadonlyMap<string, number> };
  /** CSV lines (UTF-8), empty once the backup has every row. */
  backupNext: Buffer;
  backupClose: void;
}

/** What the actor holds, for readiness and metrics. */
export interface GradesActorState {
  /** The highest stream sequence applied: every message up to it is reflected. */
  readonly position: number;
  readonly records: number;
  /** Provisional local writes the stream has not stored yet. */
  readonly unconfirmed: number;
}

/**
 * Owns the grades in memory (G3) and the stream position they reflect. Local writes, the replication consumer,
 * publish acknowledgements and backups all reach it through its mailbox, one message at a time, so a backup
 * iterates the records between writes without stopping them. Reads are the one exception ({@link peek}).
 */
export class GradesActor extends Actor<GradesMessage, GradesReplies> {
  readonly #store = new GradeStore();
  readonly #backups = new Map<number, BackupCursor>();
  #nextBackup = 1;
  #position = 0;
  #streamCreated = '';
  /**
   * Per origin, the last write counter of the messages applied from the stream up to {@link #position}. Honest
   * writers publish strictly increasing, non-overlapping ranges per origin (the outbox's expected last subject
   * sequence), so a message that ends at or below its origin's mark is a copy of one already applied: a replay,
   * which would otherwise win by its newer sequence. Only stream messages move it, in stream order, so it always
   * matches the position (and a backup carries both); this replica's acknowledged writes ('stored') come back
   * through the stream and move it then, since a replay always lands after the genuine copy.
   */
  readonly #marks = new Map<string, number>();

  constructor(options: { readonly log: Logger }) {
    super('grades', options.log);
  }

  /**
   * Reads a record without a message. Safe because every message of this actor is handled synchronously on
   * the thread that calls this: between two messages the store is always consistent, and a synchronous read
   * cannot observe a half-applied one. Only reads take this path; every change goes through the mailbox. It
   * lets `GET /get` answer within the request event, which keeps reads close to a bare server's speed.
   */
  peek(userId: string): UserGrade | undefined {
    return this.#store.get(userId);
  }

  /** Stream position, record count and provisional writes. */
  get state(): GradesActorState {
    return { position: this.#position, records: this.#store.size, unconfirmed: this.#store.unconfirmed };
  }

  protected override receive(msg: GradesMessage): Promise<GradesReplies[GradesMessage['type']]> {
    // Every message is handled synchronously: the store lives in memory. The mailbox still orders them.
    return Promise.resolve(this.#handle(msg));
  }

  #handle(msg: GradesMessage): GradesReplies[GradesMessage['type']] {
    switch (msg.type) {
      case 'unreplicated':
        return this.#store.applyUnreplicated(msg.update);
      case 'local':
        return this.#store.applyLocal(msg.update, msg.n);
      case 'stored':
        return msg.writes.map((w) => {
          if (!w.provisional) return this.#store.applyStored(w.update, msg.seq);
          this.#store.confirm(w.n, msg.seq);
          return undefined;
        });
      case 'stream': {
        if (msg.seq <= this.#position) return { status: 'reflected' }; // a backup holds it, or a redelivery
        // The position moves past a replay too: it is no gap.
        this.#position = msg.seq;
        const mark = this.#marks.get(msg.msg.origin) ?? 0;
        const last = lastN(msg.msg);
        if (last <= mark) return { status: 'replayed', mark };
        this.#marks.set(msg.msg.origin, last);
        this.#store.applyMessage(msg.msg.updates, msg.msg.n, msg.seq, msg.own);
        return { status: 'applied' };
      }
      case 'skip':
        if (msg.seq > this.#position) this.#position = msg.seq;
        return;
      case 'load':
        for (const row of msg.rows) this.#store.load(row);
        return;
      case 'restart':
        this.#store.clear();
        this.#backups.clear();
        this.#position = msg.position;
        this.#streamCreated = msg.streamCreated;
        this.#marks.clear();
        for (const [origin, n] of msg.marks ?? []) this.#marks.set(origin, n);
        return;
      case 'backupOpen': {
        const id = this.#nextBackup++;
        this.#backups.set(id, this.#store.backupCursor());
        // The marks as of the position: the records may run ahead of both, which the sequences make harmless.
        return {
          id,
          position: this.#position,
          streamCreated: this.#streamCreated,
          marks: new Map(this.#marks),
        };
      }
      case 'backupNext': {
        const cursor = this.#backups.get(msg.id);
        if (!cursor) return Buffer.alloc(0);
        const lines = this.#store.csvChunk(cursor, msg.max, csvField, ROW_TAIL);
        if (lines.length === 0) this.#backups.delete(msg.id);
        return lines;
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

/** A backup's rows read from `actor` through its mailbox (see {@link BackupSource}). */
export function backupSource(actor: GradesActor): BackupSource {
  return {
    open: () => actor.ask({ type: 'backupOpen' }),
    next: (id, max) => actor.ask({ type: 'backupNext', id, max }),
    close: (id) => actor.tell({ type: 'backupClose', id }),
  };
}
