import { expect } from 'chai';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sinon from 'sinon';
import { GradesUnavailableError, GradesWriteUnconfirmedError } from '../../../src/grades/errors.js';
import type { GradeUpdate, UserGrade } from '../../../src/grades/model.js';
import { Outbox, type StreamPort, type WriteReceipt } from '../../../src/grades/outbox.js';
import { OutboxLog } from '../../../src/grades/outbox-log.js';
import { decodeReplication, encodeReplication } from '../../../src/grades/wire.js';
import { silentLogger } from '../../../src/log.js';

const SUBJECT = 'grades.set.r1_x';
const up = (i: number): GradeUpdate => ({ user_id: `u${i}`, spp: i });

/**
 * A fake JetStream for one subject: stores in order and checks the expected last subject sequence as the
 * server does. It can fail a publish before storing it (`down`), store it and lose the acknowledgement
 * (`loseAck`), or hold acknowledgements until released (`hold`); it has no de-duplication window at all, so
 * only the outbox's own look-up can prevent a duplicate.
 */
function fakeStream() {
  const stored: { seq: number; data: Uint8Array }[] = [];
  const state = { down: false, loseAck: 0, hold: false };
  const held: (() => void)[] = [];
  let seq = 100;
  const publish = sinon.spy(
    (
      _subject: string,
      data: Uint8Array,
      o: { msgID: string; timeout: number; expectLastSubjectSeq: number },
    ) => {
      if (state.down) return Promise.reject(new Error('no responders'));
      const last = stored.at(-1)?.seq ?? 0;
      if (o.expectLastSubjectSeq !== last) return Promise.reject(new Error('wrong last sequence'));
      const m = { seq: ++seq, data };
      stored.push(m);
      if (state.loseAck > 0) {
        state.loseAck--;
        return Promise.reject(new Error('timeout'));
      }
      if (state.hold)
        return new Promise<{ seq: number }>((resolve) => held.push(() => resolve({ seq: m.seq })));
      return Promise.resolve({ seq: m.seq });
    },
  );
  const port: StreamPort = {
    publish,
    last: () => (state.down ? Promise.reject(new Error('no responders')) : Promise.resolve(stored.at(-1))),
  };
  /** Every write the stream holds, in stream order: [n, user]. */
  const writes = () =>
    stored.flatMap((m) => {
      const msg = decodeReplication(m.data);
      return msg.updates.map((u, i) => [msg.n + i, u.user_id] as const);
    });
  return { port, publish, state, stored, held, writes };
}

function record(update: GradeUpdate): UserGrade {
  return { user_id: update.user_id, postpaid_limit: 0, spp: update.spp ?? 0, shipping_fee: 0, return_fee: 0 };
}

describe('grades outbox', () => {
  let timers: sinon.SinonFakeTimers;
  let dir: string | undefined;
  beforeEach(() => {
    timers = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(async () => {
    timers.restore();
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  function outbox(
    stream: ReturnType<typeof fakeStream>,
    o: { connected?: () => boolean; durable?: Awaited<ReturnType<typeof OutboxLog.open>> } = {},
  ) {
    const events: string[] = [];
    const box = new Outbox({
      origin: 'r1/x',
      subject: SUBJECT,
      stream: () => ((o.connected?.() ?? true) ? stream.port : undefined),
      ...(o.durable ? { durable: o.durable } : {}),
      onLogged: (n, update) => {
        events.push(`logged ${n}`);
        return Promise.resolve(record(update));
      },
      onStored: (writes, seq) => {
        for (const w of writes) events.push(`stored ${w.n}@${seq}${w.provisional ? ' (provisional)' : ''}`);
        return Promise.resolve(writes.map((w) => record(w.update)));
      },
      maxBatch: 3,
      ackTimeoutMs: 1000,
      retryMs: 250,
      writeTimeoutMs: 5000,
      log: silentLogger(),
    });
    return { box, events };
  }

  async function started(stream: ReturnType<typeof fakeStream>, o: Parameters<typeof outbox>[1] = {}) {
    const made = outbox(stream, o);
    await made.box.recover(stream.port);
    return made;
  }

  it('answers a write once the stream stored it, with its sequence; concurrent writes share a message, in order', async () => {
    const stream = fakeStream();
    stream.state.hold = true;
    const { box } = await started(stream);
    const answers = [1, 2, 3, 4, 5, 6, 7].map((i) => box.submit(up(i)));
    await timers.tickAsync(0);
    // One message in flight; the six writes that came meanwhile wait for it.
    expect(stream.publish.callCount).to.equal(1);
    stream.state.hold = false;
    stream.held.shift()?.();
    const receipts = await Promise.all(answers);
    expect(receipts.map((r) => r.status)).to.deep.equal(Array(7).fill('stored'));
    expect(receipts.map((r) => (r as { seq: number }).seq)).to.deep.equal([
      101, 102, 102, 102, 103, 103, 103,
    ]);
    expect(stream.writes().map(([n]) => n)).to.deep.equal([1, 2, 3, 4, 5, 6, 7]);
    // The message id names the writes a message carries: de-duplication can only answer for exactly those.
    expect(stream.publish.args.map((a) => a[2].msgID)).to.deep.equal(['r1/x:1-1', 'r1/x:2-4', 'r1/x:5-7']);
    expect(stream.publish.args.map((a) => a[2].expectLastSubjectSeq)).to.deep.equal([0, 101, 102]);
    expect(box.size).to.equal(0);
  });

  it('a batch larger than the server takes is split, in order, so the head of the queue always goes out', async () => {
    const stream = fakeStream();
    stream.state.hold = true;
    const sizes: number[] = [];
    const limit = 1024 + 700;
    stream.port = {
      ...stream.port,
      maxPayload: () => limit,
      publish: (subject, data, o) => {
        sizes.push(data.length);
        return stream.publish(subject, data, o);
      },
    };
    const { box } = await started(stream);
    const long = (i: number): GradeUpdate => ({ user_id: `${'x'.repeat(250)}${i}`, spp: i });
    const answers = [1, 2, 3, 4, 5, 6, 7].map((i) => box.submit(long(i)));
    await timers.tickAsync(0);
    stream.state.hold = false;
    stream.held.shift()?.();
    const receipts = await Promise.all(answers);
    expect(receipts.map((r) => r.status)).to.deep.equal(Array(7).fill('stored'));
    // Three ids of about 260 bytes would pass the 700 bytes left after the headers' room: two per message at most.
    for (const size of sizes) expect(size).to.be.at.most(limit - 1024);
    expect(stream.publish.args.map((a) => a[2].msgID)).to.deep.equal([
      'r1/x:1-1',
      'r1/x:2-3',
      'r1/x:4-5',
      'r1/x:6-7',
    ]);
    expect(stream.writes().map(([n]) => n)).to.deep.equal([1, 2, 3, 4, 5, 6, 7]);
  });

  it('a write larger than the server takes alone is still sent alone, in its turn (the server decides), never looping', async () => {
    const stream = fakeStream();
    stream.state.hold = true;
    stream.port = { ...stream.port, maxPayload: () => 1024 + 10 };
    const { box } = await started(stream);
    const answers = [1, 2, 3, 4].map((i) => box.submit(up(i)));
    await timers.tickAsync(0);
    stream.state.hold = false;
    stream.held.shift()?.();
    expect((await Promise.all(answers)).map((r) => r.status)).to.deep.equal(Array(4).fill('stored'));
    expect(stream.publish.args.map((a) => a[2].msgID)).to.deep.equal([
      'r1/x:1-1',
      'r1/x:2-2',
      'r1/x:3-3',
      'r1/x:4-4',
    ]);
  });

  it('a message whose acknowledgement was lost is found by a look-up and never stored twice', async () => {
    const stream = fakeStream();
    const { box, events } = await started(stream);
    stream.state.loseAck = 1;
    const a = box.submit(up(1));
    await timers.tickAsync(0);
    expect(stream.stored).to.have.length(1);
    // Refused: the last publish failed and there is no log (caught now: it is refused before it is awaited).
    const b = box.submit(up(2)).catch((e: unknown) => e);
    await timers.tickAsync(250);
    expect((await a).status).to.equal('stored');
    expect(await b).to.be.instanceOf(GradesUnavailableError);
    expect(stream.writes()).to.deep.equal([[1, 'u1']]);
    expect(events).to.deep.equal(['stored 1@101']);
  });

  it("a message someone else put on this replica's subject is never taken as this replica's writes (X7)", async () => {
    const stream = fakeStream();
    const { box, events } = await started(stream);
    expect((await box.submit(up(1))).status).to.equal('stored');
    // Another writer's genuine message, carrying counters far beyond ours, lands on our subject.
    stream.stored.push({
      seq: 150,
      data: encodeReplication({ origin: 'r2/y', n: 1, updates: [up(90), up(91), up(92), up(93)] }),
    });
    // Our next publish expects 101 as the last; it fails, the outbox looks up the subject's last message, and
    // must not count writes 2.. as stored because a foreign message says n reached 4.
    const b = box.submit(up(2));
    let settled: unknown;
    b.then(
      (r) => (settled = r),
      (e: unknown) => (settled = e),
    );
    for (let i = 0; i < 40 && settled === undefined; i++) await timers.tickAsync(250);
    const receipt = await b;
    expect(receipt.status).to.equal('stored');
    // Published after the foreign message, and stored exactly once.
    expect(stream.publish.lastCall.args[2].expectLastSubjectSeq).to.equal(150);
    expect(stream.writes().filter(([, user]) => user === 'u2')).to.deep.equal([[2, 'u2']]);
    expect(events).to.deep.equal(['stored 1@101', `stored 2@${(receipt as { seq: number }).seq}`]);
  });

  it('without a log, a write while NATS is unreachable is refused at once and nothing is published', async () => {
    const stream = fakeStream();
    let connected = false;
    const { box } = await started(stream, { connected: () => connected });
    const err = await box.submit(up(1)).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(GradesUnavailableError);
    connected = true;
    await timers.tickAsync(1000);
    expect(stream.stored).to.have.length(0);
    expect(box.size).to.equal(0);
  });

  it('without a log, a write that was sent but not confirmed in time is reported unconfirmed, and still lands in order', async () => {
    const stream = fakeStream();
    const { box } = await started(stream);
    stream.state.down = true;
    const a = box.submit(up(1)).catch((e: unknown) => e);
    await timers.tickAsync(5000);
    expect(await a).to.be.instanceOf(GradesWriteUnconfirmedError);
    stream.state.down = false;
    await timers.tickAsync(250);
    expect(stream.writes()).to.deep.equal([[1, 'u1']]);
    expect(box.size).to.equal(0);
  });

  describe('with an outbox log', () => {
    // The log does real file I/O: fake timers must not starve it.
    /** Waits (in real time: performance.now is not faked) for file I/O the fake clock cannot speed up. */
    async function until(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
      const started = performance.now();
      while (!(await check()) && performance.now() - started < ms) await new Promise((r) => setImmediate(r));
      expect(await check()).to.equal(true);
    }
    async function settle(ms = 0): Promise<void> {
      for (let i = 0; i < 20; i++) {
        await timers.tickAsync(ms / 20);
        await new Promise((r) => setImmediate(r));
      }
    }

    it('an outage write is synced to the log and answered as logged; replayed in order when NATS is back; the log is then emptied', async () => {
      dir = await mkdtemp(join(tmpdir(), 'outbox-'));
      const durable = await OutboxLog.open(dir, () => 'r1/x');
      const stream = fakeStream();
      let connected = true;
      const { box, events } = await started(stream, { connected: () => connected, durable });
      const a = box.submit(up(1));
      await settle();
      expect((await a).status).to.equal('stored');
      connected = false;
      const logged: Promise<WriteReceipt>[] = [2, 3, 4, 5].map((i) => box.submit(up(i)));
      await settle();
      const receipts = await Promise.all(logged);
      expect(receipts.map((r) => r.status)).to.deep.equal(['logged', 'logged', 'logged', 'logged']);
      const text = await readFile(join(dir, 'outbox.jsonl'), 'utf8');
      expect(
        text
          .trim()
          .split('\n')
          .map((l) => (JSON.parse(l) as { n: number }).n),
      ).to.deep.equal([2, 3, 4, 5]);
      connected = true;
      stream.state.hold = true;
      // A write while the logged ones drain is logged too (it would wait behind them otherwise).
      const behind = box.submit(up(6));
      await settle(1000);
      expect((await behind).status).to.equal('logged');
      stream.state.hold = false;
      stream.held.shift()?.();
      await settle(1000);
      expect(stream.writes().map(([n]) => n)).to.deep.equal([1, 2, 3, 4, 5, 6]);
      expect(events.filter((e) => e.startsWith('stored'))).to.deep.equal([
        'stored 1@101',
        'stored 2@102 (provisional)',
        'stored 3@102 (provisional)',
        'stored 4@102 (provisional)',
        'stored 5@103 (provisional)',
        'stored 6@103 (provisional)',
      ]);
      const logFile = join(dir, 'outbox.jsonl');
      await until(async () => (await readFile(logFile, 'utf8')) === '{"next":7}\n');
      await box.stop();
    });

    it('a write logged while NATS is disconnected (no publish failed yet) goes out once NATS is back, with no other write', async () => {
      dir = await mkdtemp(join(tmpdir(), 'outbox-'));
      const stream = fakeStream();
      let connected = false;
      const { box } = await started(stream, {
        connected: () => connected,
        durable: await OutboxLog.open(dir, () => 'r1/x'),
      });
      const answer = box.submit(up(1));
      await settle();
      expect((await answer).status).to.equal('logged');
      connected = true;
      await settle(1000);
      expect(stream.writes()).to.deep.equal([[1, 'u1']]);
      expect(box.size).to.equal(0);
      await box.stop();
    });

    it('after a failed publish a retry never lands after a newer write nor twice, however long the outage', async () => {
      dir = await mkdtemp(join(tmpdir(), 'outbox-'));
      const stream = fakeStream();
      const { box } = await started(stream, { durable: await OutboxLog.open(dir, () => 'r1/x') });
      stream.state.loseAck = 1; // write 1 is stored, its acknowledgement lost
      const first = box.submit(up(1));
      await settle();
      stream.state.down = true; // then the stream is unreachable for longer than any de-duplication window
      const later = [2, 3].map((i) => box.submit(up(i)));
      await settle(10 * 60_000);
      expect((await first).status).to.equal('logged');
      expect((await Promise.all(later)).map((r) => r.status)).to.deep.equal(['logged', 'logged']);
      expect(stream.writes().map(([n]) => n)).to.deep.equal([1]);
      stream.state.down = false;
      await settle(1000);
      expect(stream.writes().map(([n]) => n)).to.deep.equal([1, 2, 3]);
      expect(box.size).to.equal(0);
      await box.stop();
    });

    it('a publish failure with writes queued logs them all; a restart on the same directory keeps origin and order and skips what the stream already holds', async () => {
      dir = await mkdtemp(join(tmpdir(), 'outbox-'));
      const stream = fakeStream();
      const first = await OutboxLog.open(dir, () => 'r1/x');
      stream.state.loseAck = 1; // write 1 is stored, but the process will not know before it dies
      const { box } = await started(stream, { durable: first });
      const answers = [1, 2, 3, 4].map((i) => box.submit(up(i)));
      await settle();
      const receipts = await Promise.all(answers);
      expect(receipts.map((r) => r.status)).to.deep.equal(['logged', 'logged', 'logged', 'logged']);
      // The process dies here (SIGKILL): nothing more is published, the log stays as it is.
      stream.state.down = true;
      await box.stop();
      stream.state.down = false;

      const second = await OutboxLog.open(dir, () => 'another-origin');
      expect(second.origin).to.equal('r1/x');
      expect(second.writes.map((w) => w.n)).to.deep.equal([1, 2, 3, 4]);
      const restarted = outbox(stream, { durable: second });
      const pending = await restarted.box.recover(stream.port);
      expect(pending.map((w) => w.n)).to.deep.equal([2, 3, 4]);
      await settle(1000);
      expect(stream.writes().map(([n]) => n)).to.deep.equal([1, 2, 3, 4]);
      const next = restarted.box.submit(up(5));
      await settle();
      expect((await next).status).to.equal('stored');
      expect(stream.writes().map(([n]) => n)).to.deep.equal([1, 2, 3, 4, 5]);
      await restarted.box.stop();
    });
  });
});
