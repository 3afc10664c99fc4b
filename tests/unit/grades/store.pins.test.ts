import { expect } from 'chai';
import { GradeStore } from '../../../src/grades/store.js';

// The grade store's merge rule and backup text (G7, G8, X3) at the edges mutation testing found unpinned.

const plain = (s: string) => s;

describe('grade store – pinned requirements', () => {
  it('X3: a write the stream stored is applied by its sequence, and the record it makes is returned', () => {
    const store = new GradeStore();
    expect(store.applyStored({ user_id: 'u', spp: 3 }, 5)).to.deep.equal({
      user_id: 'u',
      postpaid_limit: 0,
      spp: 3,
      shipping_fee: 0,
      return_fee: 0,
    });
    store.applyStored({ user_id: 'u', spp: 9 }, 4); // older: loses
    expect(store.get('u')?.spp).to.equal(3);
  });

  it('X3: confirming a write whose fields a later local write replaced keeps the later values provisional', () => {
    const store = new GradeStore();
    const all = (v: number) => ({ user_id: 'u', postpaid_limit: v, spp: v, shipping_fee: v, return_fee: v });
    store.applyLocal(all(1), 1);
    store.applyLocal(all(2), 2);
    store.confirm(1, 10);
    expect(store.get('u')).to.deep.equal(all(2));
    expect([...store.rows()]).to.deep.equal([{ user_id: 'u', values: [2, 2, 2, 2], seqs: [0, 0, 0, 0] }]);
    store.confirm(2, 11);
    expect([...store.rows()]).to.deep.equal([{ user_id: 'u', values: [2, 2, 2, 2], seqs: [11, 11, 11, 11] }]);
  });

  it('G7: a backup chunk holds at most its size in lines; the cursor resumes where it stopped', () => {
    const store = new GradeStore();
    for (const user of ['a', 'b', 'c', 'd', 'e']) store.applyStored({ user_id: user, spp: 1 }, 1);
    const cursor = store.backupCursor();
    const chunks: string[] = [];
    for (
      let chunk = store.csvLines(cursor, 2, plain, '');
      chunk !== '';
      chunk = store.csvLines(cursor, 2, plain, '')
    )
      chunks.push(chunk);
    expect(chunks.map((c) => c.split('\n').length - 1)).to.deep.equal([2, 2, 1]);
    expect(
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(',')[0]),
    ).to.deep.equal(['a', 'b', 'c', 'd', 'e']);
  });

  it('G7: a backup line of a record with a provisional field carries its value with sequence 0, stored fields their own', () => {
    const store = new GradeStore();
    store.applyStored({ user_id: 'u', postpaid_limit: 7, spp: 1, shipping_fee: 2, return_fee: 3 }, 4);
    store.applyStored({ user_id: 'u', return_fee: 5 }, 6);
    store.applyLocal({ user_id: 'u', spp: 9 }, 1);
    expect(store.csvLines(store.backupCursor(), 10, (s) => `"${s}"`, ',,')).to.equal(
      '"u",7,9,2,5,4,0,4,6,,\n',
    );
  });

  it('G8: clear() empties records, provisional values and unconfirmed writes, for a join that starts over', () => {
    const store = new GradeStore();
    store.applyStored({ user_id: 'a', spp: 1 }, 1);
    store.applyLocal({ user_id: 'b', spp: 2 }, 1);
    store.clear();
    expect(store.get('a')).to.equal(undefined);
    expect(store.get('b')).to.equal(undefined);
    expect([...store.rows()]).to.deep.equal([]);
    store.confirm(1, 5); // the write before the clear is forgotten
    expect(store.get('b')).to.equal(undefined);
  });
});
