import { expect } from 'chai';
import fc from 'fast-check';
import { KeyIndex, MAX_KEY_LENGTH } from '../../../src/grades/key-index.js';

// G3: the grades index keeps user ids outside the V8 heap; it must answer exactly as a Map<string, number> that
// numbers keys in the order they were added, for any strings (ASCII, other Unicode, lone surrogates).

/** Fixed, so that every run of the suite checks the same histories; `PROPERTY_SEED` explores others. */
const SEED = Number(process.env.PROPERTY_SEED ?? 20261127);
const RUNS = 300;

const key = fc.oneof(
  { arbitrary: fc.string({ maxLength: 6 }), weight: 4 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 6 }), weight: 2 },
  // Strings whose bytes would collide under a naive encoding: 'ab' and U+6261, a lone surrogate and U+FFFD.
  { arbitrary: fc.constantFrom('ab', '\u6261', '\ud800', '\udfff', '\ufffd', '', 'é', '\u00e9'), weight: 2 },
  { arbitrary: fc.string({ unit: 'grapheme', minLength: 200, maxLength: 300 }), weight: 1 },
);
const op = fc.record({ kind: fc.constantFrom('add', 'find', 'findAdded'), key, pick: fc.nat() });

describe('grades key index – a Map outside the heap (G3)', () => {
  it('finds, adds and names keys exactly as a Map numbering them in order', () => {
    let runs = 0;
    const seen = { found: 0, missing: 0, wide: 0 };
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        runs++;
        const index = new KeyIndex();
        const model = new Map<string, number>();
        for (const { kind, key: picked, pick } of ops) {
          // findAdded: one of the keys added so far (when there is one).
          const added = [...model.keys()];
          const k =
            kind === 'findAdded' && added.length > 0 ? (added[pick % added.length] as string) : picked;
          if (kind === 'add') {
            const want = model.get(k) ?? model.size;
            model.set(k, want);
            expect(index.slotOf(k)).to.equal(want);
          } else {
            const want = model.get(k) ?? -1;
            if (want < 0) seen.missing++;
            else seen.found++;
            expect(index.find(k)).to.equal(want);
          }
          if (Buffer.byteLength(k) !== k.length) seen.wide++;
        }
        expect(index.size).to.equal(model.size);
        for (const [k, slot] of model) expect(index.key(slot)).to.equal(k);
      }),
      { seed: SEED, numRuns: RUNS },
    );
    expect(runs).to.equal(RUNS);
    expect(seen.found).to.be.above(RUNS / 4);
    expect(seen.missing).to.be.above(RUNS / 4);
    expect(seen.wide).to.be.above(RUNS / 4);
  });

  it('keeps 70,000 keys across table growth and arena chunks, each found at its slot and named back', () => {
    const index = new KeyIndex();
    const n = 70_000; // 20-character keys: about 1.5 MB of arena (1 MiB chunks), the table grown 13 times
    const keyOf = (i: number) => `user-${String(i).padStart(15, '0')}`;
    for (let i = 0; i < n; i++) index.slotOf(keyOf(i));
    expect(index.size).to.equal(n);
    const wrong: number[] = [];
    for (let i = 0; i < n; i++) {
      if (index.find(keyOf(i)) !== i || index.key(i) !== keyOf(i)) wrong.push(i);
    }
    expect(wrong).to.deep.equal([]);
    expect(index.find(keyOf(n))).to.equal(-1);
    expect(index.slotOf(keyOf(7))).to.equal(7); // present: no new slot
    expect(index.size).to.equal(n);
    // Table at most 3/4 full: 2^17 entries for 70,000 keys.
    expect(index.bytes).to.equal(2 * 2 ** 20 + 2 * 65_536 * 4 + 2 ** 17 * 8);
  });

  it('clear() forgets every key and numbers from 0 again', () => {
    const index = new KeyIndex();
    index.slotOf('a');
    index.slotOf('b');
    index.clear();
    expect(index.size).to.equal(0);
    expect(index.find('a')).to.equal(-1);
    expect(index.slotOf('b')).to.equal(0);
    expect(index.key(0)).to.equal('b');
  });

  it('a key longer than the index can hold is not found, and refused when added', () => {
    const index = new KeyIndex();
    const longest = 'k'.repeat(MAX_KEY_LENGTH);
    expect(index.slotOf(longest)).to.equal(0);
    expect(index.find(longest)).to.equal(0);
    expect(index.find(`${longest}k`)).to.equal(-1);
    expect(() => index.slotOf(`${longest}k`)).to.throw(RangeError);
    expect(index.size).to.equal(1);
  });
});
