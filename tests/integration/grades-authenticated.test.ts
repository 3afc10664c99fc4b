import { expect } from 'chai';
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { MessageAuth } from '../../src/cluster/message-auth.js';
import { GradesReplica } from '../../src/grades/grades-replica.js';
import { encodeReplication, originSubject } from '../../src/grades/wire.js';
import { silentLogger } from '../../src/log.js';
import { NatsClient } from '../../src/nats/connection.js';
import { deleteStreams, TEST_NATS_URL, uniqueName } from '../support/nats.js';
import { eventually } from '../support/time.js';

const SECRET = 'grades-authenticated-test-secret-0123456789';

describe('grades replication with CLUSTER_SECRET, against the real NATS (X7)', () => {
  const stream = uniqueName('GRADES_AUTH');
  const subject = `${stream}.set`;
  const clients: NatsClient[] = [];
  const replicas: GradesReplica[] = [];
  const refused: string[] = [];
  let direct: NatsConnection;

  function replica(id: string, secret: string): GradesReplica {
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
      peers: [],
      peerAuthorization: 'Basic x',
      publishWindow: 64,
      joinAttempts: 1,
      auth: new MessageAuth({ current: secret }),
      metrics: {
        replicationDelay: () => undefined,
        gap: () => undefined,
        rejoin: () => undefined,
        refused: (reason) => refused.push(`${id}:${reason}`),
      },
      log: silentLogger(),
      onFatal: (err) => {
        throw err;
      },
    });
    replicas.push(r);
    return r;
  }

  before(async () => {
    direct = await connect({ servers: TEST_NATS_URL });
  });
  after(async () => {
    for (const r of replicas) await r.stop();
    for (const c of clients) await c.stop();
    await direct.close();
    await deleteStreams(stream);
  });

  it('a write sealed by a replica reaches its peer; a message without the MAC, or under another secret, changes nothing', async () => {
    const a = replica('auth-a', SECRET);
    const b = replica('auth-b', SECRET);
    for (const c of clients) await c.start();
    for (const r of [a, b]) await r.start();
    for (const r of [a, b]) await eventually(() => r.ready, 10_000, 'replicas ready');

    // Published by a replica of the cluster: sealed, applied everywhere.
    const stored = await a.set({ user_id: 'alice', spp: 7 });
    expect(stored.status).to.equal('stored');
    await eventually(() => b.get('alice')?.spp === 7, 5000, 'the sealed write reaches the peer');

    // Anyone else who can publish on the stream: a well-formed message with no MAC, then one sealed under
    // another secret, each on an origin subject of its own.
    const js = jetstream(direct);
    const forged = { origin: 'intruder/0001', n: 1, updates: [{ user_id: 'alice', spp: 999 }] };
    await js.publish(originSubject(subject, forged.origin), encodeReplication(forged));
    const other = new MessageAuth({ current: `${SECRET}-not-ours` });
    const sealedElsewhere = { ...forged, origin: 'intruder/0002' };
    const data = encodeReplication(sealedElsewhere);
    const { headers } = await import('@nats-io/transport-node');
    const h = headers();
    h.set('Cluster-Mac', other.seal(`grades:${subject}`, sealedElsewhere.origin, data));
    const last = await js.publish(originSubject(subject, sealedElsewhere.origin), data, { headers: h });

    // Both replicas move past them (no gap, still ready) without applying them, and count them.
    await eventually(
      () => replicas.every((r) => r.stats.position >= last.seq),
      5000,
      'position past the forged messages',
    );
    for (const r of [a, b]) {
      expect(r.get('alice')?.spp).to.equal(7);
      expect(r.ready).to.equal(true);
    }
    expect(refused.sort()).to.deep.equal([
      'auth-a:mismatch',
      'auth-a:missing',
      'auth-b:mismatch',
      'auth-b:missing',
    ]);

    // The cluster goes on: a later sealed write still applies.
    await b.set({ user_id: 'alice', spp: 8 });
    await eventually(() => a.get('alice')?.spp === 8, 5000, 'a later sealed write');
  });

  it("a genuine message copied onto another writer's subject is refused, and that writer's next write is still stored", async () => {
    const [a, b] = replicas as [GradesReplica, GradesReplica];
    refused.length = 0;
    const first = await a.set({ user_id: 'bob', spp: 1 });
    expect(first.status).to.equal('stored');
    const jsm = await (await import('@nats-io/jetstream')).jetstreamManager(direct);
    const original = await jsm.streams.getMessage(stream, { seq: (first as { seq: number }).seq });
    expect(original).to.not.equal(null);
    // Copy a's message, bytes and MAC, onto b's subject (whose name the stream shows to anyone who reads it).
    const bSubject = (await jsm.streams.info(stream, { subjects_filter: '>' })).state.subjects;
    const target = Object.keys(bSubject ?? {}).find((subj) => subj.startsWith(`${subject}.auth-b`));
    expect(target).to.be.a('string');
    // Only the MAC header: the original's message id would have JetStream answer it as a duplicate.
    const { headers: makeHeaders } = await import('@nats-io/transport-node');
    const h = makeHeaders();
    h.set('Cluster-Mac', original!.header.get('Cluster-Mac'));
    const copy = await jetstream(direct).publish(target as string, original!.data, { headers: h });
    expect(copy.duplicate).to.equal(false);
    await eventually(
      () => replicas.every((r) => r.stats.position >= copy.seq),
      5000,
      'position past the copy',
    );
    expect(refused.sort()).to.deep.equal(['auth-a:subject', 'auth-b:subject']);
    // b's outbox is not fooled by a message on its subject that is not its own: its next write is stored and
    // reaches a.
    const next = await b.set({ user_id: 'bob', spp: 2 });
    expect(next.status).to.equal('stored');
    await eventually(() => a.get('bob')?.spp === 2, 5000, "b's write after the copy");
  });
});
