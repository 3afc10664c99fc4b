import { expect } from 'chai';
import fc from 'fast-check';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { BACKUP_COLUMNS, fastRow, parseCsvLine, readBackup, recordRow } from '../../../src/grades/backup.js';
import type { BackupRow } from '../../../src/grades/store.js';

// G7/G8: the backup reader takes plain record rows straight from their bytes; what it accepts there must be
// exactly what the general path (parseCsvLine, then recordRow) accepts for the same line, and nothing else.

/** Fixed, so that every run of the suite checks the same lines; `PROPERTY_SEED` explores others. */
const SEED = Number(process.env.PROPERTY_SEED ?? 20261127);
const RUNS = 2000;
const WIDTH = BACKUP_COLUMNS.length;

const userId = fc.oneof(
  { arbitrary: fc.stringMatching(/^[a-z0-9._@-]{1,24}$/), weight: 4 },
  fc.constantFrom(
    '',
    'x'.repeat(256),
    'x'.repeat(257),
    'tab\there',
    'del\u007f',
    'é-ü',
    'c1\u0085',
    '名前',
    'a"b',
    ' sp ',
  ),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 8 }).filter((s) => !/[\n\r]/.test(s)),
);
const integer = fc.oneof(
  fc.integer({ min: -1_000_000, max: 1_000_000 }).map(String),
  fc.constantFrom(
    '0',
    '-0',
    '007',
    '',
    '1e3',
    '0x1F',
    ' 1',
    '+1',
    '-',
    '2147483648',
    '-2147483649',
    '4294967296',
    '9007199254740991',
    '-9007199254740991',
    '9007199254740992',
    '9007199254740993',
    '12345678901234567',
  ),
  fc.bigInt({ min: -(2n ** 60n), max: 2n ** 60n }).map(String),
);
const valid = fc.oneof(
  fc.integer({ min: 0, max: 1_000_000 }).map(String),
  fc.constantFrom('0', '2147483648', '4294967296', '9007199254740991'),
);
const numbers = fc.oneof(
  { arbitrary: fc.array(valid, { minLength: 8, maxLength: 8 }), weight: 6 },
  // Valid but for one field, so that each odd number is met in a line that is otherwise right.
  {
    arbitrary: fc
      .tuple(fc.array(valid, { minLength: 8, maxLength: 8 }), fc.nat(7), integer)
      .map(([v, i, x]) => v.map((n, j) => (j === i ? x : n))),
    weight: 6,
  },
  { arbitrary: fc.array(integer, { minLength: 8, maxLength: 8 }), weight: 1 },
  { arbitrary: fc.array(integer, { minLength: 7, maxLength: 9 }), weight: 1 },
);
const tail = fc.oneof(
  { arbitrary: fc.constant(['', '', '']), weight: 4 },
  { arbitrary: fc.constant(['"q"', '', '']), weight: 1 },
  { arbitrary: fc.array(fc.constantFrom('', 'x', '1'), { minLength: 2, maxLength: 4 }), weight: 1 },
);
const line = fc
  .tuple(userId, numbers, tail, fc.nat(4))
  .map(([id, values, rest, quoteId]) =>
    [quoteId === 0 ? `"${id.replace(/"/g, '""')}"` : id, ...values, ...rest].join(','),
  );

/** The general path's verdict on one line: the row, or undefined when it refuses it. */
function general(text: string): BackupRow | undefined {
  let fields: string[];
  try {
    fields = parseCsvLine(text);
  } catch {
    return undefined;
  }
  return fields.length === WIDTH ? recordRow(fields) : undefined;
}

describe('grades backup reader – plain rows read from bytes (G7, G8)', () => {
  it('accepts exactly the plain record rows the general path accepts, with the same values', () => {
    const seen = { fast: 0, refused: 0, general: 0 };
    let runs = 0;
    fc.assert(
      fc.property(line, (text) => {
        runs++;
        const bytes = Buffer.from(text, 'utf8');
        const fast = fastRow(bytes, 0, bytes.length);
        const expected = general(text);
        if (fast) {
          seen.fast++;
          expect(fast).to.deep.equal(expected);
        } else if (expected) {
          seen.general++;
          // Only a line with a quote is left to the general path when it is valid.
          expect(text).to.include('"');
        } else seen.refused++;
      }),
      { seed: SEED, numRuns: RUNS },
    );
    expect(runs).to.equal(RUNS);
    expect(seen.fast).to.be.above(RUNS / 20);
    expect(seen.refused).to.be.above(RUNS / 20);
    expect(seen.general).to.be.above(0);
  });

  it('reads a row of a long user_id whole from its bytes, within a larger buffer', () => {
    const bytes = Buffer.from(`x\n${'u'.repeat(40)},1,2,3,4,5,6,7,8,,,\ny`);
    const row = fastRow(bytes, 2, bytes.length - 2);
    expect(row?.user_id).to.equal('u'.repeat(40));
    expect(row?.values).to.deep.equal([1, 2, 3, 4]);
    expect(row?.seqs).to.deep.equal([5, 6, 7, 8]);
  });

  it('reads lines ended by \\n, \\r\\n and a lone \\r alike, across chunk boundaries, as readline did', async () => {
    const head = `${BACKUP_COLUMNS.join(',')}\r\n${BACKUP_COLUMNS.map((_, i) => (i === WIDTH - 1 ? '7' : '')).join(',')}\n`;
    const rows = ['a,1,2,3,4,5,6,7,7,,,', '"b,c",1,0,0,0,1,0,0,0,,,', 'd,0,0,0,0,0,0,0,0,,,'];
    const text = `${head}${rows[0]}\r${rows[1]}\r\n${rows[2]}\r`;
    const gz = gzipSync(text);
    // One byte at a time: every line crosses chunks.
    const chunks = [...gz].map((b) => Buffer.from([b]));
    const got: BackupRow[] = [];
    const { header, rows: count } = await readBackup(
      Readable.from(chunks),
      () => Promise.resolve(),
      (batch) => {
        got.push(...batch);
        return Promise.resolve();
      },
      2,
    );
    expect(header.position).to.equal(7);
    expect(count).to.equal(3);
    expect(got.map((r) => r.user_id)).to.deep.equal(['a', 'b,c', 'd']);
    expect(got[0]).to.deep.equal({ user_id: 'a', values: [1, 2, 3, 4], seqs: [5, 6, 7, 7] });
  });
});
