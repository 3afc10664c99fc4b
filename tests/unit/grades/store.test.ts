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

  it('backup rows carry confirmed values only, and loading them merges by sequence', () => {
    const a = new GradeStore();
    a.applyRemote({ user_id: 'u', spp: 1, return_fee: 9 }, 3);
    a.applyLocal({ user_id: 'u', spp: 2 }, 1);
    a.applyLocal({ user_id: 'fresh', spp: 4 }, 2);
    const rows = [...a.rows()];
    expect(rows).to.deep.equal([{ user_id: 'u', values: [0, 1, 0, 9], seqs: [0, 3, 0, 3] }]);
    const b = new GradeStore();
    b.applyRemote({ user_id: 'u', return_fee: 10 }, 4);
    for (const row of rows) b.load(row);
    expect(b.get('u')).to.include({ spp: 1, return_fee: 10 });
  });
});
