import { expect } from 'chai';
import { GradeStore } from '../../../src/grades/store.js';

describe('grade store – merge rule', () => {
  it('a partial write keeps the fields it does not carry; unset fields read 0', () => {
    const store = new GradeStore();
    store.applyLocal({ user_id: 'u', spp: 5 }, 1);
    store.applyLocal({ user_id: 'u', shipping_fee: 7 }, 2);
    expect(store.get('u')).to.deep.equal({
      user_id: 'u',
      postpaid_limit: 0,
      spp: 5,
      shipping_fee: 7,
      return_fee: 0,
    });
    expect(store.get('nobody')).to.be.undefined;
  });

  it('a remote write changes a field only with a higher sequence than the field’s', () => {
    const store = new GradeStore();
    store.applyRemote({ user_id: 'u', spp: 1 }, 10);
    store.applyRemote({ user_id: 'u', spp: 2 }, 9);
    expect(store.get('u')?.spp).to.equal(1);
    store.applyRemote({ user_id: 'u', spp: 3, return_fee: 4 }, 11);
    expect(store.get('u')).to.include({ spp: 3, return_fee: 4 });
  });

  it('a local write shows at once and is confirmed under the same rule', () => {
    const store = new GradeStore();
    store.applyRemote({ user_id: 'u', spp: 1 }, 5);
    store.applyLocal({ user_id: 'u', spp: 2 }, 1);
    expect(store.get('u')?.spp).to.equal(2);
    store.applyRemote({ user_id: 'u', spp: 3 }, 8); // published after ours reached the stream
    expect(store.get('u')?.spp).to.equal(2); // still provisional
    store.confirm(1, 7);
    expect(store.get('u')?.spp).to.equal(3); // 8 > 7: the other write is newer everywhere
    expect(store.unconfirmed).to.equal(0);
  });

  it('confirmation is idempotent and only the latest local write clears the provisional value', () => {
    const store = new GradeStore();
    store.applyLocal({ user_id: 'u', spp: 1 }, 1);
    store.applyLocal({ user_id: 'u', spp: 2 }, 2);
    store.confirm(1, 10);
    expect(store.get('u')?.spp).to.equal(2);
    store.confirm(1, 10);
    store.confirm(2, 11);
    expect(store.get('u')?.spp).to.equal(2);
    expect([...store.rows()]).to.deep.equal([{ user_id: 'u', values: [0, 2, 0, 0], seqs: [0, 11, 0, 0] }]);
  });

  it('backup rows carry exactly what get serves (provisional values and empty records at sequence 0), and loading them merges by sequence', () => {
    const a = new GradeStore();
    a.applyRemote({ user_id: 'u', spp: 1, return_fee: 9 }, 3);
    a.applyLocal({ user_id: 'u', spp: 2 }, 1);
    a.applyLocal({ user_id: 'fresh', spp: 4 }, 2);
    a.applyRemote({ user_id: 'empty' }, 4);
    const rows = [...a.rows()];
    expect(rows).to.deep.equal([
      { user_id: 'u', values: [0, 2, 0, 9], seqs: [0, 0, 0, 3] },
      { user_id: 'fresh', values: [0, 4, 0, 0], seqs: [0, 0, 0, 0] },
      { user_id: 'empty', values: [0, 0, 0, 0], seqs: [0, 0, 0, 0] },
    ]);
    for (const row of rows) {
      expect(row.values).to.deep.equal([
        a.get(row.user_id)?.postpaid_limit,
        a.get(row.user_id)?.spp,
        a.get(row.user_id)?.shipping_fee,
        a.get(row.user_id)?.return_fee,
      ]);
    }
    const b = new GradeStore();
    b.applyRemote({ user_id: 'u', return_fee: 10 }, 4);
    for (const row of rows) b.load(row);
    expect(b.get('u')).to.include({ spp: 2, return_fee: 10 });
    expect(b.get('empty')).to.deep.equal({
      user_id: 'empty',
      postpaid_limit: 0,
      spp: 0,
      shipping_fee: 0,
      return_fee: 0,
    });
    // A provisional value has the lowest precedence: any stream message for the field wins.
    b.applyRemote({ user_id: 'fresh', spp: 5 }, 1);
    expect(b.get('fresh')?.spp).to.equal(5);
  });

  it('the writes of one stream message apply in order; applying the message again changes nothing', () => {
    const store = new GradeStore();
    const updates = [
      { user_id: 'u', spp: 1, return_fee: 1 },
      { user_id: 'u', spp: 2 },
    ];
    store.applyMessage(updates, 1, 7, false);
    expect(store.get('u')).to.include({ spp: 2, return_fee: 1 });
    store.applyStored({ user_id: 'u', spp: 1 }, 7);
    store.applyStored({ user_id: 'u', spp: 2 }, 7);
    store.applyMessage(updates, 1, 7, false);
    expect(store.get('u')).to.include({ spp: 2, return_fee: 1 });
    store.applyMessage([{ user_id: 'u', spp: 0 }], 3, 6, false);
    expect(store.get('u')?.spp).to.equal(2);
  });

  it('an own message confirms provisional writes and applies the others (an earlier run of the same origin)', () => {
    const store = new GradeStore();
    store.applyLocal({ user_id: 'u', spp: 5 }, 3);
    store.applyMessage(
      [
        { user_id: 'u', return_fee: 1 },
        { user_id: 'u', spp: 5 },
      ],
      2,
      9,
      true,
    );
    expect(store.unconfirmed).to.equal(0);
    expect([...store.rows()]).to.deep.equal([{ user_id: 'u', values: [0, 5, 0, 1], seqs: [0, 9, 0, 9] }]);
  });

  it('a standalone write replaces values and marks them as set by no stream message', () => {
    const store = new GradeStore();
    store.load({ user_id: 'u', values: [1, 2, 3, 4], seqs: [5, 5, 5, 5] });
    store.applyUnreplicated({ user_id: 'u', spp: 9 });
    expect([...store.rows()]).to.deep.equal([{ user_id: 'u', values: [1, 9, 3, 4], seqs: [5, 0, 5, 5] }]);
  });
});
