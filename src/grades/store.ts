import { KeyIndex } from './key-index.js';
import { FIELDS, type Field, type GradeUpdate, type UserGrade } from './model.js';

/** Values per record: the four fields, then the stream sequence that last set each of them (0: none did). */
const WIDTH = 2 * FIELDS.length;
const SEQ = FIELDS.length;
/** Records per chunk of the record columns: 2^16, so a chunk is 2 MiB narrow and 4 MiB wide. */
const CHUNK_BITS = 16;
const CHUNK_RECORDS = 1 << CHUNK_BITS;
const CHUNK_MASK = CHUNK_RECORDS - 1;
/** Records the first chunk starts with; it doubles up to a whole chunk, so a small store stays small. */
const FIRST_CHUNK_RECORDS = 256;
/**
 * One chunk of records: narrow (32-bit integers, 32 bytes a record) while every value and sequence in it fits,
 * widened for good to float64 (64 bytes a record, every safe integer exact) by the first one that does not.
 */
type Chunk = Int32Array | Float64Array;

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

/** A position in the records for {@link GradeStore.csvLines}, made by {@link GradeStore.backupCursor}. */
export interface BackupCursor {
  /** The next slot to read. */
  slot: number;
}

/**
 * The grades in memory, with the merge rule that makes replicas converge ("Convergence" in SPEC): every field
 * carries the stream sequence of the message that last set it, and a message changes a field only if its
 * sequence is at least the field's (equal only for writes of the same message, applied in their order). A write
 * accepted while the stream was unreachable shows at once as a provisional value; when the stream stores it, it
 * becomes an ordinary value under the same rule, so the outcome never depends on the order messages arrive in
 * or on any clock. Pure data structure: the Grades actor owns it and calls it one message at a time.
 *
 * Layout, for memory (every replica holds every record): an index from `user_id` to a slot number
 * ({@link KeyIndex}, outside the V8 heap), and the records' values and sequences in chunked typed arrays, eight
 * numbers per slot. Records are never removed (only {@link clear} empties the store), so slots are handed out in
 * order, and slot order is the order records were created in. A chunk stores 32-bit integers until a value or sequence that does not fit one arrives, and is then
 * widened to float64 (see {@link Chunk}): values and sequences are safe integers, so nothing is ever rounded.
 * Provisional values live in a side map, only for records that have one.
 */
export class GradeStore {
  readonly #index = new KeyIndex();
  readonly #chunks: Chunk[] = [];
  readonly #provisional = new Map<string, (Provisional | undefined)[]>();
  /** Provisional local writes awaiting the stream, by write counter. */
  readonly #unconfirmed = new Map<number, GradeUpdate>();

  /** Records held. */
  get size(): number {
    return this.#index.size;
  }

  /** Local writes not yet confirmed by the stream. */
  get unconfirmed(): number {
    return this.#unconfirmed.size;
  }

  /** Bytes of the index's buffers (outside the V8 heap, like the columns). */
  get indexBytes(): number {
    return this.#index.bytes;
  }

  /** Bytes of the typed arrays holding the records (outside the V8 heap: `arrayBuffers` in `process.memoryUsage()`). */
  get columnBytes(): number {
    let bytes = 0;
    for (const chunk of this.#chunks) bytes += chunk.byteLength;
    return bytes;
  }

  /** The record as a reader sees it (provisional values over stored ones), or undefined. */
  get(userId: string): UserGrade | undefined {
    const slot = this.#index.find(userId);
    if (slot < 0) return undefined;
    const c = this.#chunks[slot >>> CHUNK_BITS] as Chunk;
    const at = (slot & CHUNK_MASK) * WIDTH;
    const o = this.#provisional.size === 0 ? undefined : this.#provisional.get(userId);
    // One literal of fixed shape: reads are the hot path.
    return {
      user_id: userId,
      postpaid_limit: o?.[0]?.value ?? (c[at] as number),
      spp: o?.[1]?.value ?? (c[at + 1] as number),
      shipping_fee: o?.[2]?.value ?? (c[at + 2] as number),
      return_fee: o?.[3]?.value ?? (c[at + 3] as number),
    };
  }

  /** This replica's write `n`, kept locally until the stream stores it (then {@link confirm}). */
  applyLocal(update: GradeUpdate, n: number): UserGrade {
    this.#slot(update.user_id);
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
    const slot = this.#slot(update.user_id);
    for (let i = 0; i < SEQ; i++) {
      const value = update[FIELDS[i] as Field];
      if (value === undefined) continue;
      this.#put(slot, i, value);
      this.#put(slot, SEQ + i, 0);
    }
    return this.get(update.user_id) as UserGrade;
  }

  /** A write the stream stored at sequence `seq` (any replica's, this one's included). */
  applyStored(update: GradeUpdate, seq: number): UserGrade {
    this.#mergeUpdate(update, seq);
    return this.get(update.user_id) as UserGrade;
  }

  /** Another replica's write, at stream sequence `seq` (the same as {@link applyStored}). */
  applyRemote(update: GradeUpdate, seq: number): void {
    this.#mergeUpdate(update, seq);
  }

  /**
   * A stream message at `seq`: its writes in order. Writes of this replica that are still provisional are
   * confirmed by it (their provisional values give way); every other write is applied as stored.
   */
  applyMessage(updates: readonly GradeUpdate[], firstN: number, seq: number, own: boolean): void {
    updates.forEach((update, i) => {
      if (own && this.#unconfirmed.has(firstN + i)) this.confirm(firstN + i, seq);
      else this.#mergeUpdate(update, seq);
    });
  }

  /** The stream stored this replica's provisional write `n` at `seq`. Idempotent; an unknown `n` is ignored. */
  confirm(n: number, seq: number): void {
    const update = this.#unconfirmed.get(n);
    if (!update) return;
    this.#unconfirmed.delete(n);
    this.#mergeUpdate(update, seq);
    const overlay = this.#provisional.get(update.user_id);
    if (!overlay) return;
    FIELDS.forEach((_, i) => {
      if (overlay[i]?.n === n) overlay[i] = undefined;
    });
    if (overlay.every((p) => p === undefined)) this.#provisional.delete(update.user_id);
  }

  /** Merges a backup row (joining): each field by the same sequence rule, the record created even if empty. */
  load(row: BackupRow): void {
    const slot = this.#slot(row.user_id);
    for (let i = 0; i < SEQ; i++) {
      const value = row.values[i];
      if (value !== undefined) this.#merge(slot, i, value, row.seqs[i] ?? 0);
    }
  }

  /** Every record exactly as {@link get} serves it, for the backup (see {@link BackupRow} for sequence 0). */
  *rows(): IterableIterator<BackupRow> {
    for (let slot = 0; slot < this.#index.size; slot++) {
      const user_id = this.#index.key(slot);
      const c = this.#chunks[slot >>> CHUNK_BITS] as Chunk;
      const at = (slot & CHUNK_MASK) * WIDTH;
      const o = this.#provisional.get(user_id);
      const values: number[] = [];
      const seqs: number[] = [];
      for (let i = 0; i < SEQ; i++) {
        const p = o?.[i];
        values.push(p ? p.value : (c[at + i] as number));
        seqs.push(p ? 0 : (c[at + SEQ + i] as number));
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
  csvLines(cursor: BackupCursor, max: number, quote: (s: string) => string, tail: string): string {
    let text = '';
    for (let n = 0; n < max; n++) {
      const slot = cursor.slot;
      if (slot >= this.#index.size) break;
      cursor.slot++;
      const userId = this.#index.key(slot);
      const s = this.#chunks[slot >>> CHUNK_BITS] as Chunk;
      const a = (slot & CHUNK_MASK) * WIDTH;
      const o = this.#provisional.size === 0 ? undefined : this.#provisional.get(userId);
      if (o) {
        const v = (i: number) => (o[i] ? `${o[i].value}` : `${s[a + i]}`);
        const q = (i: number) => (o[i] ? '0' : `${s[a + SEQ + i]}`);
        text += `${quote(userId)},${v(0)},${v(1)},${v(2)},${v(3)},${q(0)},${q(1)},${q(2)},${q(3)}${tail}\n`;
      } else {
        text += `${quote(userId)},${s[a]},${s[a + 1]},${s[a + 2]},${s[a + 3]},${s[a + 4]},${s[a + 5]},${s[a + 6]},${s[a + 7]}${tail}\n`;
      }
    }
    return text;
  }

  /**
   * The same lines as {@link csvLines}, written as bytes (UTF-8): the backup's path. Keys are copied from the
   * index and numbers written digit by digit, so a chunk costs one buffer instead of a string per field and line;
   * `tests/unit/grades/store-layout.test.ts` holds it to {@link csvLines}. An empty buffer once the cursor is
   * exhausted.
   */
  csvChunk(cursor: BackupCursor, max: number, quote: (s: string) => string, tail: string): Buffer {
    // `tail` is the empty metadata columns: commas, written byte by byte below.
    let buf = Buffer.allocUnsafe(max * 96);
    let p = 0;
    for (let n = 0; n < max; n++) {
      const slot = cursor.slot;
      if (slot >= this.#index.size) break;
      cursor.slot++;
      // The longest line: a plain key, nine commas, eight numbers of at most 17 characters, the tail, '\n'.
      const room = 512 + 9 + 8 * 17 + tail.length + 1;
      if (p + room > buf.length) {
        const grown = Buffer.allocUnsafe(buf.length * 2 + room);
        buf.copy(grown, 0, 0, p);
        buf = grown;
      }
      const o = this.#provisional.size === 0 ? undefined : this.#provisional.get(this.#index.key(slot));
      const plain = this.#index.copyPlain(slot, buf, p);
      if (plain >= 0 && !o) {
        p = plain;
        const s = this.#chunks[slot >>> CHUNK_BITS] as Chunk;
        const a = (slot & CHUNK_MASK) * WIDTH;
        for (let i = 0; i < WIDTH; i++) {
          buf[p++] = 0x2c;
          p = writeInteger(buf, p, s[a + i] as number);
        }
        for (let i = 0; i < tail.length; i++) buf[p++] = tail.charCodeAt(i);
        buf[p++] = 0x0a;
      } else {
        // A key to quote or not ASCII, or a provisional value: the text path, for this line.
        const line = this.csvLines({ slot }, 1, quote, tail);
        const bytes = Buffer.byteLength(line);
        if (p + bytes > buf.length) {
          const grown = Buffer.allocUnsafe(buf.length * 2 + bytes);
          buf.copy(grown, 0, 0, p);
          buf = grown;
        }
        p += buf.write(line, p);
      }
    }
    return buf.subarray(0, p);
  }

  /** A cursor over every record for {@link GradeStore.csvLines}, records added meanwhile included. */
  backupCursor(): BackupCursor {
    return { slot: 0 };
  }

  /** Empties the store (a join that has to start over). */
  clear(): void {
    this.#index.clear();
    this.#chunks.length = 0;
    this.#provisional.clear();
    this.#unconfirmed.clear();
  }

  /** The slot of `userId`, a new one (every value and sequence 0) if it has none. */
  #slot(userId: string): number {
    const slot = this.#index.slotOf(userId);
    const c = slot >>> CHUNK_BITS;
    const chunk = this.#chunks[c];
    if (chunk === undefined) {
      this.#chunks.push(new Int32Array((c === 0 ? FIRST_CHUNK_RECORDS : CHUNK_RECORDS) * WIDTH));
    } else if ((slot & CHUNK_MASK) * WIDTH >= chunk.length) {
      // Only the first chunk starts short: double it (same element type) up to a whole chunk.
      const grown =
        chunk instanceof Int32Array ? new Int32Array(chunk.length * 2) : new Float64Array(chunk.length * 2);
      grown.set(chunk);
      this.#chunks[c] = grown;
    }
    return slot;
  }

  /**
   * Stores number `i` (0–3 a value, 4–7 its sequence) of `slot`, widening the chunk if `x` needs it. A value of
   * -0 (which `/set` takes as 0) is kept as 0: JSON and the backup write both as `0`.
   */
  #put(slot: number, i: number, x: number): void {
    const c = slot >>> CHUNK_BITS;
    let chunk = this.#chunks[c] as Chunk;
    if (chunk instanceof Int32Array && (x | 0) !== x) {
      chunk = Float64Array.from(chunk);
      this.#chunks[c] = chunk;
    }
    chunk[(slot & CHUNK_MASK) * WIDTH + i] = x;
  }

  /**
   * The merge rule for field `i` of `slot`. `>=`: the writes of one message share its sequence and are applied in
   * order, the later one winning; a message applied twice (an acknowledgement, then the message itself) ends the
   * same way.
   */
  #merge(slot: number, i: number, value: number, seq: number): void {
    const chunk = this.#chunks[slot >>> CHUNK_BITS] as Chunk;
    if (seq >= (chunk[(slot & CHUNK_MASK) * WIDTH + SEQ + i] as number)) {
      this.#put(slot, i, value);
      this.#put(slot, SEQ + i, seq);
    }
  }

  #mergeUpdate(update: GradeUpdate, seq: number): void {
    const slot = this.#slot(update.user_id);
    for (let i = 0; i < SEQ; i++) {
      const value = update[FIELDS[i] as Field];
      if (value !== undefined) this.#merge(slot, i, value, seq);
    }
  }
}

/** Writes the safe integer `x` in decimal at `p` (as `String(x)` would, -0 as 0); returns the position after it. */
function writeInteger(buf: Buffer, p: number, x: number): number {
  let n = x;
  if (n < 0) {
    buf[p++] = 0x2d;
    n = -n;
  }
  if (n > 0x7fffffff) return p + buf.write(String(n), p, 'latin1'); // past 32-bit arithmetic: rare
  let digits = 1;
  for (let t = (n / 10) | 0; t > 0; t = (t / 10) | 0) digits++;
  for (let i = p + digits - 1; i >= p; i--) {
    buf[i] = 0x30 + (n % 10);
    n = (n / 10) | 0;
  }
  return p + digits;
}
