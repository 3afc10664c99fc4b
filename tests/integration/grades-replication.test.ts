import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIELDS, type GradeUpdate, type UserGrade } from '../../src/grades/model.js';
import { GradesReplica } from '../../src/grades/grades-replica.js';
import { silentLogger } from '../../src/log.js';
import { NatsClient } from '../../src/nats/connection.js';
import { deleteStreams, TEST_NATS_URL, uniqueName } from '../support/nats.js';
import { TcpFaultProxy } from '../support/tcp-proxy.js';
import { eventually } from '../support/time.js';

const USERS = Array.from({ length: 20 }, (_, i) => `user-${i}`);

function randomUpdate(): GradeUpdate {
  const update: Record<string, unknown> = { user_id: USERS[Math.floor(Math.random() * USERS.length)] };
  for (const field of FIELDS) if (Math.random() < 0.4) update[field] = Math.floor(Math.random() * 1000);
  return update as GradeUpdate;
}

function records(replica: GradesReplica): (UserGrade | undefined)[] {
  return USERS.map((userId) => replica.get(userId));
}

describe('grades replication through the real NATS', () => {
  const stream = uniqueName('GRADES_IT');
  const subject = `${stream}.set`;
  let proxy: TcpFaultProxy;
  const clients: NatsClient[] = [];
  const replicas: GradesReplica[] = [];

  function replica(id: string, url: string, outboxDir?: string): GradesReplica {
    const nats = new NatsClient({ url, name: id, startWaitMs: 2000, retryMs: 200, log: silentLogger() });
    clients.push(nats);
    const r = new GradesReplica({
      replicaId: id,
      nats,
      stream: { name: stream, subject, maxAgeS: 3600, maxBytes: -1, duplicateWindowS: 120 },
      peers: [],
      peerAuthorization: 'Basic x',
      publishWindow: 64,
      joinAttempts: 1,
      ...(outboxDir ? { outboxDir } : {}),
      log: silentLogger(),
      onFatal: (err) => {
        throw err;
      },
    });
    replicas.push(r);
    return r;
  }

  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'grades-it-'));
    const target = new URL(TEST_NATS_URL);
    proxy = new TcpFaultProxy({ host: target.hostname, port: Number(target.port || 4222) });
    await proxy.start();
  });
  after(async () => {
    for (const r of replicas) await r.stop();
    for (const c of clients) await c.stop();
    await proxy.stop();
    await deleteStreams(stream);
    await rm(dir, { recursive: true, force: true });
  });

  it('two replicas under concurrent partial writes converge, also across a NATS outage of one of them', async () => {
    const a = replica('a', `nats://127.0.0.1:${proxy.port}`, join(dir, 'a'));
    const b = replica('b', TEST_NATS_URL);
    for (const c of clients) await c.start();
    await a.start();
    await b.start();
    await eventually(() => a.ready && b.ready, 5000, 'both replicas ready');

    const write = (r: GradesReplica) => r.set(randomUpdate());
    await Promise.all(Array.from({ length: 300 }, (_, i) => write(i % 2 === 0 ? a : b)));

    // NATS becomes unreachable for replica a: its writes are still accepted (its outbox log keeps them) and
    // wait in its outbox.
    await proxy.setMode('refuse');
    const local = await a.set({ user_id: 'user-0', spp: 424242 });
    expect(local.status).to.equal('logged');
    expect(local.record.spp).to.equal(424242);
    expect(a.get('user-0')?.spp).to.equal(424242);
    await Promise.all(Array.from({ length: 200 }, (_, i) => write(i % 2 === 0 ? a : b)));
    await eventually(() => a.stats.outbox > 0, 3000, 'writes held in the outbox');
    await proxy.setMode('pass');

    await eventually(() => a.stats.outbox === 0 && b.stats.outbox === 0, 15_000, 'outboxes drained');
    await eventually(
      () => JSON.stringify(records(a)) === JSON.stringify(records(b)),
      10_000,
      'identical records',
    ).catch((err: Error) => {
      throw new Error(`${err.message}; a=${JSON.stringify(a.stats)} b=${JSON.stringify(b.stats)}`);
    });
    expect(a.stats.unconfirmed).to.equal(0);
    expect(b.stats.unconfirmed).to.equal(0);
    const all = records(a);
    expect(all.filter(Boolean).length).to.be.greaterThan(10);
  });

  it('a third replica started later rebuilds from the whole stream (no peers) and agrees', async () => {
    const c = replica('c', TEST_NATS_URL);
    await clients.at(-1)!.start();
    await c.start();
    await eventually(() => c.ready, 5000, 'replica c ready');
    expect(JSON.stringify(records(c))).to.equal(JSON.stringify(records(replicas[1]!)));
  });
});
