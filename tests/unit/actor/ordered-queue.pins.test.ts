import { expect } from 'chai';
import { OrderedQueue } from '../../../src/actor/ordered-queue.js';

// The ordered-retry policy (X3 for the grades outbox, FT3 for pending keys) at the edges mutation testing found
// unpinned.

describe('ordered queue – pinned requirements', () => {
  it('X3/FT3: a round stops when deliver delivers none, leaving every item in order', async () => {
    const queue = new OrderedQueue<number>();
    for (const n of [1, 2, 3]) queue.push(n);
    let calls = 0;
    const result = await queue.drain(async () => {
      calls++;
      return 0;
    }, 2);
    expect(result).to.deep.equal({ delivered: 0 });
    expect(calls).to.equal(1);
    expect(queue.items).to.deep.equal([1, 2, 3]);
  });

  it('X3/FT3: only the delivered part of a batch leaves; the rest is offered again first', async () => {
    const queue = new OrderedQueue<number>();
    for (const n of [1, 2, 3, 4]) queue.push(n);
    const offered: number[][] = [];
    const result = await queue.drain(async (batch) => {
      offered.push([...batch]);
      return offered.length === 1 ? 1 : batch.length;
    }, 3);
    expect(offered).to.deep.equal([
      [1, 2, 3],
      [2, 3, 4],
    ]);
    expect(result).to.deep.equal({ delivered: 4 });
    expect(queue.size).to.equal(0);
  });

  it('X3/FT3: items removed while a batch is out: the delivered ones leave by identity, the others stay in order', async () => {
    const queue = new OrderedQueue<{ n: number }>();
    const items = [1, 2, 3, 4].map((n) => ({ n }));
    for (const item of items) queue.push(item);
    const result = await queue.drain(
      async () => {
        queue.remove((item) => item.n === 1); // set aside meanwhile
        return 2; // items 1 and 2 delivered
      },
      3,
      () => queue.size > 2,
    );
    expect(result).to.deep.equal({ delivered: 2 });
    expect(queue.items).to.deep.equal([items[2], items[3]]);
  });

  it('X3/FT3: an item removed from the middle of a batch while it is out: the delivered head leaves, nothing behind it', async () => {
    const queue = new OrderedQueue<number>();
    for (const n of [1, 2, 3, 4]) queue.push(n);
    const result = await queue.drain(
      async () => {
        queue.remove((n) => n === 2); // set aside meanwhile; 1 is still the head
        return 2; // items 1 and 2 delivered
      },
      3,
      () => queue.size > 2,
    );
    expect(result).to.deep.equal({ delivered: 2 });
    expect(queue.items).to.deep.equal([3, 4]);
  });

  it('FT3: remove keeps the queue as it is when nothing matches, and returns what it removed', () => {
    const queue = new OrderedQueue<number>();
    for (const n of [1, 2, 3]) queue.push(n);
    const before = queue.items;
    expect(queue.remove(() => false)).to.deep.equal([]);
    expect(queue.items).to.equal(before);
    expect(queue.remove((n) => n === 2)).to.deep.equal([2]);
    expect(queue.items).to.deep.equal([1, 3]);
  });
});
