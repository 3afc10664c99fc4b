import { FIELDS, type Field, type GradeUpdate, type UserGrade } from './model.js';

/** One record: values 0..3, then the stream sequence that last set each of them (0: none did). */
type Slots = Float64Array;
const SEQ = FIELDS.length;

/** A local write not yet stored by the stream. */
interface Provisional {
  readonly value: number;
  /** The local write that set it; only that write's confirmation clears it. */
  readonly n: number;
}

/**
 * A row as the backup carries it: the values `/get` serves and the stream sequence of each. A sequence of 0
 * marks a value no stream message has set (a field never set, a write not yet replicated, or a standalone
 * replica's write): a joiner holds it at the lowest precedence, so any stream message for that field wins.
 */
export interface BackupRow {
  readonly user_id: string;
  readonly values: readonly number[];
  readonly seqs: readonly number[];
}

/**
 * The grades in memory, with the merge rule that makes replicas converge ("Convergence" in SPEC): every field
 * carries the stream sequence of the message that last set it, and a message changes a field only if its
 * sequence is at least the field's (equal only for writes of the same message, applied in their order). A write
 * accepted while the stream was unreachable shows at once as a provisional value; when the stream stores it, it
 * becomes an ordinary value under the same rule, so the outcome never depends on the order messages arrive in
 * or on any clock. Pure data structure: the Grades actor owns it and calls it one message at a time.
 */
export class GradeStore {
  readonly #records = new Map<string, Slots>();
  readonly #provisional = new Map<string, (Provisional | undefined)[]>();
  /** Provisional local writes awaiting the stream, by write counter. */
  readonly #unconfirmed = new Map<number, GradeUpdate>();

  /** Records held. */
  get size(): number {
    return this.#records.size;
  }

  /** Local writes not yet confirmed by the stream. */
  get unconfirmed(): number {
    return this.#unconfirmed.size;
  }

  /** The record as a reader sees it (provisional values over stored ones), or undefined. */
  get(userId: string): UserGrade | undefined {
    const slots = this.#records.get(userId);
    if (!slots) return undefined;
    const o = this.#provisional.get(userId);
    // One literal of fixed shape: reads are the hot path.
    return {
      user_id: userId,
      postpaid_limit: o?.[0]?.value ?? (slots[0] as number),
      spp: o?.[1]?.value ?? (slots[1] as number),
      shipping_fee: o?.[2]?.value ?? (slots[2] as number),
      return_fee: o?.[3]?.value ?? (slots[3] as number),
    };
  }

  /** This replica's write `n`, kept locally until the stream stores it (then {@link confirm}). */
  applyLocal(update: GradeUpdate, n: number): UserGrade {
    this.#slots(update.user_id);
    let overlay = this.#provisional.get(update.user_id);
    FIELDS.forEach((field, i) => {
      const value = update[field];
      if (value === undefined) return;
      overlay ??= new Array<Provisional | undefined>(FIELDS.length).fill(undefined);
      overlay[i] = { value, n };
    });
    if (overlay) this.#provisional.set(update.user_id, overlay);
    this.#unconfirmed.set(n, update);
    return this.get(update.user_id) as UserGrade;
  }

  /**
   * A write of a replica without a stream (standalone): it replaces the values and marks them as set by no
   * stream message (sequence 0), which is what they are.
   */
  applyUnreplicated(update: GradeUpdate): UserGrade {
    const slots = this.#slots(update.user_id);
    FIELDS.forEach((field, i) => {
      const value = update[field];
      if (value === undefined) return;
      slots[i] = value;
      slots[SEQ + i] = 0;
    });
    return this.get(update.user_id) as UserGrade;
  }

  /** A write the stream stored at sequence `seq` (any replica's, this one's included). */
  applyStored(update: GradeUpdate, seq: number): UserGrade {
    this.#merge(update.user_id, (field) => update[field], seq);
    return this.get(update.user_id) as UserGrade;
  }

  /** Another replica's write, at stream sequence `seq` (the same as {@link applyStored}). */
  applyRemote(update: GradeUpdate, seq: number): void {
    this.#merge(update.user_id, (field) => update[field], seq);
  }

  /**
   * A stream message at `seq`: its writes in order. Writes of this replica that are still provisional are
   * confirmed by it (their provisional values give way); every other write is applied as stored.
   */
  applyMessage(updates: readonly GradeUpdate[], firstN: number, seq: number, own: boolean): void {
    updates.forEach((update, i) => {
      if (own && this.#unconfirmed.has(firstN + i)) this.confirm(firstN + i, seq);
      else this.#merge(update.user_id, (field) => update[field], seq);
    });
  }

  /** The stream stored this replica's provisional write `n` at `seq`. Idempotent; an unknown `n` is ignored. */
  confirm(n: number, seq: number): void {
    const update = this.#unconfirmed.get(n);
    if (!update) return;
    this.#unconfirmed.delete(n);
    this.#merge(update.user_id, (field) => update[field], seq);
    const overlay = this.#provisional.get(update.user_id);
    if (!overlay) return;
    FIELDS.forEach((_, i) => {
      if (overlay[i]?.n === n) overlay[i] = undefined;
    });
    if (overlay.every((p) => p === undefined)) this.#provisional.delete(update.user_id);
  }

  /** Merges a backup row (joining): each field by the same sequence rule, the record created even if empty. */
  load(row: BackupRow): void {
    this.#merge(row.user_id, (_, i) => row.values[i], row.seqs);
  }

  /** Every record exactly as {@link get} serves it, for the backup (see {@link BackupRow} for sequence 0). */
  *rows(): IterableIterator<BackupRow> {
    for (const [user_id, slots] of this.#records) {
      const o = this.#provisional.get(user_id);
      const values: number[] = [];
      const seqs: number[] = [];
      for (let i = 0; i < SEQ; i++) {
        const p = o?.[i];
        values.push(p ? p.value : (slots[i] as number));
        seqs.push(p ? 0 : (slots[SEQ + i] as number));
      }
      yield { user_id, values, seqs };
    }
  }

  /**
   * The same rows as CSV text, for the backup: appends up to `max` lines from `cursor` (made by
   * {@link backupCursor}) and returns them, or '' when the cursor is exhausted. Reads the typed arrays directly,
   * so a backup of a million records allocates little more than its text. `tail` ends every line (the empty
   * metadata columns).
   */
  csvLines(
    cursor: Iterator<[string, Slots]>,
    max: number,
    quote: (s: string) => string,
    tail: string,
  ): string {
    let text = '';
    for (let n = 0; n < max; n++) {
      const next = cursor.next();
      if (next.done) break;
      const [userId, s] = next.value;
      const o = this.#provisional.get(userId);
      if (o) {
        const v = (i: number) => (o[i] ? `${o[i].value}` : `${s[i]}`);
        const q = (i: number) => (o[i] ? '0' : `${s[SEQ + i]}`);
        text += `${quote(userId)},${v(0)},${v(1)},${v(2)},${v(3)},${q(0)},${q(1)},${q(2)},${q(3)}${tail}\n`;
      } else {
        text += `${quote(userId)},${s[0]},${s[1]},${s[2]},${s[3]},${s[4]},${s[5]},${s[6]},${s[7]}${tail}\n`;
      }
    }
    return text;
  }

  /** A cursor over every record for {@link GradeStore.csvLines}. */
  backupCursor(): Iterator<[string, Slots]> {
    return this.#records.entries();
  }

  /** Empties the store (a join that has to start over). */
  clear(): void {
    this.#records.clear();
    this.#provisional.clear();
    this.#unconfirmed.clear();
  }

  #slots(userId: string): Slots {
    let slots = this.#records.get(userId);
    if (!slots) this.#records.set(userId, (slots = new Float64Array(2 * SEQ)));
    return slots;
  }

  #merge(
    userId: string,
    valueOf: (field: Field, i: number) => number | undefined,
    seq: number | readonly number[],
  ): void {
    const slots = this.#slots(userId);
    FIELDS.forEach((field, i) => {
      const value = valueOf(field, i);
      const s = typeof seq === 'number' ? seq : (seq[i] ?? 0);
      if (value === undefined) return;
      // `>=`: the writes of one message share its sequence and are applied in order, the later one winning;
      // a message applied twice (an acknowledgement, then the message itself) ends the same way.
      if (s >= (slots[SEQ + i] as number)) {
        slots[i] = value;
        slots[SEQ + i] = s;
      }
    });
  }
}
