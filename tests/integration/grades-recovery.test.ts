import { expect } from 'chai';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { gunzipSync, gzipSync } from 'node:zlib';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { GradesReplica } from '../../src/grades/grades-replica.js';
import { FIELDS, type GradeUpdate } from '../../src/grades/model.js';
import { Outbox, type StreamPort } from '../../src/grades/outbox.js';
import { BasicAuth, getRoutes } from '../../src/grades/routes.js';
import { jetStreamPort } from '../../src/grades/replication.js';
import { decodeReplication, originSubject } from '../../src/grades/wire.js';
import { HttpServer } from '../../src/http/server.js';
import { createLogger, silentLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';
import { NatsClient } from '../../src/nats/connection.js';
import { deleteStreams, TEST_NATS_URL, uniqueName } from '../support/nats.js';
import { TcpFaultProxy } from '../support/tcp-proxy.js';
import { eventually } from '../support/time.js';

const USERS = Array.from({ length: 20 }, (_, i) => `user-${i}`);
const AUTH = BasicAuth.header('grades', 'recovery-password');

describe('grades recovery through the real NATS: ordered retries, gaps, rejoin, restore', () => {
  let proxy: TcpFaultProxy;
  let direct: NatsConnection;
  let dir: string;
  const streams: string[] = [];
  const closers: (() => Promise<unknown>)[] = [];

  before(async () => {
    const target = new URL(TEST_NATS_URL);
    proxy = new TcpFaultProxy({ host: target.hostname, port: Number(target.port || 4222) });
    await proxy.start();
    direct = await connect({ servers: TEST_NATS_URL });
    dir = await mkdtemp(join(tmpdir(), 'grades-recovery-'));
  });
  after(async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    await direct.close();
    await proxy.stop();
    await deleteStreams(...streams);
    await rm(dir, { recursive: true, force: true });
  });

  /** A fresh stream of our shape, created here so a test can give it a message limit. */
  async function stream(maxMsgs = -1) {
    const name = uniqueName('GRADES_RECOVERY');
    streams.push(name);
    const subject = `${name}.set`;
    await (
      await jetstreamManager(direct)
    ).streams.add({ name, subjects: [`${subject}.>`], max_msgs: maxMsgs });
    return { name, subject, maxAgeS: 3600, maxBytes: -1, duplicateWindowS: 120 };
  }

  async function client(id: string, url = TEST_NATS_URL): Promise<NatsClient> {
    const nats = new NatsClient({ url, name: id, startWaitMs: 2000, retryMs: 200, log: silentLogger() });
    await nats.start();
    closers.push(() => nats.stop());
    return nats;
  }

  async function replica(
    id: string,
    settings: Awaited<ReturnType<typeof stream>>,
    o: { url?: string; peers?: string[]; restoreFrom?: string; onFatal?: (err: unknown) => void } = {},
  ): Promise<GradesReplica> {
    const r = new GradesReplica({
      replicaId: id,
      nats: await client(id, o.url),
      stream: settings,
      peers: o.peers ?? [],
      peerAuthorization: AUTH,
      publishWindow: 64,
      joinAttempts: 2,
      identityCheckMs: 300,
      ...(o.restoreFrom ? { restoreFrom: o.restoreFrom } : {}),
      log: process.env.DEBUG_LOG ? createLogger('debug', { r: id }) : silentLogger(),
      onFatal:
        o.onFatal ??
        ((err) => {
          throw err;
        }),
    });
    await r.start();
    closers.push(() => r.stop());
    return r;
  }

  /** Serves a replica's `/get` and `/backup` so others can join from it. */
  async function serve(r: GradesReplica): Promise<string> {
    const http = new HttpServer({
      name: 'grades-get',
      host: '127.0.0.1',
      port: 0,
      maxBodyBytes: 1024,
      log: silentLogger(),
      metrics: createMetrics(),
      routes: getRoutes({ grades: r, auth: new BasicAuth('grades', 'recovery-password'), replicaId: 'peer' }),
    });
    await http.start();
    closers.push(() => http.stop());
    return `http://127.0.0.1:${http.port}`;
  }

  function randomUpdate(): GradeUpdate {
    const update: Record<string, unknown> = { user_id: USERS[Math.floor(Math.random() * USERS.length)] };
    for (const field of FIELDS) if (Math.random() < 0.5) update[field] = Math.floor(Math.random() * 1000);
    return update as GradeUpdate;
  }

  const snapshot = (r: GradesReplica) => JSON.stringify(USERS.map((u) => r.get(u) ?? null));

  it('a lost acknowledgement and a failed publish are retried in order, each write stored once, on the real JetStream', async () => {
    const s = await stream();
    const nats = await client('ordered');
    const real = jetStreamPort(nats, s.name);
    let calls = 0;
    // The first publish is stored but its acknowledgement is lost; the third fails before it is sent.
    const faulty: StreamPort = {
      publish: async (subject, data, o) => {
        calls++;
        if (calls === 3) throw new Error('no responders');
        const ack = await real()!.publish(subject, data, o);
        if (calls === 1) throw new Error('timeout');
        return ack;
      },
      last: (subject) => real()!.last(subject),
    };
    const subject = originSubject(s.subject, 'writer/1');
    const box = new Outbox({
      origin: 'writer/1',
      subject,
      stream: () => faulty,
      onLogged: () => Promise.reject(new Error('no log')),
      onStored: (writes) =>
        Promise.resolve(
          writes.map((w) => ({
            user_id: w.update.user_id,
            postpaid_limit: 0,
            spp: 0,
            shipping_fee: 0,
            return_fee: 0,
          })),
        ),
      maxBatch: 4,
      ackTimeoutMs: 2000,
      retryMs: 50,
      writeTimeoutMs: 10_000,
      log: silentLogger(),
    });
    closers.push(() => box.stop());
    await box.recover(real()!);
    const storedNs: number[] = [];
    const refused: string[] = [];
    for (let wave = 0; wave < 6; wave++) {
      const answers = Array.from({ length: 5 }, (_, i) =>
        box.submit({ user_id: `w${wave}-${i}`, spp: wave * 5 + i }).then(
          (r) => storedNs.push(r.n),
          (e: Error) => refused.push(e.name),
        ),
      );
      await Promise.all(answers);
      await new Promise((r) => setTimeout(r, 100));
    }
    // What the stream holds on this origin's subject, in stream order.
    const jsm = await jetstreamManager(direct);
    const ns: number[] = [];
    const last = (await jsm.streams.info(s.name)).state.last_seq;
    for (let seq = 1; seq <= last; seq++) {
      const m = await jsm.streams.getMessage(s.name, { seq });
      if (m?.subject !== subject) continue;
      const msg = decodeReplication(m.data);
      msg.updates.forEach((_, j) => ns.push(msg.n + j));
    }
    expect(storedNs.length).to.be.greaterThan(15);
    // Writes refused when a publish failed were never stored (no log): "unavailable", nothing changed.
    expect(refused.every((name) => name === 'GradesUnavailableError')).to.equal(true);
    // In the order they were taken, none twice, every acknowledged one there.
    expect(ns).to.deep.equal([...new Set(ns)].sort((x, y) => x - y));
    expect(ns).to.include.members(storedNs);
    // The server itself refuses a publish that does not follow the last message of the subject.
    const stale = await real()!
      .publish(subject, Buffer.from('{}'), { msgID: 'stale', timeout: 2000, expectLastSubjectSeq: 1 })
      .catch((e: unknown) => e);
    expect(stale).to.be.instanceOf(Error);
  });

  it('a gap (messages discarded while a replica was cut off) makes it not ready, counted, and it rejoins from a peer', async () => {
    const s = await stream(10);
    const a = await replica('a', s);
    await eventually(() => a.ready, 10_000, 'a ready');
    const aUrl = await serve(a);
    const b = await replica('b', s, { url: `nats://127.0.0.1:${proxy.port}`, peers: [aUrl] });
    await eventually(() => b.ready, 10_000, 'b ready');
    for (let i = 0; i < 3; i++) await a.set(randomUpdate());
    await eventually(() => snapshot(a) === snapshot(b), 5000, 'b caught up');
    await proxy.setMode('refuse');
    for (let i = 0; i < 30; i++) await a.set(randomUpdate()); // the stream keeps the last 10 only
    await proxy.setMode('pass');
    await eventually(() => b.stats.gaps === 1, 15_000, 'the gap noticed');
    await eventually(() => b.ready && b.stats.rejoins === 1, 15_000, 'b rejoined').catch((err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(b.stats)}`);
    });
    expect(b.stats.joinedFrom).to.equal(aUrl);
    await eventually(() => snapshot(a) === snapshot(b), 5000, 'b agrees with a after the rejoin');
    expect(b.stats.position).to.equal(a.stats.position);
  });

  it('a replica with no peer restores from a backup file, then follows the stream', async () => {
    const s = await stream(5); // the stream alone cannot rebuild anything
    const a = await replica('a', s);
    await eventually(() => a.ready, 10_000, 'a ready');
    for (let i = 0; i < 40; i++) await a.set(randomUpdate());
    await a.set({ user_id: 'nothing-set' });
    const file = join(dir, 'backup.csv.gz');
    await pipeline((await a.backup()).body, createWriteStream(file));
    const c = await replica('c', s, { restoreFrom: file });
    await eventually(() => c.ready, 10_000, 'c ready');
    expect(c.stats.joinedFrom).to.equal(file);
    expect(snapshot(c)).to.equal(snapshot(a));
    expect(c.get('nothing-set')).to.deep.equal(a.get('nothing-set'));
    await a.set({ user_id: 'user-1', spp: 777 });
    await eventually(() => c.get('user-1')?.spp === 777, 5000, 'c follows the stream after the restore');

    // The same backup with another stream incarnation is refused, loudly, and the replica fails.
    const lines = gunzipSync(await readFile(file))
      .toString()
      .split('\n');
    const meta = lines[1]!.split(',');
    meta[meta.length - 3] = '2001-01-01T00:00:00.000Z';
    lines[1] = meta.join(',');
    const foreign = join(dir, 'foreign.csv.gz');
    await writeFile(foreign, gzipSync(lines.join('\n')));
    let fatal: unknown;
    const d = await replica('d', s, { restoreFrom: foreign, onFatal: (err) => (fatal = err) });
    await eventually(() => fatal !== undefined, 10_000, 'd refuses the foreign backup');
    expect(String(fatal)).to.match(/another incarnation of the stream/);
    expect(d.ready).to.equal(false);

    // A row whose sequence lies beyond the stream's last: the stream lost what that value came from.
    const rows = gunzipSync(await readFile(file))
      .toString()
      .split('\n');
    // The first record (mark rows, with an empty user_id, come before the records).
    const at = rows.findIndex((line, i) => i > 1 && !line.startsWith(','));
    const row = rows[at]!.split(',');
    row[5] = '999999';
    rows[at] = row.join(',');
    const beyond = join(dir, 'beyond.csv.gz');
    await writeFile(beyond, gzipSync(rows.join('\n')));
    let refused: unknown;
    await replica('e', s, { restoreFrom: beyond, onFatal: (err) => (refused = err) });
    await eventually(() => refused !== undefined, 10_000, 'e refuses the backup');
    expect(String(refused)).to.match(/sequences beyond the stream's last/);
  });

  it('a stream recreated under a running replica is a gap: not ready, counted, and with no usable backup, fatal', async () => {
    const s = await stream();
    let fatal: unknown;
    const a = await replica('a', s, { onFatal: (err) => (fatal = err) });
    await eventually(() => a.ready, 10_000, 'a ready');
    for (let i = 0; i < 5; i++) await a.set(randomUpdate());
    const jsm = await jetstreamManager(direct);
    await jsm.streams.delete(s.name);
    await jsm.streams.add({ name: s.name, subjects: [`${s.subject}.>`] });
    await eventually(() => a.stats.gaps === 1, 10_000, 'the recreated stream noticed');
    expect(a.ready).to.equal(false);
    await eventually(() => fatal !== undefined, 10_000, 'the rejoin gives up');
    expect(String(fatal)).to.match(/cannot rejoin/);
  });
});
