import type { BackupStream } from './backup.js';
import type { GradeUpdate, UserGrade } from './model.js';

/** How a write was kept, which decides its HTTP answer. */
export type SetOutcome =
  /** Stored in the replication stream at `seq`: durable and on its way to every replica (200). */
  | { readonly status: 'stored'; readonly seq: number; readonly record: UserGrade }
  /** Synced to the local outbox log during an outage: kept, not yet replicated (202). */
  | { readonly status: 'logged'; readonly record: UserGrade }
  /** A replica without replication (standalone): in memory only, as configured (200). */
  | { readonly status: 'local'; readonly record: UserGrade };

/**
 * What the grades HTTP routes need of a replica, and all they may use of it (the Grades actor stays behind it).
 *
 * Contract of {@link GradesPort.get}: it is synchronous and reads the actor's state directly. That is safe
 * because the actor is the single writer and handles every message synchronously on the same thread as the
 * caller, so a read always sees the state between two whole messages; `tests/unit/grades/grades-replica.test.ts`
 * holds a read to that. Everything that changes state or iterates it (`set`, `backup`) goes through the
 * actor's mailbox.
 */
export interface GradesPort {
  /** True once the replica serves reads and writes. */
  readonly ready: boolean;
  /** The record as this replica serves it, or undefined. Synchronous (see above). */
  get(userId: string): UserGrade | undefined;
  /** Takes a write; resolves once it is kept (see {@link SetOutcome}), rejects with a coded error otherwise. */
  set(update: GradeUpdate): Promise<SetOutcome>;
  /** Streams exactly what {@link get} serves, as csv.gz. */
  backup(): Promise<BackupStream>;
}
