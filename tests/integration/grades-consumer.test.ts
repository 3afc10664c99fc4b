import { expect } from 'chai';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { ReplicationMessage } from '../../src/grades/model.js';
import { consumeStream, ensureStream, isStreamNotFound } from '../../src/grades/replication.js';
import { encodeReplication } from '../../src/grades/wire.js';
import { silentLogger } from '../../src/log.js';
import { deleteStreams, TEST_NATS_URL, uniqueName } from '../support/nats.js';
import { TcpFaultProxy, type ProxyMode } from '../support/tcp-proxy.js';
import { eventually } from '../support/time.js';

const message = (n: number): ReplicationMessage => ({
  origin: 'writer/1',
  n,
  updates: [{ user_id: `u${n}`, spp: n }],
});

describe('grades consumer against the real NATS', () => {
  let proxy: TcpFaultProxy;
  let direct: NatsConnection;
  const streams: string[] = [];
  const closers: (() => Promise<unknown>)[] = [];

  before(async () => {
    const target = new URL(TEST_NATS_URL);
    proxy = new TcpFaultProxy({ host: target.hostname, port: Number(target.port || 4222) });
    await proxy.start();
    direct = await connect({ servers: TEST_NATS_URL });
  });
  after(async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    await direct.close();
    await proxy.stop();
    await deleteStreams(...streams);
  });
  afterEach(() => proxy.setMode('pass'));

  /** A stream of our shape (optionally with a message limit) and a publisher of messages on it. */
  async function stream(maxMsgs?: number) {
    const name = uniqueName('GRADES_CONSUMER');
    streams.push(name);
    const subject = `${name}.set`;
    if (maxMsgs) {
      const jsm = await jetstreamManager(direct);
      await jsm.streams.add({ name, subjects: [`${subject}.>`], max_msgs: maxMsgs });
    }
    await ensureStream(
      direct,
      { name, subject, maxAgeS: 3600, maxBytes: -1, duplicateWindowS: 120 },
      silentLogger(),
    );
    const js = jetstream(direct);
    const publish = async (n: number) =>
      (await js.publish(`${subject}.writer`, encodeReplication(message(n)))).seq;
    return { name, subject, publish };
  }

  /** Consumes `name` through the fault proxy, recording what it is handed. */
  async function consume(name: string) {
    const nc = await connect({
      servers: `127.0.0.1:${proxy.port}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 200,
    });
    closers.push(() => nc.close());
    const seen = {
      applied: [] as number[],
      skipped: [] as number[],
      gaps: [] as [number, number][],
      caughtUp: 0,
    };
    const stop = await consumeStream({
      nc,
      stream: name,
      startSeq: 1,
      apply: (seq, msg) => {
        expect(msg.n).to.be.a('number');
        seen.applied.push(seq);
        return Promise.resolve();
      },
      skip: (seq) => {
        seen.skipped.push(seq);
        return Promise.resolve();
      },
      onCaughtUp: () => seen.caughtUp++,
      onGap: (expected, got) => seen.gaps.push([expected, got]),
      log: silentLogger(),
    });
    closers.push(stop);
    return seen;
  }

  const titles: Record<string, string> = {
    refuse:
      'after its connection is refused and comes back, the consumer resumes where it was (the client recreates it)',
    stall:
      'after its link stalls and is reset, the consumer resumes where it was (the heartbeat check recreates it)',
  };
  for (const mode of ['refuse', 'stall'] as ProxyMode[]) {
    it(titles[mode] as string, async () => {
      const s = await stream();
      const seen = await consume(s.name);
      for (let n = 1; n <= 5; n++) await s.publish(n);
      await eventually(() => seen.applied.length === 5, 5000, 'first five applied');
      expect(seen.caughtUp).to.equal(1);
      await proxy.setMode(mode);
      for (let n = 6; n <= 10; n++) await s.publish(n);
      await new Promise((r) => setTimeout(r, 1500));
      await proxy.setMode('pass');
      await eventually(() => seen.applied.length === 10, 15_000, 'all ten applied after the outage');
      expect(seen.applied).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect(seen.gaps).to.deep.equal([]);
    });
  }

  it('the client alone does not recover messages lost on a stalled link (why consumeStream watches heartbeats)', async () => {
    const s = await stream();
    const nc = await connect({
      servers: `127.0.0.1:${proxy.port}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 200,
    });
    closers.push(() => nc.close());
    const consumer = await jetstream(nc).consumers.get(s.name, {});
    const messages = await consumer.consume({ max_messages: 1024, expires: 5000, idle_heartbeat: 1000 });
    closers.push(() => messages.close());
    const seen: number[] = [];
    void (async () => {
      for await (const m of messages) seen.push(m.seq);
    })();
    for (let n = 1; n <= 3; n++) await s.publish(n);
    await eventually(() => seen.length === 3, 5000, 'first three read');
    await proxy.setMode('stall');
    for (let n = 4; n <= 6; n++) await s.publish(n);
    await new Promise((r) => setTimeout(r, 1500));
    await proxy.setMode('pass');
    // Five heartbeat intervals later the ordered consumer still has not noticed.
    await new Promise((r) => setTimeout(r, 5000));
    expect(seen).to.deep.equal([1, 2, 3]);
  });

  it('a gap (messages discarded by max_msgs while the consumer was cut off) is reported with both positions', async () => {
    const s = await stream(5);
    const seen = await consume(s.name);
    for (let n = 1; n <= 3; n++) await s.publish(n);
    await eventually(() => seen.applied.length === 3, 5000, 'first three applied');
    await proxy.setMode('refuse');
    for (let n = 4; n <= 13; n++) await s.publish(n); // the stream keeps 9..13 only
    await proxy.setMode('pass');
    await eventually(() => seen.gaps.length > 0, 15_000, 'the gap reported');
    expect(seen.gaps).to.deep.equal([[4, 9]]);
    // Nothing after the gap is applied over the missing messages.
    await new Promise((r) => setTimeout(r, 300));
    expect(seen.applied).to.deep.equal([1, 2, 3]);
  });

  it('a malformed message is logged and skipped, and the messages after it are applied', async () => {
    const s = await stream();
    const seen = await consume(s.name);
    await s.publish(1);
    await jetstream(direct).publish(`${s.subject}.writer`, Buffer.from('{"origin":"x","n":"nope"}'));
    await s.publish(3);
    await eventually(() => seen.applied.length === 2, 5000, 'the good messages applied');
    expect(seen.applied).to.deep.equal([1, 3]);
    expect(seen.skipped).to.deep.equal([2]);
    expect(seen.gaps).to.deep.equal([]);
  });

  it('a stream of the earlier format (the base subject only) gains the per-origin subjects; another shape is refused', async () => {
    const jsm = await jetstreamManager(direct);
    const old = uniqueName('GRADES_OLD');
    const other = uniqueName('GRADES_OTHER');
    streams.push(old, other);
    await jsm.streams.add({ name: old, subjects: [`${old}.set`] });
    await jsm.streams.add({ name: other, subjects: [`${other}.elsewhere`] });
    const settings = (name: string) => ({
      name,
      subject: `${name}.set`,
      maxAgeS: 3600,
      maxBytes: -1,
      duplicateWindowS: 120,
    });
    const before = (await jsm.streams.info(old)).created;
    const upgraded = await ensureStream(direct, settings(old), silentLogger());
    expect(upgraded.created).to.equal(before);
    expect((await jsm.streams.info(old)).config.subjects).to.deep.equal([`${old}.set`, `${old}.set.>`]);
    const err = await ensureStream(direct, settings(other), silentLogger()).catch((e: unknown) => e);
    expect(String(err)).to.match(/exists without subject/);
  });

  it('"stream not found" is recognised by its JetStream error code', async () => {
    const jsm = await jetstreamManager(direct);
    const err = await jsm.streams.info(uniqueName('NO_SUCH_STREAM')).catch((e: unknown) => e);
    expect(isStreamNotFound(err)).to.equal(true);
    expect(isStreamNotFound(new Error('stream not found'))).to.equal(false);
  });
});
