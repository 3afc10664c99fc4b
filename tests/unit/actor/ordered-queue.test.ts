import { expect } from 'chai';
import { OrderedQueue } from '../../../src/actor/ordered-queue.js';

describe('ordered queue – the ordered-retry policy', () => {
  it('delivers oldest first in batches and removes only what was delivered', async () => {
    const q = new OrderedQueue<number>();
    for (let i = 1; i <= 7; i++) q.push(i);
    const batches: number[][] = [];
    const result = await q.drain((batch) => {
      batches.push([...batch]);
      return Promise.resolve(batch.length);
    }, 3);
    expect(batches).to.deep.equal([[1, 2, 3], [4, 5, 6], [7]]);
    expect(result).to.deep.equal({ delivered: 7 });
    expect(q.size).to.equal(0);
  });

  it('stops at the first failure; the rest stays in order for the next round, and nothing overtakes it', async () => {
    const q = new OrderedQueue<number>();
    for (let i = 1; i <= 5; i++) q.push(i);
    const seen: number[] = [];
    const failing = await q.drain((batch) => {
      seen.push(batch[0] as number);
      if (batch[0] === 3) return Promise.reject(new Error('down'));
      return Promise.resolve(1);
    }, 1);
    expect(failing.delivered).to.equal(2);
    expect((failing.error as Error).message).to.equal('down');
    expect(q.items).to.deep.equal([3, 4, 5]);
    expect(seen).to.deep.equal([1, 2, 3]);
    q.push(6);
    await q.drain((batch) => Promise.resolve(batch.length), 10);
    expect(q.size).to.equal(0);
  });

  it('a partial delivery removes the delivered head only; remove() keeps the order of the rest', async () => {
    const q = new OrderedQueue<number>();
    for (let i = 1; i <= 4; i++) q.push(i);
    await q.drain(
      () => Promise.resolve(1),
      4,
      () => q.size > 3,
    );
    expect(q.items).to.deep.equal([2, 3, 4]);
    expect(q.remove((i) => i === 3)).to.deep.equal([3]);
    expect(q.items).to.deep.equal([2, 4]);
    expect(q.head).to.equal(2);
  });

  it('items removed while a batch is out do not confuse what leaves the queue', async () => {
    const q = new OrderedQueue<number>();
    for (let i = 1; i <= 4; i++) q.push(i);
    await q.drain(
      (batch) => {
        q.remove((i) => i === 1 || i === 4); // 1 was in the batch, 4 behind it
        return Promise.resolve(batch.length);
      },
      2,
      () => q.size > 1,
    );
    expect(q.items).to.deep.equal([3]);
  });
});
