import { expect } from 'chai';
import { GradesActor } from '../../../src/grades/grades-actor.js';
import { silentLogger } from '../../../src/log.js';

describe('grades actor', () => {
  let actor: GradesActor;
  beforeEach(async () => {
    actor = new GradesActor({ log: silentLogger() });
    await actor.start();
  });
  afterEach(() => actor.stop());

  it('applies stored writes at once, in order, and answers the whole record after each', async () => {
    const [record] = await actor.ask({
      type: 'stored',
      seq: 4,
      writes: [{ n: 1, update: { user_id: 'u', spp: 3 }, provisional: false }],
    });
    expect(record).to.deep.equal({ user_id: 'u', postpaid_limit: 0, spp: 3, shipping_fee: 0, return_fee: 0 });
    const records = await actor.ask({
      type: 'stored',
      seq: 5,
      writes: [
        { n: 2, update: { user_id: 'u', return_fee: 4 }, provisional: false },
        { n: 3, update: { user_id: 'u', spp: 6 }, provisional: false },
      ],
    });
    expect(records).to.deep.equal([
      { user_id: 'u', postpaid_limit: 0, spp: 3, shipping_fee: 0, return_fee: 4 },
      { user_id: 'u', postpaid_limit: 0, spp: 6, shipping_fee: 0, return_fee: 4 },
    ]);
    expect(actor.peek('u')).to.deep.equal(records[1]);
  });

  it('its own messages from the stream only confirm a provisional write, never re-apply it over a newer one', async () => {
    await actor.ask({ type: 'local', n: 1, update: { user_id: 'u', spp: 1 } });
    await actor.ask({ type: 'local', n: 2, update: { user_id: 'u', spp: 2 } });
    // Its first write comes back after the second was made: the value must stay 2.
    await actor.ask({
      type: 'stream',
      seq: 1,
      msg: { origin: 'me/1', n: 1, updates: [{ user_id: 'u', spp: 1 }] },
      own: true,
    });
    expect(actor.peek('u')?.spp).to.equal(2);
    const [confirmed] = await actor.ask({
      type: 'stored',
      seq: 2,
      writes: [{ n: 2, update: { user_id: 'u', spp: 2 }, provisional: true }],
    });
    expect(confirmed).to.equal(undefined);
    expect(actor.state).to.include({ unconfirmed: 0, position: 1 });
    expect(actor.peek('u')?.spp).to.equal(2);
  });

  it('applies another origin’s messages, also from an earlier run of the same replica id', async () => {
    await actor.ask({
      type: 'stream',
      seq: 5,
      msg: { origin: 'me/0', n: 9, updates: [{ user_id: 'u', spp: 7 }] },
      own: false,
    });
    expect(actor.peek('u')?.spp).to.equal(7);
    expect(actor.state.position).to.equal(5);
  });

  it('ignores a message at or below its position (a backup already holds it)', async () => {
    await actor.ask({ type: 'restart', position: 10, streamCreated: 'c' });
    await actor.ask({
      type: 'stream',
      seq: 10,
      msg: { origin: 'x/1', n: 1, updates: [{ user_id: 'u', spp: 1 }] },
      own: false,
    });
    expect(actor.peek('u')).to.be.undefined;
    await actor.ask({
      type: 'stream',
      seq: 11,
      msg: { origin: 'x/1', n: 2, updates: [{ user_id: 'u', spp: 2 }] },
      own: false,
    });
    expect(actor.peek('u')?.spp).to.equal(2);
  });

  it('a skipped (malformed) message moves the position past it', async () => {
    await actor.ask({ type: 'skip', seq: 3 });
    expect(actor.state.position).to.equal(3);
    await actor.ask({ type: 'skip', seq: 2 });
    expect(actor.state.position).to.equal(3);
  });

  it('a standalone write answers the whole record and needs no stream', async () => {
    const record = await actor.ask({ type: 'unreplicated', update: { user_id: 'u' } });
    expect(record).to.deep.equal({ user_id: 'u', postpaid_limit: 0, spp: 0, shipping_fee: 0, return_fee: 0 });
    expect(actor.state.records).to.equal(1);
  });
});
