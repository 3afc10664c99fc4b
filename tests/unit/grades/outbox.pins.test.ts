import { expect } from 'chai';
import sinon from 'sinon';
import { GradesUnavailableError, GradesWriteUnconfirmedError } from '../../../src/grades/errors.js';
import type { GradeUpdate, UserGrade } from '../../../src/grades/model.js';
import { Outbox, type OutboxOptions, type StreamPort } from '../../../src/grades/outbox.js';
import type { LoggedWrite, OutboxLog } from '../../../src/grades/outbox-log.js';
import { decodeReplication, encodeReplication } from '../../../src/grades/wire.js';
import { silentLogger } from '../../../src/log.js';

// The grades outbox (X3 order, X6 outages, X7 foreign messages, X8 a 2xx is kept) at the edges mutation testing
// found unpinned by tests/unit/grades/outbox.test.ts. The log here is an in-memory fake whose appends and
// rewrites the test settles, so every path runs on fake timers.

const SUBJECT = 'grades.set.r1_x';
const ORIGIN = 'r1/x';
const up = (i: number): GradeUpdate => ({ user_id: `u${i}`, spp: i });
const record = (update: GradeUpdate): UserGrade => ({
  user_id: update.user_id,
  postpaid_limit: 0,
  spp: update.spp ?? 0,
  shipping_fee: 0,
  return_fee: 0,
});

/** A fake JetStream subject: stores in order, checks the expected last sequence, can be down or hold acks. */
function fakeStream() {
  const stored: { seq: number; data: Uint8Array; mac?: string | undefined }[] = [];
  const state = { down: false, hold: false, loseAck: 0, refusePublish: false };
  /** Held acknowledgements: call with false to fail the publish instead (after it was stored). */
  const held: ((ok?: boolean) => void)[] = [];
  let seq = 100;
  const publish = sinon.spy(
    (
      _subject: string,
      data: Uint8Array,
      o: { msgID: string; timeout: number; expectLastSubjectSeq: number; mac?: string | undefined },
    ): Promise<{ seq: number }> => {
      if (state.down || state.refusePublish) return Promise.reject(new Error('no responders'));
      if (o.expectLastSubjectSeq !== (stored.at(-1)?.seq ?? 0)) {
        return Promise.reject(new Error('wrong last sequence'));
      }
      const m = { seq: ++seq, data, mac: o.mac };
      stored.push(m);
      if (state.loseAck > 0) {
        state.loseAck--;
        return Promise.reject(new Error('timeout'));
      }
      if (state.hold) {
        return new Promise((resolve, reject) =>
          held.push((ok = true) => (ok ? resolve({ seq: m.seq }) : reject(new Error('timeout')))),
        );
      }
      return Promise.resolve({ seq: m.seq });
    },
  );
  const last = sinon.spy(() =>
    state.down ? Promise.reject(new Error('no responders')) : Promise.resolve(stored.at(-1)),
  );
  const port: StreamPort = { publish, last };
  /** The counters the stream holds, in stream order. */
  const ns = () =>
    stored.flatMap((m) => {
      const msg = decodeReplication(m.data);
      return msg.updates.map((_, i) => msg.n + i);
    });
  /** Puts a message on the subject as if published by `origin`. */
  const put = (origin: string, n: number, count: number) =>
    stored.push({
      seq: ++seq,
      data: encodeReplication({ origin, n, updates: Array.from({ length: count }, (_, i) => up(n + i)) }),
    });
  return { port, publish, last, state, stored, held, ns, put };
}

/** An in-memory outbox log: appends and rewrites resolve (or fail) when the test says. */
function fakeLog() {
  const appended: number[][] = [];
  const rewrites: { ns: number[]; next: number }[] = [];
  const state = {
    failAppend: undefined as Error | undefined,
    failRewrite: undefined as Error | undefined,
    hold: false,
  };
  /** Appends held until released (with an error to fail them). */
  const held: ((err?: Error) => void)[] = [];
  const log = {
    append: sinon.spy((writes: readonly LoggedWrite[]) => {
      if (state.failAppend) return Promise.reject(state.failAppend);
      const ns = writes.map((w) => w.n);
      if (state.hold) {
        return new Promise<void>((resolve, reject) =>
          held.push((err) => {
            if (err) return reject(err);
            appended.push(ns);
            resolve();
          }),
        );
      }
      appended.push(ns);
      return Promise.resolve();
    }),
    rewrite: sinon.spy((writes: readonly LoggedWrite[], next: number) => {
      if (state.failRewrite) return Promise.reject(state.failRewrite);
      rewrites.push({ ns: writes.map((w) => w.n), next });
      return Promise.resolve();
    }),
    close: sinon.spy(() => Promise.resolve()),
  };
  return { log: log as unknown as OutboxLog, spies: log, appended, rewrites, state, held };
}

type Stream = ReturnType<typeof fakeStream>;

/** The outcome of a write once settled: its status and seq, or the error's class name and message. */
function outcome(p: Promise<unknown>): { value?: string } {
  const seen: { value?: string } = {};
  p.then(
    (r) => {
      if (typeof r === 'boolean') {
        seen.value = String(r);
        return;
      }
      const receipt = r as { status: string; n: number; seq?: number };
      seen.value = `${receipt.status} ${receipt.n}${receipt.seq === undefined ? '' : `@${receipt.seq}`}`;
    },
    (e: unknown) => (seen.value = `${(e as Error).constructor.name}: ${(e as Error).message}`),
  );
  return seen;
}

describe('grades outbox – pinned requirements', () => {
  let timers: sinon.SinonFakeTimers;
  beforeEach(() => {
    timers = sinon.useFakeTimers({ now: 1_700_000_000_000, toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(() => timers.restore());

  function make(
    stream: Stream,
    o: {
      connected?: () => boolean;
      durable?: { log: OutboxLog; writes?: LoggedWrite[]; nextN?: number };
      onStored?: OutboxOptions['onStored'];
      onLogged?: OutboxOptions['onLogged'];
      maxBatch?: number;
    } = {},
  ) {
    const events: string[] = [];
    const log = silentLogger();
    const spies = {
      info: sinon.spy(log, 'info'),
      warn: sinon.spy(log, 'warn'),
      error: sinon.spy(log, 'error'),
    };
    const box = new Outbox({
      origin: ORIGIN,
      subject: SUBJECT,
      stream: () => ((o.connected?.() ?? true) ? stream.port : undefined),
      ...(o.durable
        ? { durable: { log: o.durable.log, writes: o.durable.writes ?? [], nextN: o.durable.nextN ?? 1 } }
        : {}),
      onLogged:
        o.onLogged ??
        ((n, update) => {
          events.push(`logged ${n}`);
          return Promise.resolve(record(update));
        }),
      onStored:
        o.onStored ??
        ((writes, seq) => {
          for (const w of writes) events.push(`stored ${w.n}@${seq}${w.provisional ? ' (provisional)' : ''}`);
          return Promise.resolve(writes.map((w) => record(w.update)));
        }),
      maxBatch: o.maxBatch ?? 3,
      ackTimeoutMs: 1000,
      retryMs: 250,
      writeTimeoutMs: 5000,
      log,
    });
    return { box, events, ...spies };
  }

  it('X3: nothing is published before recover(); recover() looks the subject up once, however often called', async () => {
    const stream = fakeStream();
    const { box } = make(stream);
    const answer = outcome(box.submit(up(1)));
    await timers.tickAsync(1000);
    expect(stream.publish.callCount).to.equal(0);
    expect(box.size).to.equal(1);
    await box.recover(stream.port);
    await timers.tickAsync(0);
    expect(answer.value).to.equal('stored 1@101');
    await box.recover(stream.port);
    expect(stream.last.callCount).to.equal(1);
  });

  it('X3: after recover() the counter continues past what the stream holds, and never goes back', async () => {
    const ahead = fakeStream();
    ahead.put(ORIGIN, 1, 7); // this origin's writes 1..7 are in the stream, the log knows none of them
    const a = make(ahead, { durable: { log: fakeLog().log, nextN: 3 } });
    await a.box.recover(ahead.port);
    const first = outcome(a.box.submit(up(8)));
    await timers.tickAsync(0);
    expect(first.value).to.equal('stored 8@102');
    expect(ahead.publish.firstCall.args[2].msgID).to.equal('r1/x:8-8');

    const behind = fakeStream();
    behind.put(ORIGIN, 1, 3);
    const b = make(behind, { durable: { log: fakeLog().log, nextN: 10 } });
    await b.box.recover(behind.port);
    const second = outcome(b.box.submit(up(10)));
    await timers.tickAsync(0);
    expect(second.value).to.equal('stored 10@102');
  });

  it('X6: recover() drops the logged writes the stream already holds, says how many, and rewrites the log', async () => {
    const stream = fakeStream();
    stream.put(ORIGIN, 1, 3);
    const log = fakeLog();
    const writes = [1, 2, 3, 4].map((n) => ({ n, update: up(n) }));
    const { box, info, events } = make(stream, { durable: { log: log.log, writes, nextN: 5 } });
    expect(box.pendingLogged().map((w) => w.n)).to.deep.equal([1, 2, 3, 4]);
    const pending = await box.recover(stream.port);
    expect(pending).to.deep.equal([{ n: 4, update: up(4) }]);
    expect(
      info.calledWith({ held: 3 }, 'logged writes already in the stream dropped from the outbox'),
    ).to.equal(true);
    await timers.tickAsync(0);
    expect(events).to.deep.equal(['stored 4@102 (provisional)']);
    expect(stream.ns()).to.deep.equal([1, 2, 3, 4]);
    // Nothing logged is left: the log is rewritten empty, with the next counter.
    expect(log.rewrites.at(-1)).to.deep.equal({ ns: [], next: 5 });

    const fresh = fakeStream();
    const quiet = make(fresh, {
      durable: { log: fakeLog().log, writes: [{ n: 1, update: up(1) }], nextN: 2 },
    });
    await quiet.box.recover(fresh.port);
    expect(quiet.info.called).to.equal(false);
  });

  it('X8: size and oldestAgeMs tell the writes not yet stored and how long the oldest has waited', async () => {
    const stream = fakeStream();
    const { box } = make(stream);
    await box.recover(stream.port);
    expect(box.oldestAgeMs).to.equal(0);
    stream.state.hold = true;
    const a = outcome(box.submit(up(1)));
    await timers.tickAsync(300);
    const b = outcome(box.submit(up(2)));
    await timers.tickAsync(200);
    expect(box.size).to.equal(2);
    expect(box.oldestAgeMs).to.equal(500);
    stream.state.hold = false;
    stream.held.shift()?.();
    await timers.tickAsync(0);
    expect([a.value, b.value]).to.deep.equal(['stored 1@101', 'stored 2@102']);
    expect(box.size).to.equal(0);
    expect(box.oldestAgeMs).to.equal(0);
  });

  it('X3: each message is published with the ack timeout, its MAC and the sequence it must follow', async () => {
    const stream = fakeStream();
    const { box } = make(stream);
    await box.recover(stream.port);
    stream.state.hold = true;
    const answers = [1, 2].map((i) => outcome(box.submit(up(i))));
    await timers.tickAsync(0);
    stream.state.hold = false;
    stream.held.shift()?.();
    await timers.tickAsync(0);
    expect(answers.map((a) => a.value)).to.deep.equal(['stored 1@101', 'stored 2@102']);
    expect(stream.publish.args.map((a) => a[2])).to.deep.equal([
      { msgID: 'r1/x:1-1', timeout: 1000, expectLastSubjectSeq: 0, mac: undefined },
      { msgID: 'r1/x:2-2', timeout: 1000, expectLastSubjectSeq: 101, mac: undefined },
    ]);
    expect(stream.publish.args.every((a) => a[0] === SUBJECT)).to.equal(true);
    expect(decodeReplication(stream.stored[1]!.data)).to.deep.equal({
      origin: ORIGIN,
      n: 2,
      updates: [up(2)],
    });
  });

  it('X6: a stopped outbox refuses new writes and publishes nothing more; waiting callers are told why', async () => {
    const stream = fakeStream();
    const { box } = make(stream);
    await box.recover(stream.port);
    stream.state.hold = true;
    const sent = box.submit(up(1)).catch((e: unknown) => e);
    const queued = box.submit(up(2)).catch((e: unknown) => e);
    await timers.tickAsync(0);
    await box.stop();
    const [a, b] = await Promise.all([sent, queued]);
    expect(a).to.be.instanceOf(GradesWriteUnconfirmedError);
    expect(b).to.be.instanceOf(GradesUnavailableError);
    expect((b as Error).message).to.equal('the grades replica is stopping');
    const after = await box.submit(up(3)).catch((e: unknown) => e);
    expect((after as Error).message).to.equal('the grades replica is stopping');
    stream.state.hold = false;
    stream.held.shift()?.();
    box.kick();
    await timers.tickAsync(10_000);
    expect(stream.publish.callCount).to.equal(1);
  });

  it('X6: stop() leaves logged writes to the next start and closes the log', async () => {
    const stream = fakeStream();
    const log = fakeLog();
    let connected = false;
    const { box } = make(stream, { connected: () => connected, durable: { log: log.log } });
    await box.recover(stream.port);
    const answer = outcome(box.submit(up(1)));
    await timers.tickAsync(0);
    expect(answer.value).to.equal('logged 1');
    await box.stop();
    expect(log.spies.close.callCount).to.equal(1);
    connected = true;
    await timers.tickAsync(10_000);
    expect(stream.publish.callCount).to.equal(0);
    expect(box.pendingLogged().map((w) => w.n)).to.deep.equal([1]);
  });

  it('X6: without a log, a write never sent in writeTimeoutMs is refused and leaves the queue; a sent one is unconfirmed', async () => {
    const stream = fakeStream();
    const { box } = make(stream);
    await box.recover(stream.port);
    stream.state.hold = true;
    const sent = outcome(box.submit(up(1)));
    await timers.tickAsync(1);
    const queued = outcome(box.submit(up(2)));
    await timers.tickAsync(4998);
    expect([sent.value, queued.value]).to.deep.equal([undefined, undefined]);
    await timers.tickAsync(1);
    expect(sent.value).to.equal(
      'GradesWriteUnconfirmedError: the stream did not confirm the write within 5000 ms; it may still be applied (retrying is safe)',
    );
    await timers.tickAsync(1);
    expect(queued.value).to.equal(
      'GradesUnavailableError: the replication stream did not take the write in time',
    );
    expect(box.size).to.equal(1);
    stream.state.hold = false;
    stream.held.shift()?.();
    await timers.tickAsync(0);
    expect(stream.ns()).to.deep.equal([1]);
    expect(box.size).to.equal(0);
  });

  it('X6: without a log, a failed publish refuses the writes queued behind it at once; the sent one waits for the stream', async () => {
    const stream = fakeStream();
    const { box, warn } = make(stream);
    await box.recover(stream.port);
    stream.state.down = true;
    const sent = outcome(box.submit(up(1)));
    const queued = outcome(box.submit(up(2)));
    await timers.tickAsync(0);
    expect(queued.value).to.equal(
      'GradesUnavailableError: the replication stream is unreachable; the write was not taken',
    );
    expect(sent.value).to.equal(undefined);
    expect(box.failing).to.equal(true);
    expect(box.size).to.equal(1);
    expect(
      warn.calledOnceWith(
        { err: 'Error: no responders', waiting: 2 },
        'grades publish failed; writes are held in order and retried',
      ),
    ).to.equal(true);
    // Retries while down warn no more.
    await timers.tickAsync(1000);
    expect(warn.callCount).to.equal(1);
    stream.state.down = false;
    await timers.tickAsync(250);
    expect(sent.value).to.equal('stored 1@101');
    expect(box.failing).to.equal(false);
  });

  it('X3: a write submitted as the one before it is answered is published at once, not a retry interval later', async () => {
    const stream = fakeStream();
    const { box } = make(stream);
    await box.recover(stream.port);
    // The second write comes from the first one's answer, in the same chain of promises, while the round that
    // published the first is still finishing.
    const second = box.submit(up(1)).then(() => box.submit(up(2)));
    const answer = outcome(second);
    await timers.tickAsync(0);
    expect(answer.value).to.equal('stored 2@102');
    expect(stream.ns()).to.deep.equal([1, 2]);
  });

  it('X3: while failing, retries come once per retryMs, not sooner', async () => {
    const stream = fakeStream();
    const log = fakeLog();
    const { box } = make(stream, { durable: { log: log.log } });
    await box.recover(stream.port);
    stream.state.down = true;
    const answer = outcome(box.submit(up(1)));
    await timers.tickAsync(0);
    expect(answer.value).to.equal('logged 1');
    const tries = () => stream.publish.callCount + stream.last.callCount;
    const before = tries();
    await timers.tickAsync(249);
    expect(tries()).to.equal(before);
    await timers.tickAsync(1);
    expect(tries()).to.equal(before + 1);
    await timers.tickAsync(250 * 4);
    expect(tries()).to.equal(before + 5);
    stream.state.down = false;
    await timers.tickAsync(250);
    expect(stream.ns()).to.deep.equal([1]);
    expect(box.failing).to.equal(false);
  });

  it('X8: each caller gets its own record; a failure to apply a message reaches the callers of its writes only', async () => {
    const stream = fakeStream();
    stream.state.hold = true;
    const { box } = make(stream, {
      onStored: (writes) =>
        writes.some((w) => w.n === 4)
          ? Promise.reject(new Error('apply failed'))
          : Promise.resolve(writes.map((w) => ({ ...record(w.update), spp: 100 + w.n }))),
    });
    await box.recover(stream.port);
    const answers = [1, 2, 3, 4, 5].map((i) => box.submit(up(i)).catch((e: unknown) => e));
    await timers.tickAsync(0);
    stream.state.hold = false;
    stream.held.shift()?.();
    // Write 1 alone, then 2-4 in one message, then 5.
    const [first, second, third, fourth, fifth] = await Promise.all(answers);
    expect(first).to.deep.include({ status: 'stored', n: 1, seq: 101 });
    expect((first as { record: UserGrade }).record.spp).to.equal(101);
    for (const failed of [second, third, fourth]) expect((failed as Error).message).to.equal('apply failed');
    expect(fifth).to.deep.equal({ status: 'stored', n: 5, seq: 103, record: { ...record(up(5)), spp: 105 } });
  });

  it('X6: a write the log could not keep is refused, with the log error logged and as cause, and never published', async () => {
    const stream = fakeStream();
    const log = fakeLog();
    let connected = false;
    const { box, error } = make(stream, { connected: () => connected, durable: { log: log.log } });
    await box.recover(stream.port);
    const disk = new Error('ENOSPC');
    log.state.failAppend = disk;
    const err = (await box.submit(up(1)).catch((e: unknown) => e)) as GradesUnavailableError;
    expect(err).to.be.instanceOf(GradesUnavailableError);
    expect(err.message).to.equal('could not keep the write in the outbox log');
    expect(err.cause).to.equal(disk);
    expect(error.calledOnceWith({ err: 'Error: ENOSPC' }, 'could not write the outbox log')).to.equal(true);
    expect(box.size).to.equal(0);
    expect(box.pendingLogged()).to.deep.equal([]);
    log.state.failAppend = undefined;
    connected = true;
    const next = outcome(box.submit(up(2)));
    await timers.tickAsync(1000);
    expect(stream.ns()).to.deep.equal([2]);
    expect(next.value).to.equal('stored 2@101');
  });

  it('X6: a write is answered as logged only once the log has it, and applied provisionally first', async () => {
    const stream = fakeStream();
    const log = fakeLog();
    const order: string[] = [];
    const { box } = make(stream, {
      connected: () => false,
      durable: { log: log.log },
      onLogged: (n, update) => {
        order.push(`applied ${n}`);
        return Promise.resolve({ ...record(update), spp: 7 });
      },
    });
    await box.recover(stream.port);
    const receipt = await box.submit(up(1));
    expect(log.appended).to.deep.equal([[1]]);
    expect(order).to.deep.equal(['applied 1']);
    expect(receipt).to.deep.equal({ status: 'logged', n: 1, record: { ...record(up(1)), spp: 7 } });
  });

  it('X6: the log is rewritten once no logged write is left; a failed rewrite is logged', async () => {
    const stream = fakeStream();
    const log = fakeLog();
    let connected = false;
    const { box, error } = make(stream, { connected: () => connected, durable: { log: log.log } });
    await box.recover(stream.port);
    await Promise.all([box.submit(up(1)), box.submit(up(2))]);
    expect(log.rewrites).to.deep.equal([]);
    log.state.failRewrite = new Error('EIO');
    connected = true;
    await timers.tickAsync(250);
    expect(stream.ns()).to.deep.equal([1, 2]);
    expect(log.spies.rewrite.callCount).to.equal(1);
    expect(log.spies.rewrite.firstCall.args).to.deep.equal([[], 3]);
    expect(error.calledOnceWith({ err: 'Error: EIO' }, 'could not rewrite the outbox log')).to.equal(true);
    // A write stored directly leaves nothing in the log to rewrite.
    const direct = outcome(box.submit(up(3)));
    await timers.tickAsync(0);
    expect(direct.value).to.equal('stored 3@102');
    expect(log.spies.rewrite.callCount).to.equal(1);
  });

  it('X3: after a restart, a new write behind replayed logged writes is logged too, and stored after them', async () => {
    const stream = fakeStream();
    stream.state.hold = true;
    const log = fakeLog();
    const writes = [1, 2].map((n) => ({ n, update: up(n) }));
    const { box, events } = make(stream, { durable: { log: log.log, writes, nextN: 3 } });
    await box.recover(stream.port);
    const answer = outcome(box.submit(up(3)));
    await timers.tickAsync(0);
    expect(answer.value).to.equal('logged 3');
    expect(log.appended).to.deep.equal([[3]]);
    stream.state.hold = false;
    stream.held.shift()?.();
    await timers.tickAsync(0);
    expect(stream.ns()).to.deep.equal([1, 2, 3]);
    expect(events).to.deep.equal([
      'logged 3',
      'stored 1@101 (provisional)',
      'stored 2@101 (provisional)',
      'stored 3@102 (provisional)',
    ]);
  });

  it('X6: flush() waits until every write is stored, or its time is up, and says which', async () => {
    const stream = fakeStream();
    const { box } = make(stream, { durable: { log: fakeLog().log } });
    await box.recover(stream.port);
    expect(await box.flush(0)).to.equal(true);
    stream.state.down = true;
    await box.submit(up(1));
    const gaveUp = outcome(box.flush(1000));
    await timers.tickAsync(999);
    expect(gaveUp.value).to.equal(undefined);
    await timers.tickAsync(1);
    expect(gaveUp.value).to.equal('false');
    const done = outcome(box.flush(1000));
    stream.state.down = false;
    await timers.tickAsync(260);
    expect(done.value).to.equal('true');
    expect(stream.ns()).to.deep.equal([1]);
  });

  it('X6: without a log, a write while NATS is unreachable is refused with the reason, and nothing is queued', async () => {
    const stream = fakeStream();
    const { box } = make(stream, { connected: () => false });
    await box.recover(stream.port);
    const err = (await box.submit(up(1)).catch((e: unknown) => e)) as Error;
    expect(err).to.be.instanceOf(GradesUnavailableError);
    expect(err.message).to.equal('the replication stream is unreachable; the write was not taken');
    expect(box.size).to.equal(0);
  });

  it('X3: a write taken while failing adds no retry of its own: still one try per retryMs', async () => {
    const stream = fakeStream();
    const { box } = make(stream, { durable: { log: fakeLog().log } });
    await box.recover(stream.port);
    stream.state.down = true;
    const tries = () => stream.publish.callCount + stream.last.callCount;
    const first = outcome(box.submit(up(1)));
    await timers.tickAsync(100);
    const second = outcome(box.submit(up(2)));
    await timers.tickAsync(0);
    expect([first.value, second.value]).to.deep.equal(['logged 1', 'logged 2']);
    const before = tries();
    await timers.tickAsync(150); // the retry due at 250
    expect(tries()).to.equal(before + 1);
    await timers.tickAsync(249); // nothing more until 500
    expect(tries()).to.equal(before + 1);
    await timers.tickAsync(1);
    expect(tries()).to.equal(before + 2);
  });

  it('X6: stop() does not refuse a write whose log append is under way: it is answered as logged', async () => {
    const stream = fakeStream();
    const log = fakeLog();
    log.state.hold = true;
    const { box, events } = make(stream, { connected: () => false, durable: { log: log.log } });
    await box.recover(stream.port);
    const answer = outcome(box.submit(up(1)));
    await timers.tickAsync(0);
    const stopping = box.stop();
    log.held.shift()?.();
    await stopping;
    await timers.tickAsync(0);
    expect(answer.value).to.equal('logged 1');
    expect(events).to.deep.equal(['logged 1']);
    expect(box.pendingLogged().map((w) => w.n)).to.deep.equal([1]);
  });

  it('X8: a write refused at stop() is never applied afterwards, even if its publish then fails and it is logged', async () => {
    const stream = fakeStream();
    stream.state.hold = true;
    const log = fakeLog();
    const { box, events } = make(stream, { durable: { log: log.log } });
    await box.recover(stream.port);
    const answer = outcome(box.submit(up(1)));
    await timers.tickAsync(0);
    await box.stop();
    await timers.tickAsync(0);
    expect(answer.value).to.equal(
      'GradesWriteUnconfirmedError: the replica stopped before the stream confirmed the write; it may still be applied (retrying is safe)',
    );
    stream.held.shift()?.(false);
    await timers.tickAsync(1000);
    expect(events).to.deep.equal([]);
  });

  it('X6: NATS disconnected past a retry: the failure is logged once, and the write goes out at the first retry after', async () => {
    const stream = fakeStream();
    let connected = false;
    const { box, warn } = make(stream, { connected: () => connected, durable: { log: fakeLog().log } });
    await box.recover(stream.port);
    const answer = outcome(box.submit(up(1)));
    await timers.tickAsync(600); // retries at 250 and 500 find no connection
    expect(answer.value).to.equal('logged 1');
    expect(box.failing).to.equal(true);
    expect(warn.callCount).to.equal(1);
    expect(warn.firstCall.args).to.deep.equal([
      { err: 'GradesUnavailableError: not connected to NATS', waiting: 1 },
      'grades publish failed; writes are held in order and retried',
    ]);
    connected = true;
    await timers.tickAsync(150);
    expect(stream.ns()).to.deep.equal([1]);
    expect(box.failing).to.equal(false);
  });

  it('X6: once the stream answers the look-up after an outage, new writes are taken again while the retry is in flight', async () => {
    const stream = fakeStream();
    const { box } = make(stream);
    await box.recover(stream.port);
    stream.state.down = true;
    const first = outcome(box.submit(up(1)));
    await timers.tickAsync(0);
    expect(box.failing).to.equal(true);
    stream.state.down = false;
    stream.state.hold = true;
    await timers.tickAsync(250); // look-up answered, write 1 published again, its ack held
    expect(stream.publish.callCount).to.equal(2);
    const second = outcome(box.submit(up(2)));
    stream.state.hold = false;
    stream.held.shift()?.();
    await timers.tickAsync(0);
    expect([first.value, second.value]).to.deep.equal(['stored 1@101', 'stored 2@102']);
  });

  it('X3: a lost acknowledgement is found by the look-up: the writes it covered are stored once, the rest published after them', async () => {
    const stream = fakeStream();
    const onStored = sinon.spy((writes: readonly { n: number; update: GradeUpdate }[], seq: number) => {
      void seq;
      return Promise.resolve(writes.map((w) => record(w.update)));
    });
    const { box } = make(stream, { durable: { log: fakeLog().log }, onStored });
    await box.recover(stream.port);
    stream.state.loseAck = 1;
    const answers = [1, 2, 3].map((i) => outcome(box.submit(up(i))));
    await timers.tickAsync(0); // write 1 stored, its ack lost; 2 and 3 logged behind it
    expect(answers.map((a) => a.value)).to.deep.equal(['logged 1', 'logged 2', 'logged 3']);
    await timers.tickAsync(250);
    expect(stream.ns()).to.deep.equal([1, 2, 3]);
    expect(onStored.args.map(([writes, seq]) => `${writes.map((w) => w.n).join(',')}@${seq}`)).to.deep.equal([
      '1@101',
      '2,3@102',
    ]);
    await timers.tickAsync(1000);
    expect(onStored.callCount).to.equal(2);
    expect(box.size).to.equal(0);
    expect(box.failing).to.equal(false);
  });

  it('X3: a write the look-up found stored is stored once, even when publishing the ones behind it fails again', async () => {
    const stream = fakeStream();
    const onStored = sinon.spy((writes: readonly { n: number; update: GradeUpdate }[], seq: number) => {
      void seq;
      return Promise.resolve(writes.map((w) => record(w.update)));
    });
    const log = fakeLog();
    const { box } = make(stream, { durable: { log: log.log }, onStored });
    await box.recover(stream.port);
    stream.state.loseAck = 1;
    [1, 2, 3].map((i) => outcome(box.submit(up(i))));
    await timers.tickAsync(0);
    stream.state.refusePublish = true; // look-ups answer, publishes fail
    await timers.tickAsync(1000);
    stream.state.refusePublish = false;
    await timers.tickAsync(250);
    expect(stream.ns()).to.deep.equal([1, 2, 3]);
    expect(onStored.args.map(([writes, seq]) => `${writes.map((w) => w.n).join(',')}@${seq}`)).to.deep.equal([
      '1@101',
      '2,3@102',
    ]);
    // Write 1 went to the log once.
    expect(log.appended.flat().filter((n) => n === 1)).to.deep.equal([1]);
  });

  it('X7: a foreign origin is logged cut to 100 characters', async () => {
    const stream = fakeStream();
    const long = 'o'.repeat(150);
    stream.put(long, 1, 1);
    const { box, error } = make(stream);
    await box.recover(stream.port);
    expect((error.firstCall.args[0] as { why: string }).why).to.equal(`written by "${'o'.repeat(100)}"`);
  });

  it('X8: a write the stream stores while its log append is under way is answered as stored and never applied as logged', async () => {
    const stream = fakeStream();
    stream.state.hold = true;
    const log = fakeLog();
    log.state.hold = true;
    const { box, events } = make(stream, {
      durable: { log: log.log, writes: [{ n: 1, update: up(1) }], nextN: 2 },
    });
    await box.recover(stream.port); // write 1 replayed and in flight: a new write is logged behind it
    const answer = outcome(box.submit(up(2)));
    await timers.tickAsync(0);
    expect(log.spies.append.callCount).to.equal(1);
    stream.state.hold = false;
    stream.held.shift()?.();
    await timers.tickAsync(0);
    expect(events).to.deep.equal(['stored 1@101 (provisional)', 'stored 2@102']);
    expect(answer.value).to.equal('stored 2@102');
    log.held.shift()?.();
    await timers.tickAsync(0);
    expect(events).to.deep.equal(['stored 1@101 (provisional)', 'stored 2@102']);
    expect(box.pendingLogged()).to.deep.equal([]);
  });

  it('X8: with a log, a caller waits for its write however long the publish takes: stored or logged, never unconfirmed', async () => {
    const stream = fakeStream();
    stream.state.hold = true;
    const { box } = make(stream, { durable: { log: fakeLog().log } });
    await box.recover(stream.port);
    const answer = outcome(box.submit(up(1)));
    await timers.tickAsync(60_000);
    expect(answer.value).to.equal(undefined);
    stream.held.shift()?.();
    await timers.tickAsync(0);
    expect(answer.value).to.equal('stored 1@101');
  });

  it('X6: an outage that leaves nothing to publish ends when the stream answers a look-up: writes are taken again', async () => {
    const stream = fakeStream();
    let connected = true;
    const { box } = make(stream, { connected: () => connected });
    const early = outcome(box.submit(up(1))); // taken before recover(): it waits for it
    connected = false;
    await box.recover(stream.port); // the publish finds no connection: the unsent write is refused
    await timers.tickAsync(0);
    expect(early.value).to.equal(
      'GradesUnavailableError: the replication stream is unreachable; the write was not taken',
    );
    expect(box.size).to.equal(0);
    expect(box.failing).to.equal(true);
    connected = true;
    await timers.tickAsync(250); // the retry's look-up answers
    expect(box.failing).to.equal(false);
    const later = outcome(box.submit(up(2)));
    await timers.tickAsync(0);
    expect(later.value).to.equal('stored 2@101');
  });

  it('X6: a failure to apply a logged write reaches its caller', async () => {
    const stream = fakeStream();
    const { box } = make(stream, {
      connected: () => false,
      durable: { log: fakeLog().log },
      onLogged: () => Promise.reject(new Error('apply failed')),
    });
    await box.recover(stream.port);
    const err = (await box.submit(up(1)).catch((e: unknown) => e)) as Error;
    expect(err.message).to.equal('apply failed');
  });

  it('X3: a write whose log append fails leaves only itself; a sent one stays and lands in order', async () => {
    const stream = fakeStream();
    const log = fakeLog();
    let connected = false;
    const { box } = make(stream, { connected: () => connected, durable: { log: log.log } });
    await box.recover(stream.port);
    const kept = outcome(box.submit(up(1)));
    await timers.tickAsync(0);
    log.state.failAppend = new Error('ENOSPC');
    const lost = outcome(box.submit(up(2)));
    await timers.tickAsync(0);
    expect(kept.value).to.equal('logged 1');
    expect(lost.value).to.equal('GradesUnavailableError: could not keep the write in the outbox log');
    expect(box.pendingLogged().map((w) => w.n)).to.deep.equal([1]);
    log.state.failAppend = undefined;
    connected = true;
    await timers.tickAsync(250);
    expect(stream.ns()).to.deep.equal([1]);

    // Sent, then its publish failed, then the log refused it: the stream may hold it, so it stays in order.
    stream.state.hold = true;
    const sent = outcome(box.submit(up(3)));
    await timers.tickAsync(0);
    log.state.failAppend = new Error('ENOSPC');
    stream.held.shift()?.(false); // stored, acknowledgement lost
    await timers.tickAsync(0);
    // Not "nothing changed": its outcome is unknown, and it does land below.
    expect(sent.value).to.equal(
      'GradesWriteUnconfirmedError: the write was sent to the stream but could not be kept in the outbox log; it may still be applied (retrying is safe)',
    );
    expect(box.size).to.equal(1);
    stream.state.hold = false;
    log.state.failAppend = undefined;
    await timers.tickAsync(250);
    expect(stream.ns()).to.deep.equal([1, 3]);
    expect(box.size).to.equal(0);
  });

  it('X6: the log is rewritten when no logged write is left, or once 1024 stored lines wait, not before', async () => {
    const stream = fakeStream();
    const log = fakeLog();
    let connected = false;
    const { box } = make(stream, { connected: () => connected, durable: { log: log.log }, maxBatch: 4 });
    await box.recover(stream.port);
    await Promise.all(Array.from({ length: 1030 }, (_, i) => box.submit(up(i + 1))));
    stream.state.hold = true;
    connected = true;
    await timers.tickAsync(250);
    const release = async (messages: number) => {
      for (let i = 0; i < messages; i++) {
        stream.held.shift()?.();
        await timers.tickAsync(0);
      }
    };
    await release(255); // 1020 stored
    expect(log.rewrites).to.deep.equal([]);
    await release(1); // 1024 stored
    expect(log.rewrites.map((r) => [r.ns.length, r.ns[0], r.next])).to.deep.equal([[6, 1025, 1031]]);
    await release(1); // 1028: 4 stored lines wait, 2 logged writes left
    expect(log.rewrites).to.have.length(1);
    await release(1);
    expect(log.rewrites.map((r) => r.ns.length)).to.deep.equal([6, 0]);
    expect(stream.ns()).to.have.length(1030);
  });

  it('X7: a foreign last message is logged with its sequence and why, and taken as holding none of our writes', async () => {
    const stream = fakeStream();
    stream.put('r2/y', 1, 4);
    stream.stored.push({ seq: 120, data: Buffer.from('not json') });
    const { box, error } = make(stream);
    await box.recover(stream.port);
    expect(error.callCount).to.equal(1);
    const [fields, message] = error.firstCall.args as unknown as [Record<string, unknown>, string];
    expect(message).to.equal(
      "the last message on this replica's subject is not its own; publishing after it",
    );
    expect(fields).to.include({ subject: SUBJECT, seq: 120 });
    expect(fields.why).to.be.a('string').and.match(/JSON/);
    stream.stored.pop();
    const again = make(stream);
    await again.box.recover(stream.port);
    expect(again.error.firstCall.args[0]).to.deep.equal({
      subject: SUBJECT,
      seq: 101,
      why: 'written by "r2/y"',
    });
    const answer = await again.box.submit(up(1));
    expect(answer).to.include({ status: 'stored', n: 1, seq: 102 });
  });
});
