import { expect } from 'chai';
import { KeyIndex, MAX_ARENA_CHUNKS, MAX_KEY_LENGTH } from '../../../src/grades/key-index.js';

// The grades index (G3) at the edges mutation testing found unpinned: keys whose hashes collide, where the arena
// and the table grow, and the backup's copy of plain keys.

/** The index's memory besides its table: whole arena chunks of 1 MiB, whole chunks of 65,536 offsets. */
const ARENA_CHUNK = 2 ** 20;
const OFFSETS_CHUNK = 65_536 * 4;
/** Bytes of a table of `entries` entries (slot and hash, 4 bytes each). */
const table = (entries: number) => entries * 8;

/**
 * A copy of the index's hash (FNV-1a over the 2-byte header and the key's bytes, then murmur3's finalizer), only to
 * check this file's premise: if the index's hash changes, the colliding pairs below must be found again.
 */
function indexHash(key: string): number {
  const bytes = Buffer.alloc(key.length + 2);
  bytes.writeUInt16LE(key.length, 0);
  bytes.write(key, 2, 'latin1');
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Pairs of ASCII keys with the same 32-bit hash (found by a search over random keys): one of equal lengths, one not. */
const COLLIDING: [string, string][] = [
  ['ukevj94', 'r8xyghx'],
  ['gp2cezd', 'msl6rx'],
];

describe('grades key index – pinned behaviour (G3)', () => {
  it('tells apart keys whose hashes collide, by comparing their bytes', () => {
    for (const [a, b] of COLLIDING) expect(indexHash(a)).to.equal(indexHash(b)); // the premise
    const index = new KeyIndex();
    for (const [a, b] of COLLIDING) {
      const slot = index.slotOf(a);
      expect(index.find(b)).to.equal(-1); // same hash, other key: not found
      expect(index.slotOf(b)).to.equal(slot + 1);
      expect(index.find(a)).to.equal(slot);
      expect(index.find(b)).to.equal(slot + 1);
      expect(index.key(slot + 1)).to.equal(b);
    }
    expect(index.size).to.equal(4);
  });

  it('opens a new arena chunk only for a key that does not fit the current one', () => {
    const index = new KeyIndex();
    // 1,022 characters: 1,024 bytes with the header, so 1,024 keys fill a chunk exactly.
    const keyOf = (i: number) => `${i}-`.padEnd(1022, 'x');
    for (let i = 0; i < 1023; i++) index.slotOf(keyOf(i));
    const before = index.bytes;
    expect(before).to.equal(ARENA_CHUNK + OFFSETS_CHUNK + table(2048));
    index.slotOf(keyOf(1023)); // fills the chunk to its last byte
    expect(index.bytes).to.equal(before);
    index.slotOf(keyOf(1024)); // the first key of the second chunk
    expect(index.bytes).to.equal(before + ARENA_CHUNK);
    for (const slot of [0, 1023, 1024]) {
      expect(index.find(keyOf(slot))).to.equal(slot);
      expect(index.key(slot)).to.equal(keyOf(slot));
      const target = Buffer.alloc(1022);
      expect(index.copyPlain(slot, target, 0)).to.equal(1022);
      expect(target.toString('latin1')).to.equal(keyOf(slot));
    }
  });

  it('doubles the table only once it is more than 3/4 full', () => {
    const index = new KeyIndex();
    for (let i = 0; i < 12; i++) index.slotOf(`k${i}`);
    expect(index.bytes).to.equal(ARENA_CHUNK + OFFSETS_CHUNK + table(16)); // 12 of 16 entries: 3/4
    index.slotOf('k12');
    expect(index.bytes).to.equal(ARENA_CHUNK + OFFSETS_CHUNK + table(32));
    for (let i = 0; i < 13; i++) expect(index.find(`k${i}`)).to.equal(i);
  });

  it('holds at most 4 GiB of keys, what its 32-bit offsets can address', () => {
    // Filling it takes 4 GiB, too much for a unit test: this pins the bound the full-index check uses.
    expect(MAX_ARENA_CHUNKS * ARENA_CHUNK).to.equal(2 ** 32);
  });

  it('refuses a key longer than it can hold, saying what the limit is', () => {
    const index = new KeyIndex();
    expect(() => index.slotOf('k'.repeat(MAX_KEY_LENGTH + 1))).to.throw(
      RangeError,
      `a key is at most ${MAX_KEY_LENGTH} characters`,
    );
  });

  it('keeps non-ASCII keys longer than its first scratch buffer whole, and short keys after them', () => {
    const index = new KeyIndex();
    // 'é' is stored as two bytes: 258 of them and the header are 518 bytes, past the first 516.
    const keys = ['a', 'é'.repeat(257), 'é'.repeat(258), 'é'.repeat(259), 'b', 'é'.repeat(400), 'é'];
    keys.forEach((k, slot) => expect(index.slotOf(k)).to.equal(slot));
    keys.forEach((k, slot) => {
      expect(index.find(k)).to.equal(slot);
      expect(index.key(slot)).to.equal(k);
    });
    expect(index.find('é'.repeat(260))).to.equal(-1);
  });

  it('copies a plain key into the target at the given position and returns the position after it', () => {
    const index = new KeyIndex();
    index.slotOf('first');
    index.slotOf('user-42');
    const target = Buffer.from('..........');
    expect(index.copyPlain(1, target, 2)).to.equal(9);
    expect(target.toString('latin1')).to.equal('..user-42.');
    expect(index.copyPlain(0, target, 0)).to.equal(5);
    expect(target.toString('latin1')).to.equal('firstr-42.');
  });

  it('does not copy a key that is not a CSV field as it is: quote, comma, line break, any non-ASCII character', () => {
    const index = new KeyIndex();
    const notPlain = ['a"b', 'a,b', 'a\nb', 'a\rb', '\u0080', 'é', '\u6261', '\ud800'];
    for (const k of notPlain) {
      const slot = index.slotOf(k);
      const target = Buffer.from('------');
      expect(index.copyPlain(slot, target, 1), JSON.stringify(k)).to.equal(-1);
      expect(target.toString('latin1'), JSON.stringify(k)).to.equal('------');
      expect(index.key(slot)).to.equal(k);
    }
  });

  it('copies a plain key whatever the length bytes around it hold (10, 13, 34 and 44 are "\\n", "\\r", \'"\', ",")', () => {
    const index = new KeyIndex();
    const keys = [10, 13, 34, 44, 10].map((n, i) => String(i).repeat(n));
    for (const k of keys) index.slotOf(k);
    keys.forEach((k, slot) => {
      const target = Buffer.alloc(k.length);
      expect(index.copyPlain(slot, target, 0), k).to.equal(k.length);
      expect(target.toString('latin1')).to.equal(k);
    });
  });
});
