import { expect } from 'chai';
import sinon from 'sinon';
import { GradesActor } from '../../../src/grades/grades-actor.js';
import type { ReplicationMessage } from '../../../src/grades/model.js';
import { silentLogger } from '../../../src/log.js';

describe('grades actor', () => {
  let publish: sinon.SinonSpy<[ReplicationMessage], void>;
  let actor: GradesActor;
  beforeEach(async () => {
    publish = sinon.spy<(m: ReplicationMessage) => void>(() => undefined);
    actor = new GradesActor({ origin: 'me/1', publish, log: silentLogger() });
    await actor.start();
  });
  afterEach(() => actor.stop());

  it('applies a set at once, answers the whole record, and hands the write to replication with its origin and counter', async () => {
    const record = await actor.ask({ type: 'set', update: { user_id: 'u', spp: 3 } });
    expect(record).to.deep.equal({ user_id: 'u', postpaid_limit: 0, spp: 3, shipping_fee: 0, return_fee: 0 });
    await actor.ask({ type: 'set', update: { user_id: 'u', return_fee: 4 } });
    expect(publish.args.map(([m]) => m)).to.deep.equal([
      { origin: 'me/1', n: 1, update: { user_id: 'u', spp: 3 } },
      { origin: 'me/1', n: 2, update: { user_id: 'u', return_fee: 4 } },
    ]);
  });

  it('skips its own messages from the stream: they only confirm the write, never re-apply it', async () => {
    await actor.ask({ type: 'set', update: { user_id: 'u', spp: 1 } });
    await actor.ask({ type: 'set', update: { user_id: 'u', spp: 2 } });
    // Its first write comes back after the second was made: the value must stay 2.
    await actor.ask({
      type: 'stream',
      seq: 1,
      msg: { origin: 'me/1', n: 1, update: { user_id: 'u', spp: 1 } },
    });
    expect((await actor.ask({ type: 'get', userId: 'u' }))?.spp).to.equal(2);
    await actor.ask({ type: 'confirm', n: 2, seq: 2 });
    expect(actor.state).to.include({ unconfirmed: 0, position: 1 });
    expect(publish.callCount).to.equal(2);
  });

  it('applies another origin’s messages, also from an earlier run of the same replica id', async () => {
    await actor.ask({
      type: 'stream',
      seq: 5,
      msg: { origin: 'me/0', n: 9, update: { user_id: 'u', spp: 7 } },
    });
    expect((await actor.ask({ type: 'get', userId: 'u' }))?.spp).to.equal(7);
    expect(actor.state.position).to.equal(5);
    expect(publish.called).to.be.false;
  });

  it('ignores a message at or below its position (a backup already holds it)', async () => {
    await actor.ask({ type: 'restart', position: 10 });
    await actor.ask({
      type: 'stream',
      seq: 10,
      msg: { origin: 'x/1', n: 1, update: { user_id: 'u', spp: 1 } },
    });
    expect(await actor.ask({ type: 'get', userId: 'u' })).to.be.undefined;
    await actor.ask({
      type: 'stream',
      seq: 11,
      msg: { origin: 'x/1', n: 2, update: { user_id: 'u', spp: 2 } },
    });
    expect((await actor.ask({ type: 'get', userId: 'u' }))?.spp).to.equal(2);
  });
});
