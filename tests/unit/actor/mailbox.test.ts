import { expect } from 'chai';
import sinon from 'sinon';
import { Mailbox } from '../../../src/actor/mailbox.js';

/** A promise with its resolver exposed, to hold a handler mid-flight. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('mailbox', () => {
  it('hands items to the handler one at a time, in order', async () => {
    const log: string[] = [];
    const gates = [deferred(), deferred()];
    const mailbox = new Mailbox<number>(async (n) => {
      log.push(`start ${n}`);
      await gates[n]?.promise;
      log.push(`end ${n}`);
    }, sinon.spy());
    mailbox.post(0);
    mailbox.post(1);
    mailbox.post(2);
    await Promise.resolve();
    expect(log).to.deep.equal(['start 0']);
    expect(mailbox.size).to.equal(2);
    gates[0]?.resolve();
    gates[1]?.resolve();
    await mailbox.close();
    expect(log).to.deep.equal(['start 0', 'end 0', 'start 1', 'end 1', 'start 2', 'end 2']);
  });

  it('reports a failing item and goes on with the next', async () => {
    const onError = sinon.spy();
    const handled: number[] = [];
    const mailbox = new Mailbox<number>((n) => {
      if (n === 1) return Promise.reject(new Error('bad'));
      handled.push(n);
      return Promise.resolve();
    }, onError);
    [0, 1, 2].forEach((n) => mailbox.post(n));
    await mailbox.close();
    expect(handled).to.deep.equal([0, 2]);
    expect(onError.calledOnce).to.be.true;
    expect((onError.firstCall.args[0] as Error).message).to.equal('bad');
    expect(onError.firstCall.args[1]).to.equal(1);
  });

  it('survives an error reporter that throws', async () => {
    const handled: number[] = [];
    const mailbox = new Mailbox<number>(
      (n) => (n === 0 ? Promise.reject(new Error('x')) : (handled.push(n), Promise.resolve())),
      () => {
        throw new Error('reporter broke');
      },
    );
    mailbox.post(0);
    mailbox.post(1);
    await mailbox.close();
    expect(handled).to.deep.equal([1]);
  });

  it('close() refuses new items and resolves after the queued ones', async () => {
    const handled: number[] = [];
    const mailbox = new Mailbox<number>((n) => {
      handled.push(n);
      return Promise.resolve();
    }, sinon.spy());
    mailbox.post(1);
    const closing = mailbox.close();
    expect(mailbox.post(2)).to.be.false;
    await closing;
    expect(handled).to.deep.equal([1]);
    expect(mailbox.closed).to.be.true;
    await mailbox.close(); // idempotent
  });
});
