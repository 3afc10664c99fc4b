import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { jetstreamManager } from '@nats-io/jetstream';
import { GradesReplica } from '../../src/grades/grades-replica.js';
import { BasicAuth } from '../../src/grades/routes.js';
import { silentLogger } from '../../src/log.js';
import { NatsClient } from '../../src/nats/connection.js';
import { startNatsServer, type OwnNatsServer } from '../support/nats-server.js';

/** The server's limit on a message (headers included): a few long-id writes fill it. */
const MAX_PAYLOAD = 4096;

describe('grades outbox against a server with a small max_payload (own nats-server on loopback)', () => {
  let server: OwnNatsServer;
  let dir: string;
  const closers: (() => Promise<unknown>)[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'grades-max-payload-'));
    const config = join(dir, 'nats.conf');
    await writeFile(config, `max_payload: ${MAX_PAYLOAD}\njetstream { store_dir: "${join(dir, 'js')}" }\n`);
    server = await startNatsServer(['-c', config]);
  });
  after(async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('a window of writes larger than one message may carry is published in several, in order, every write stored', async () => {
    const nats = new NatsClient({
      url: server.url,
      name: 'r1',
      startWaitMs: 3000,
      retryMs: 200,
      log: silentLogger(),
    });
    await nats.start();
    closers.push(() => nats.stop());
    const stream = {
      name: 'GRADES_MAXPAYLOAD',
      subject: 'grades.maxpayload',
      maxAgeS: 3600,
      maxBytes: -1,
      duplicateWindowS: 120,
    };
    const replica = new GradesReplica({
      replicaId: 'r1',
      nats,
      stream,
      peers: [],
      peerAuthorization: BasicAuth.header('grades', 'max-payload-password'),
      publishWindow: 256,
      joinAttempts: 1,
      writeTimeoutMs: 5000,
      log: silentLogger(),
      onFatal: (err) => {
        throw err;
      },
    });
    await replica.start();
    closers.push(() => replica.stop());
    const deadline = Date.now() + 10_000;
    while (!replica.ready && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    expect(replica.ready).to.equal(true);

    // About 270 bytes each: 64 of them are over four times what one message may carry.
    const users = Array.from({ length: 64 }, (_, i) => `${'u'.repeat(250)}-${String(i).padStart(3, '0')}`);
    const outcomes = await Promise.all(users.map((user_id, i) => replica.set({ user_id, spp: i })));
    expect(outcomes.map((o) => o.status)).to.deep.equal(Array(users.length).fill('stored'));
    users.forEach((user, i) => expect(replica.get(user)?.spp).to.equal(i));

    // The stream holds every write once, in the order they were taken, in messages the server accepted.
    const jsm = await jetstreamManager(nats.connection!);
    const info = await jsm.streams.info(stream.name);
    expect(info.state.messages).to.be.greaterThan(4);
    const stored: string[] = [];
    for (let seq = 1; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(stream.name, { seq });
      expect(m!.data.length).to.be.at.most(MAX_PAYLOAD);
      const body = JSON.parse(new TextDecoder().decode(m!.data)) as { updates: { user_id: string }[] };
      stored.push(...body.updates.map((u) => u.user_id));
    }
    expect(stored).to.deep.equal(users);
  });
});
