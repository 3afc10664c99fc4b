import { expect } from 'chai';
import { FIELDS, type UserGrade } from '../../../src/grades/model.js';
import { csvField } from '../../../src/grades/backup.js';
import { GradeStore } from '../../../src/grades/store.js';

// G3 at scale: the store keeps records in an index and chunked 32-bit columns, widened to float64 when a value
// or sequence needs it. Whatever the layout does, every record must read back exactly as written, in the merge
// rule's terms, next to a plain model.

const plain = (s: string) => s;
/** The backup's bytes of every record, as `csvChunk` hands them out `size` lines at a time. */
function backupChunks(store: GradeStore, size: number): Buffer[] {
  const cursor = store.backupCursor();
  const chunks: Buffer[] = [];
  for (
    let b = store.csvChunk(cursor, size, csvField, ',,,');
    b.length > 0;
    b = store.csvChunk(cursor, size, csvField, ',,,')
  )
    chunks.push(b);
  return chunks;
}
const record = (user_id: string, v: readonly number[]): UserGrade => ({
  user_id,
  postpaid_limit: v[0] ?? 0,
  spp: v[1] ?? 0,
  shipping_fee: v[2] ?? 0,
  return_fee: v[3] ?? 0,
});

describe('grade store – layout at scale (slots, chunks, widening)', () => {
  it('G3: 70,000 records across chunk boundaries read back as written, in insertion order, by get, rows and csv', () => {
    const store = new GradeStore();
    const n = 70_000; // the first chunk grows from 256 records to 65,536, then a second chunk follows
    for (let i = 0; i < n; i++) {
      store.applyStored({ user_id: `user-${i}`, postpaid_limit: i, spp: 0 - i, return_fee: i % 7 }, i + 1);
    }
    expect(store.size).to.equal(n);
    for (const i of [0, 255, 256, 511, 65_535, 65_536, n - 1]) {
      expect(store.get(`user-${i}`), `user-${i}`).to.deep.equal(record(`user-${i}`, [i, 0 - i, 0, i % 7]));
    }
    let i = 0;
    const wrong: string[] = []; // chai's deep equal on every row would take seconds
    for (const row of store.rows()) {
      const want = `user-${i} ${i},${0 - i},0,${i % 7} ${i + 1},${i + 1},0,${i + 1}`;
      const got = `${row.user_id} ${row.values.join(',')} ${row.seqs.join(',')}`;
      if (got !== want) wrong.push(got);
      i++;
    }
    expect(wrong).to.deep.equal([]);
    expect(i).to.equal(n);
    const cursor = store.backupCursor();
    let lines = 0;
    for (
      let text = store.csvLines(cursor, 50_000, plain, '');
      text !== '';
      text = store.csvLines(cursor, 50_000, plain, '')
    )
      lines += text.split('\n').length - 1;
    expect(lines).to.equal(n);
  });

  it('G3: values and sequences beyond 32 bits widen their chunk and stay exact; the others keep theirs', () => {
    const store = new GradeStore();
    for (let i = 0; i < 70_000; i++) store.applyStored({ user_id: `u${i}`, spp: i }, 1);
    const narrow = store.columnBytes;
    const big = [2 ** 31, -(2 ** 31) - 1, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER];
    store.applyStored(
      { user_id: 'u5', postpaid_limit: big[0], spp: big[1], shipping_fee: big[2], return_fee: big[3] },
      2 ** 32 + 5,
    );
    expect(store.get('u5')).to.deep.equal(record('u5', big));
    expect([...store.rows()][5]?.seqs).to.deep.equal([2 ** 32 + 5, 2 ** 32 + 5, 2 ** 32 + 5, 2 ** 32 + 5]);
    // The first chunk (65,536 records, 32 bytes each) doubled in width; the second did not.
    expect(store.columnBytes - narrow).to.equal(65_536 * 32);
    // Values of other records in the widened chunk are unchanged, and the merge rule still holds there.
    expect(store.get('u6')?.spp).to.equal(6);
    store.applyStored({ user_id: 'u5', spp: 1 }, 2 ** 32 + 4); // older: loses
    expect(store.get('u5')?.spp).to.equal(big[1]);
    store.applyStored({ user_id: 'u5', spp: 1 }, 2 ** 32 + 5); // same message: wins
    expect(store.get('u5')?.spp).to.equal(1);
    // A sequence of 2^31 (past int32) in the narrow second chunk.
    store.applyStored({ user_id: 'u69999', spp: 3 }, 2 ** 31);
    store.applyStored({ user_id: 'u69999', spp: 4 }, 2 ** 31 - 1); // older: loses
    expect(store.get('u69999')?.spp).to.equal(3);
    expect(store.csvLines(store.backupCursor(), 1, plain, '')).to.equal(`u0,0,0,0,0,0,1,0,0\n`);
  });

  it('G3: a standalone write and a backup row widen a chunk the same way', () => {
    const store = new GradeStore();
    store.applyUnreplicated({ user_id: 'a', return_fee: 2 ** 40 });
    store.load({ user_id: 'b', values: [1, 2, 3, -(2 ** 45)], seqs: [0, 2 ** 33, 0, 7] });
    expect(store.get('a')).to.deep.equal(record('a', [0, 0, 0, 2 ** 40]));
    expect([...store.rows()]).to.deep.equal([
      { user_id: 'a', values: [0, 0, 0, 2 ** 40], seqs: [0, 0, 0, 0] },
      { user_id: 'b', values: [1, 2, 3, -(2 ** 45)], seqs: [0, 2 ** 33, 0, 7] },
    ]);
  });

  it('G3: a small store holds a small first chunk, and clear() gives its columns back', () => {
    const store = new GradeStore();
    expect(store.columnBytes).to.equal(0);
    store.applyStored({ user_id: 'a', spp: 1 }, 1);
    expect(store.columnBytes).to.equal(256 * 2 * FIELDS.length * 4);
    for (let i = 0; i < 300; i++) store.applyStored({ user_id: `b${i}`, spp: 1 }, 1);
    expect(store.columnBytes).to.equal(512 * 2 * FIELDS.length * 4);
    store.clear();
    expect(store.columnBytes).to.equal(0);
    expect(store.size).to.equal(0);
    store.applyStored({ user_id: 'c', spp: 2 }, 1);
    expect(store.get('c')?.spp).to.equal(2);
    expect(store.get('a')).to.equal(undefined);
  });

  it('G7: the backup bytes are the backup text: quoted, non-ASCII, provisional, negative and wide values alike', () => {
    const store = new GradeStore();
    store.applyStored(
      { user_id: 'plain', postpaid_limit: 0, spp: -1, shipping_fee: 10, return_fee: 2 ** 31 - 1 },
      9,
    );
    store.applyStored({ user_id: 'c,"d"', spp: 5 }, 10);
    store.applyStored({ user_id: 'ü-名前', return_fee: -(2 ** 31) }, 11);
    store.applyUnreplicated({
      user_id: 'wide',
      postpaid_limit: Number.MAX_SAFE_INTEGER,
      spp: -Number.MAX_SAFE_INTEGER,
    });
    store.applyStored({ user_id: 'late', spp: 1 }, 2 ** 40);
    store.applyLocal({ user_id: 'plain', shipping_fee: 77 }, 1);
    store.applyLocal({ user_id: 'new', spp: 3 }, 2);
    for (let i = 0; i < 300; i++) store.applyStored({ user_id: `u${i}`, spp: i * 1_000_003 }, i + 12);
    const text = store.csvLines(store.backupCursor(), 10_000, csvField, ',,,');
    expect(text.split('\n').slice(0, 7)).to.deep.equal([
      'plain,0,-1,77,2147483647,9,9,0,9,,,',
      '"c,""d""",0,5,0,0,0,10,0,0,,,',
      'ü-名前,0,0,0,-2147483648,0,0,0,11,,,',
      'wide,9007199254740991,-9007199254740991,0,0,0,0,0,0,,,',
      'late,0,1,0,0,0,1099511627776,0,0,,,',
      'new,0,3,0,0,0,0,0,0,,,',
      'u0,0,0,0,0,0,12,0,0,,,',
    ]);
    for (const size of [1, 7, 10_000]) {
      const chunks = backupChunks(store, size);
      expect(Buffer.concat(chunks).toString('utf8'), `chunks of ${size}`).to.equal(text);
    }
  });

  it('G7: backup bytes hold at most their size in lines, and long lines fit however small the chunk', () => {
    const store = new GradeStore();
    const big = {
      postpaid_limit: Number.MAX_SAFE_INTEGER,
      spp: -Number.MAX_SAFE_INTEGER,
      shipping_fee: -(2 ** 31),
      return_fee: 2 ** 40,
    };
    store.applyStored({ user_id: 'p'.repeat(256), ...big }, Number.MAX_SAFE_INTEGER);
    store.applyStored({ user_id: `${'ü,'.repeat(128)}`, ...big }, Number.MAX_SAFE_INTEGER);
    store.applyStored({ user_id: 'q"'.repeat(128), ...big }, 7);
    store.applyStored({ user_id: '名'.repeat(256), ...big }, Number.MAX_SAFE_INTEGER); // 768 bytes of key alone
    for (let i = 0; i < 5; i++) store.applyStored({ user_id: `s${i}`, spp: i }, 1);
    const text = store.csvLines(store.backupCursor(), 100, csvField, ',,,');
    for (const size of [1, 2, 3]) {
      const chunks = backupChunks(store, size).map((b) => b.toString('utf8'));
      expect(chunks.join(''), `chunks of ${size}`).to.equal(text);
      expect(
        chunks.map((c) => c.split('\n').length - 1),
        `lines per chunk of ${size}`,
      ).to.deep.equal(Array.from({ length: Math.ceil(9 / size) }, (_, k) => Math.min(size, 9 - k * size)));
    }
  });

  it('G3: records past the first chunk take whole chunks of 65,536 (32 bytes a record while narrow)', () => {
    const store = new GradeStore();
    for (let i = 0; i < 65_537; i++) store.applyStored({ user_id: `u${i}`, spp: 1 }, 1);
    expect(store.columnBytes).to.equal(2 * 65_536 * 32);
  });
});
