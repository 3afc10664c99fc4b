import { expect } from 'chai';
import sinon from 'sinon';
import type { ReplicationMessage } from '../../../src/grades/model.js';
import { Outbox, type Publisher } from '../../../src/grades/replication.js';
import { silentLogger } from '../../../src/log.js';

const msg = (n: number): ReplicationMessage => ({ origin: 'r1/x', n, update: { user_id: `u${n}`, spp: n } });

/** A fake JetStream: assigns sequences in publish order, or fails while `down`; remembers every message id. */
function fakeStream() {
  let seq = 0;
  const stored = new Map<string, number>();
  const state = { down: false };
  const publish = sinon.spy((_subject: string, _data: string, o: { msgID: string; timeout: number }) => {
    if (state.down) return Promise.reject(new Error('no responders'));
    // De-duplication by message id, as JetStream does within its window.
    const known = stored.get(o.msgID);
    if (known !== undefined) return Promise.resolve({ seq: known });
    stored.set(o.msgID, ++seq);
    return Promise.resolve({ seq });
  });
  const publisher: Publisher = { publish };
  return { publisher, publish, state, stored };
}

describe('grades outbox', () => {
  let timers: sinon.SinonFakeTimers;
  beforeEach(() => {
    timers = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  });
  afterEach(() => timers.restore());

  function outbox(
    stream: ReturnType<typeof fakeStream>,
    onConfirm: (n: number, seq: number) => void,
    connected = () => true,
  ) {
    return new Outbox({
      subject: 'grades.set',
      publisher: () => (connected() ? stream.publisher : undefined),
      onConfirm,
      window: 3,
      ackTimeoutMs: 1000,
      retryMs: 250,
      log: silentLogger(),
    });
  }

  it('publishes writes in the order they were made, each with its origin and counter as message id, and confirms them', async () => {
    const stream = fakeStream();
    const confirmed: [number, number][] = [];
    const box = outbox(stream, (n, seq) => confirmed.push([n, seq]));
    for (let n = 1; n <= 7; n++) box.push(msg(n));
    await timers.tickAsync(0);
    expect(stream.publish.args.map((a) => a[2].msgID)).to.deep.equal(
      [1, 2, 3, 4, 5, 6, 7].map((n) => `r1/x:${n}`),
    );
    expect(JSON.parse(stream.publish.firstCall.args[1])).to.deep.equal(msg(1));
    expect(confirmed).to.deep.equal([1, 2, 3, 4, 5, 6, 7].map((n) => [n, n]));
    expect(box.size).to.equal(0);
  });

  it('keeps writes while NATS is unreachable and publishes them in order when it is back', async () => {
    const stream = fakeStream();
    let connected = false;
    const confirmed: number[] = [];
    const box = outbox(
      stream,
      (n) => confirmed.push(n),
      () => connected,
    );
    for (let n = 1; n <= 5; n++) box.push(msg(n));
    await timers.tickAsync(1000);
    expect(stream.publish.called).to.be.false;
    expect(box.size).to.equal(5);
    connected = true;
    await timers.tickAsync(250);
    expect(confirmed).to.deep.equal([1, 2, 3, 4, 5]);
    expect([...stream.stored.entries()]).to.deep.equal([1, 2, 3, 4, 5].map((n) => [`r1/x:${n}`, n]));
  });

  it('after a failed publish, retries from the first unacknowledged write with the same ids, losing nothing', async () => {
    const stream = fakeStream();
    const confirmed: number[] = [];
    const box = outbox(stream, (n) => confirmed.push(n));
    stream.state.down = true;
    for (let n = 1; n <= 4; n++) box.push(msg(n));
    await timers.tickAsync(0);
    expect(box.size).to.equal(4);
    expect(confirmed).to.deep.equal([]);
    stream.state.down = false;
    await timers.tickAsync(250);
    expect(confirmed).to.deep.equal([1, 2, 3, 4]);
    const retried = stream.publish.args.slice(-4).map((a) => a[2].msgID);
    expect(retried).to.deep.equal([1, 2, 3, 4].map((n) => `r1/x:${n}`));
    expect(stream.stored.size).to.equal(4);
  });

  it('stop leaves what is queued in place', async () => {
    const stream = fakeStream();
    stream.state.down = true;
    const box = outbox(stream, () => undefined);
    box.push(msg(1));
    await timers.tickAsync(0);
    box.stop();
    stream.state.down = false;
    await timers.tickAsync(1000);
    expect(box.size).to.equal(1);
  });
});
