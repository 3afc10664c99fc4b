/**
 * The grades store's index: `user_id` → slot (0, 1, 2, … in the order keys were added), held entirely outside the
 * V8 heap. A `Map<string, number>` of ten million 20-character keys costs about 87 bytes a key on the heap (the
 * string, 40; the Map's table, 47, since it grows by doubling to 2^24 entries, its hard limit) and every major GC
 * marks all of it, which made loading a large backup GC-bound. Here a key costs its bytes plus 2, a 4-byte
 * offset and 11–21 bytes of table (slot and hash), in typed arrays the GC never walks; `scripts/grades-memory.ts`
 * measures both, and `tests/unit/grades/key-index.property.test.ts` holds this index to a Map.
 *
 * Keys are stored exactly: a key of ASCII characters as one byte each, any other as UTF-16 code units (lone
 * surrogates included, which UTF-8 would replace), behind a 2-byte header holding the byte length and which of
 * the two it is. Open addressing with linear probing over a power-of-two table, at most 3/4 full, of entries
 * that hold a slot and its key's hash: probing compares bytes only on a full hash match, and growing never reads
 * a key.
 */

/** Bytes per arena chunk; a key never spans two. */
const ARENA_CHUNK_BITS = 20;
const ARENA_CHUNK = 1 << ARENA_CHUNK_BITS;
/** Slots per chunk of the per-slot offsets. */
const SLOT_CHUNK_BITS = 16;
const SLOT_CHUNK = 1 << SLOT_CHUNK_BITS;
const SLOT_MASK = SLOT_CHUNK - 1;
/** The header's flag for a key stored as UTF-16 code units. */
const WIDE = 0x8000;
/** The longest key, in characters: its bytes (at most two a character) must fit the header's 15 bits. */
export const MAX_KEY_LENGTH = 0x7fff >> 1;
/**
 * Arena chunks at most: offsets are 32-bit, so the keys' bytes (each key's plus 2) may add up to 4 GiB, about
 * 190 million keys of 20 characters; the table (an Int32Array of at most 2^30 numbers, two an entry) allows some
 * 400 million.
 */
export const MAX_ARENA_CHUNKS = 2 ** (32 - ARENA_CHUNK_BITS);

export class KeyIndex {
  /** Key bytes, appended in slot order: each key a 2-byte header (byte length, {@link WIDE}) and its bytes. */
  readonly #arena: Buffer[] = [];
  #arenaUsed = ARENA_CHUNK; // no chunk yet: the first key opens one
  /** Per slot: where its key starts in the arena (chunk number × ARENA_CHUNK + offset). */
  readonly #offsets: Uint32Array[] = [];
  /**
   * Open-addressing table of pairs: slot + 1 (0: empty), then that key's hash, side by side so that a probe reads
   * one cache line.
   */
  #table = new Int32Array(2 * 16);
  #size = 0;
  /** The key being looked up, encoded; grown when a longer one comes. */
  #scratch = Buffer.alloc(516);

  /** Keys held. */
  get size(): number {
    return this.#size;
  }

  /** Bytes of the typed arrays and buffers the index holds (all outside the V8 heap). */
  get bytes(): number {
    return this.#arena.length * ARENA_CHUNK + this.#offsets.length * SLOT_CHUNK * 4 + this.#table.byteLength;
  }

  /** The table entry the last {@link #probe} ended at. */
  #at = 0;

  /** The slot of `key`, or -1 (also for a key longer than any the index can hold). */
  find(key: string): number {
    if (key.length > MAX_KEY_LENGTH) return -1;
    const length = this.#encode(key);
    return this.#probe(this.#scratch, length, this.#hash);
  }

  /** The slot of `key`, a new one (the next number) if it has none. */
  slotOf(key: string): number {
    const length = this.#encode(key);
    const scratch = this.#scratch;
    const hash = this.#hash;
    const slot = this.#probe(scratch, length, hash);
    if (slot >= 0) return slot;
    const at = this.#at;
    if (this.#arenaUsed + length > ARENA_CHUNK) {
      if (this.#arena.length >= MAX_ARENA_CHUNKS)
        throw new RangeError('the grades index is full (4 GiB of user ids)');
      this.#arena.push(Buffer.allocUnsafeSlow(ARENA_CHUNK));
      this.#arenaUsed = 0;
    }
    const added = this.#size++;
    const chunk = this.#arena.length - 1;
    scratch.copy(this.#arena[chunk] as Buffer, this.#arenaUsed, 0, length);
    if ((added & SLOT_MASK) === 0) this.#offsets.push(new Uint32Array(SLOT_CHUNK));
    (this.#offsets[added >>> SLOT_CHUNK_BITS] as Uint32Array)[added & SLOT_MASK] =
      chunk * ARENA_CHUNK + this.#arenaUsed;
    this.#arenaUsed += length;
    this.#table[at] = added + 1;
    this.#table[at + 1] = hash;
    // At most 3/4 full (the table holds two numbers an entry).
    if (this.#size * 8 > this.#table.length * 3) this.#grow();
    return added;
  }

  /** The key of `slot` (0 ≤ slot < size). */
  key(slot: number): string {
    const offset = (this.#offsets[slot >>> SLOT_CHUNK_BITS] as Uint32Array)[slot & SLOT_MASK] as number;
    const chunk = this.#arena[Math.floor(offset / ARENA_CHUNK)] as Buffer;
    const at = offset % ARENA_CHUNK;
    const header = chunk.readUInt16LE(at);
    const bytes = header & ~WIDE;
    return chunk.toString(header & WIDE ? 'utf16le' : 'latin1', at + 2, at + 2 + bytes);
  }

  /**
   * Copies the key of `slot` into `target` at `at` when it is ASCII without a quote or comma (a CSV field as it
   * is), returning the position after it; otherwise writes nothing and returns -1.
   */
  copyPlain(slot: number, target: Buffer, at: number): number {
    const offset = (this.#offsets[slot >>> SLOT_CHUNK_BITS] as Uint32Array)[slot & SLOT_MASK] as number;
    const chunk = this.#arena[Math.floor(offset / ARENA_CHUNK)] as Buffer;
    const start = offset % ARENA_CHUNK;
    const header = chunk.readUInt16LE(start);
    if (header & WIDE) return -1;
    const end = start + 2 + header;
    for (let i = start + 2; i < end; i++) {
      const b = chunk[i] as number;
      if (b === 0x22 || b === 0x2c || b === 0x0a || b === 0x0d) return -1;
    }
    return at + chunk.copy(target, at, start + 2, end);
  }

  /** Forgets every key. */
  clear(): void {
    this.#arena.length = 0;
    this.#arenaUsed = ARENA_CHUNK;
    this.#offsets.length = 0;
    this.#table = new Int32Array(2 * 16);
    this.#size = 0;
  }

  /** The hash of the key {@link #encode} wrote last. */
  #hash = 0;

  /**
   * Writes `key` (header and bytes) into the scratch buffer and its hash into {@link #hash}; returns the length
   * written. An ASCII key (the common case) is encoded and hashed in one pass over its characters.
   */
  #encode(key: string): number {
    const n = key.length;
    if (n > MAX_KEY_LENGTH) throw new RangeError(`a key is at most ${MAX_KEY_LENGTH} characters`);
    if (n * 2 + 2 > this.#scratch.length) this.#scratch = Buffer.alloc(n * 2 + 2);
    const scratch = this.#scratch;
    let ascii = true;
    for (let i = 0; i < n; i++) {
      const c = key.charCodeAt(i);
      if (c >= 0x80) {
        ascii = false;
        break;
      }
      scratch[i + 2] = c;
    }
    const bytes = ascii ? n : n * 2;
    scratch.writeUInt16LE(ascii ? bytes : bytes | WIDE, 0);
    if (!ascii) scratch.write(key, 2, 'utf16le');
    this.#hash = hashOf(scratch, bytes + 2);
    return bytes + 2;
  }

  /**
   * The slot of the key encoded in `bytes` (`length` long, hash `hash`), or -1; either way {@link #at} is left at
   * its table entry (the empty one it would take).
   */
  #probe(bytes: Buffer, length: number, hash: number): number {
    const table = this.#table;
    // Entries are pairs: `at` is even, and the mask keeps it so.
    const mask = table.length - 2;
    for (let at = (hash << 1) & mask; ; at = (at + 2) & mask) {
      const entry = table[at] as number;
      if (entry === 0) {
        this.#at = at;
        return -1;
      }
      if (table[at + 1] !== hash) continue;
      const slot = entry - 1;
      const offset = (this.#offsets[slot >>> SLOT_CHUNK_BITS] as Uint32Array)[slot & SLOT_MASK] as number;
      const chunk = this.#arena[Math.floor(offset / ARENA_CHUNK)] as Buffer;
      const start = offset % ARENA_CHUNK;
      if (sameBytes(chunk, start, bytes, length)) {
        this.#at = at;
        return slot;
      }
    }
  }

  /** Doubles the table, placing every entry again by its kept hash. */
  #grow(): void {
    const old = this.#table;
    const table = new Int32Array(old.length * 2);
    const mask = table.length - 2;
    for (let i = 0; i < old.length; i += 2) {
      const entry = old[i] as number;
      if (entry === 0) continue;
      const hash = old[i + 1] as number;
      let at = (hash << 1) & mask;
      while (table[at] !== 0) at = (at + 2) & mask;
      table[at] = entry;
      table[at + 1] = hash;
    }
    this.#table = table;
  }
}

/** Whether `chunk` holds at `start` the `length` bytes of `bytes` (header included, so the lengths agree too). */
function sameBytes(chunk: Buffer, start: number, bytes: Buffer, length: number): boolean {
  for (let i = 0; i < length; i++) if (chunk[start + i] !== bytes[i]) return false;
  return true;
}

/** FNV-1a over the bytes, then murmur3's finalizer so that keys differing in their last bytes spread apart. */
function hashOf(bytes: Buffer, length: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < length; i++) h = Math.imul(h ^ (bytes[i] as number), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}
