import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { MessageAuth } from '../../src/cluster/message-auth.js';
import { GradesReplica } from '../../src/grades/grades-replica.js';
import { MAC_HEADER } from '../../src/grades/wire.js';
import { silentLogger } from '../../src/log.js';
import { NatsClient } from '../../src/nats/connection.js';
import { deleteStreams, TEST_NATS_URL, uniqueName } from '../support/nats.js';
import { eventually } from '../support/time.js';
import { recordingLogger } from '../support/logs.js';

const SECRET = 'grades-replay-test-secret-0123456789abcdef';
const AUTH = 'Basic Z3JhZGVzOnJlcGxheQ==';

describe('grades replay of a genuine sealed message, against the real NATS', () => {
  const stream = uniqueName('GRADES_REPLAY');
  const subject = `${stream}.set`;
  const clients: NatsClient[] = [];
  const replicas: GradesReplica[] = [];
  const replayed: string[] = [];
  const servers: Server[] = [];
  let direct: NatsConnection;

  function replica(id: string, peers: string[] = [], log: Logger = silentLogger()): GradesReplica {
    const nats = new NatsClient({
      url: TEST_NATS_URL,
      name: id,
      startWaitMs: 2000,
      retryMs: 200,
      log: silentLogger(),
    });
    clients.push(nats);
    const r = new GradesReplica({
      replicaId: id,
      nats,
      stream: { name: stream, subject, maxAgeS: 3600, maxBytes: -1, duplicateWindowS: 120 },
      peers,
      peerAuthorization: AUTH,
      publishWindow: 64,
      joinAttempts: 1,
      auth: new MessageAuth({ current: SECRET }),
      metrics: {
        replicationDelay: () => undefined,
        gap: () => undefined,
        rejoin: () => undefined,
        replayed: () => replayed.push(id),
      },
      log,
      onFatal: (err) => {
        throw err;
      },
    });
    replicas.push(r);
    return r;
  }

  /** A get port serving `source`'s `/backup` (to AUTH only), as a peer's would. */
  async function backupPeer(source: GradesReplica): Promise<string> {
    const server = createServer((req, res) => {
      if (req.url !== '/backup' || req.headers.authorization !== AUTH) {
        res.writeHead(401).end();
        return;
      }
      void source.backup().then(async (b) => {
        res.writeHead(200, { 'content-type': 'application/gzip' });
        await pipeline(b.body, res);
      });
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Re-publishes the stored message at `seq` as is: its subject, its bytes and its MAC. */
  async function replay(seq: number): Promise<number> {
    const jsm = await jetstreamManager(direct);
    const stored = await jsm.streams.getMessage(stream, { seq });
    if (!stored) throw new Error(`no message at ${seq}`);
    const h = headers();
    h.set(MAC_HEADER, stored.header.get(MAC_HEADER));
    const ack = await jetstream(direct).publish(stored.subject, stored.data, { headers: h });
    return ack.seq;
  }

  before(async () => {
    direct = await connect({ servers: TEST_NATS_URL });
  });
  after(async () => {
    for (const r of replicas) await r.stop();
    for (const c of clients) await c.stop();
    for (const s of servers) await new Promise((r) => s.close(r));
    await direct.close();
    await deleteStreams(stream);
  });

  it('a copy of an older write, MAC included, reverts nothing on any replica, a later joiner included', async () => {
    const logged = recordingLogger();
    const a = replica('replay-a', [], logged.log);
    const b = replica('replay-b');
    for (const c of clients) await c.start();
    for (const r of [a, b]) await r.start();
    for (const r of [a, b]) await eventually(() => r.ready, 20_000, 'replicas ready');

    const first = await a.set({ user_id: 'alice', spp: 1 });
    const second = await a.set({ user_id: 'alice', spp: 2 });
    if (first.status !== 'stored' || second.status !== 'stored') throw new Error('writes not stored');
    await eventually(() => b.get('alice')?.spp === 2, 5000, 'both writes reach the peer');

    // Anyone who can publish on the stream re-publishes the first write: it opens (a genuine MAC) and gets a
    // newer sequence, which alone would make every replica go back to spp=1.
    const replaySeq = await replay(first.seq);
    expect(replaySeq).to.be.greaterThan(second.seq);
    await eventually(
      () => [a, b].every((r) => r.stats.position >= replaySeq),
      5000,
      'position past the replay',
    );
    for (const r of [a, b]) {
      expect(r.get('alice')?.spp).to.equal(2);
      expect(r.ready).to.equal(true);
    }
    expect(replayed.sort()).to.deep.equal(['replay-a', 'replay-b']);
    // Logged at warn with where it stands, never its payload.
    const warned = logged.lines.filter((l) => /replayed replication message/.test(String(l.msg)));
    expect(warned).to.have.length(1);
    expect(warned[0]).to.include({ level: 40, seq: replaySeq, n: 1, lastN: 1, mark: 2 });
    expect(JSON.stringify(warned[0])).to.not.contain('alice');

    // A third replica joins from a's backup (at or after the replay's position), then the first write is replayed
    // again: after the joiner's start position, so only the marks the backup carried can stop it there.
    const c = replica('replay-c', [await backupPeer(a)]);
    await clients.at(-1)!.start();
    await c.start();
    await eventually(() => c.ready, 20_000, 'the joiner ready');
    expect(c.stats.joinedFrom).to.match(/^http:\/\/127\.0\.0\.1:/);
    expect(c.get('alice')?.spp).to.equal(2);
    const startedAt = c.stats.position;
    expect(startedAt).to.be.at.least(replaySeq);

    const again = await replay(first.seq);
    await eventually(
      () => [a, b, c].every((r) => r.stats.position >= again),
      5000,
      'position past the second replay',
    );
    for (const r of [a, b, c]) expect(r.get('alice')?.spp).to.equal(2);
    expect(replayed.filter((id) => id === 'replay-c')).to.have.length(1);
    expect(c.ready).to.equal(true);

    // The cluster goes on: a later genuine write still applies everywhere.
    await b.set({ user_id: 'alice', spp: 3 });
    await eventually(() => [a, c].every((r) => r.get('alice')?.spp === 3), 5000, 'a later write');
  });
});
