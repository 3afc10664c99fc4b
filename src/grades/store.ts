import { FIELDS, type Field, type GradeUpdate, type UserGrade } from './model.js';

/** One record's confirmed state: values 0..3, then the stream sequence that last set each of them. */
type Slots = Float64Array;
const SEQ = FIELDS.length;

/** Whether a record belongs in a backup: something confirmed by the stream has set at least one field. */
function confirmed(slots: Slots): boolean {
  for (let i = SEQ; i < 2 * SEQ; i++) if (slots[i] !== 0) return true;
  return false;
}

/** A local write not yet confirmed by the stream. */
interface Provisional {
  readonly value: number;
  /** The local write that set it; only that write's confirmation clears it. */
  readonly n: number;
}

/** A row as the backup carries it: confirmed values and the sequence of each. */
export interface BackupRow {
  readonly user_id: string;
  readonly values: readonly number[];
  readonly seqs: readonly number[];
}

/**
 * The grades in memory, with the merge rule that makes replicas converge ("Convergence" in SPEC):
 * every field carries the stream sequence of the message that last set it, and a message changes a field only
 * if its sequence is higher. A replica's own write shows at once as a provisional value; when the stream
 * confirms it (the publish acknowledgement, or the replica's own message coming back), it becomes an ordinary
 * confirmed value under the same rule, so the outcome never depends on the order messages arrive in or on any
 * clock. Pure data structure: the Grades actor owns it and calls it one message at a time.
 */
export class GradeStore {
  readonly #confirmed = new Map<string, Slots>();
  readonly #provisional = new Map<string, (Provisional | undefined)[]>();
  /** Local writes awaiting confirmation, by write counter. */
  readonly #unconfirmed = new Map<number, GradeUpdate>();

  /** Records held. */
  get size(): number {
    return this.#confirmed.size;
  }

  /** Local writes not yet confirmed by the stream. */
  get unconfirmed(): number {
    return this.#unconfirmed.size;
  }

  /** The record as a reader sees it (provisional values over confirmed ones), or undefined. */
  get(userId: string): UserGrade | undefined {
    const slots = this.#confirmed.get(userId);
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

  /** This replica's write `n`: visible at once, confirmed later by {@link confirm}. */
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

  /** Another replica's write, at stream sequence `seq`. */
  applyRemote(update: GradeUpdate, seq: number): void {
    this.#merge(update.user_id, (field) => update[field], seq);
  }

  /** The stream gave this replica's write `n` the sequence `seq`. Idempotent; an unknown `n` is ignored. */
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

  /** Merges a backup row (joining): each field by the same higher-sequence rule. */
  load(row: BackupRow): void {
    this.#merge(row.user_id, (_, i) => row.values[i], row.seqs, true);
  }

  /**
   * Confirmed rows, for the backup: provisional values are left out (their messages come later in the stream),
   * and so are records nothing confirmed has touched yet.
   */
  *rows(): IterableIterator<BackupRow> {
    for (const [user_id, slots] of this.#confirmed) {
      if (!confirmed(slots)) continue;
      yield { user_id, values: Array.from(slots.subarray(0, SEQ)), seqs: Array.from(slots.subarray(SEQ)) };
    }
  }

  /**
   * The same rows as CSV text, for the backup: appends up to `max` lines from `cursor` (made by
   * {@link backupCursor}) and returns them, or '' when the cursor is exhausted. Reads the typed arrays directly,
   * so a backup of a million records allocates little more than its text.
   */
  static csvLines(cursor: Iterator<[string, Slots]>, max: number, quote: (s: string) => string): string {
    let text = '';
    for (let n = 0; n < max;) {
      const next = cursor.next();
      if (next.done) break;
      const [userId, s] = next.value;
      if (!confirmed(s)) continue;
      text += `${quote(userId)},${s[0]},${s[1]},${s[2]},${s[3]},${s[4]},${s[5]},${s[6]},${s[7]},,\n`;
      n++;
    }
    return text;
  }

  /** A cursor over the confirmed records for {@link GradeStore.csvLines}. */
  backupCursor(): Iterator<[string, Slots]> {
    return this.#confirmed.entries();
  }

  /** Empties the store (a join that has to start over). */
  clear(): void {
    this.#confirmed.clear();
    this.#provisional.clear();
    this.#unconfirmed.clear();
  }

  #slots(userId: string): Slots {
    let slots = this.#confirmed.get(userId);
    if (!slots) this.#confirmed.set(userId, (slots = new Float64Array(2 * SEQ)));
    return slots;
  }

  #merge(
    userId: string,
    valueOf: (field: Field, i: number) => number | undefined,
    seq: number | readonly number[],
    skipEmpty = false,
  ): void {
    const slots = this.#slots(userId);
    FIELDS.forEach((field, i) => {
      const value = valueOf(field, i);
      const s = typeof seq === 'number' ? seq : (seq[i] ?? 0);
      if (value === undefined || (skipEmpty && s === 0)) return;
      if (s > (slots[SEQ + i] as number)) {
        slots[i] = value;
        slots[SEQ + i] = s;
      }
    });
  }
}
