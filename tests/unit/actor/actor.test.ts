import { expect } from 'chai';
import { Actor } from '../../../src/actor/actor.js';
import { ActorStoppedError } from '../../../src/errors.js';
import { silentLogger } from '../../../src/log.js';

type CounterMessage = { type: 'add'; n: number } | { type: 'read' } | { type: 'fail' };
interface CounterReplies {
  add: number;
  read: number;
  fail: never;
}

/** A tiny actor whose `add` yields mid-way, so interleaving would show as lost updates. */
class Counter extends Actor<CounterMessage, CounterReplies> {
  total = 0;
  stops = 0;
  constructor() {
    super('counter', silentLogger());
  }
  protected override onStop(): Promise<void> {
    this.stops++;
    return Promise.resolve();
  }
  protected override async receive(msg: CounterMessage): Promise<number> {
    switch (msg.type) {
      case 'add': {
        const before = this.total;
        await new Promise((r) => setImmediate(r));
        this.total = before + msg.n;
        return this.total;
      }
      case 'read':
        return this.total;
      case 'fail':
        throw new Error('this message fails');
      default: {
        const unknown: never = msg;
        throw new Error(String(unknown));
      }
    }
  }
}

describe('actor', () => {
  it('handles one message at a time, so read-modify-write steps never interleave', async () => {
    const counter = new Counter();
    await counter.start();
    await Promise.all(Array.from({ length: 50 }, () => counter.ask({ type: 'add', n: 1 })));
    expect(await counter.ask({ type: 'read' })).to.equal(50);
    await counter.stop();
  });

  it('a failing message rejects its caller and the actor goes on', async () => {
    const counter = new Counter();
    await counter.start();
    const failed = await counter.ask({ type: 'fail' }).catch((e: unknown) => e);
    expect((failed as Error).message).to.equal('this message fails');
    expect(await counter.ask({ type: 'add', n: 2 })).to.equal(2);
    counter.tell({ type: 'fail' }); // logged, not thrown
    expect(await counter.ask({ type: 'read' })).to.equal(2);
    await counter.stop();
  });

  it('refuses messages before start and after stop', async () => {
    const counter = new Counter();
    expect(await counter.ask({ type: 'read' }).catch((e: unknown) => e)).to.be.instanceOf(ActorStoppedError);
    await counter.start();
    await counter.stop();
    expect(await counter.ask({ type: 'read' }).catch((e: unknown) => e)).to.be.instanceOf(ActorStoppedError);
    expect(counter.status).to.equal('stopped');
  });

  it('stop is enqueued behind pending messages, runs onStop once, and a second stop returns the same promise', async () => {
    const counter = new Counter();
    await counter.start();
    const adds = [1, 2, 3].map((n) => counter.ask({ type: 'add', n }));
    const first = counter.stop();
    const second = counter.stop();
    expect(second).to.equal(first);
    await first;
    expect(await Promise.all(adds)).to.deep.equal([1, 3, 6]);
    expect(counter.stops).to.equal(1);
  });

  it('cannot be started twice', async () => {
    const counter = new Counter();
    await counter.start();
    expect(await counter.start().catch((e: unknown) => e)).to.be.instanceOf(Error);
    await counter.stop();
  });
});
