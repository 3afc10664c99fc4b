import { expect } from 'chai';
import sinon from 'sinon';
import { FaultTolerantPublicKeyRepository } from '../../../src/keys/fault-tolerant-repository.js';
import { KeyStore, MemoryOnlyBackend } from '../../../src/keys/key-store.js';
import { MemoryPublicKeyRepository } from '../../../src/keys/memory-repository.js';
import { PendingWrites } from '../../../src/keys/pending-writes.js';
import type { PublicKey } from '../../../src/keys/public-key.js';
import { silentLogger } from '../../../src/log.js';
import type { KeyAnnouncer } from '../../../src/keys/key-announcer.js';
import { KeyRotation } from '../../../src/keys/key-rotation.js';
import { FakePostgres } from '../../support/fake-postgres.js';
import { fakeTime, T0 } from '../../support/time.js';

const ROTATE = 60_000;
const GRACE = 20_000;
const RETRY = 1_000;

describe('key rotation', () => {
  let t: ReturnType<typeof fakeTime>;
  let pg: FakePostgres;
  let store: KeyStore;
  let rotation: KeyRotation;
  let announcer: { announce: sinon.SinonStub<[PublicKey], Promise<void>> } | undefined;

  async function start(
    options: { durable?: boolean; announcer?: KeyAnnouncer; postgres?: 'up' | 'down' } = {},
  ) {
    t = fakeTime();
    pg = new FakePostgres(t.clock);
    pg.mode = options.postgres ?? 'up';
    const memory = new MemoryPublicKeyRepository(t.clock);
    const backend =
      options.durable === false
        ? new MemoryOnlyBackend(memory)
        : new FaultTolerantPublicKeyRepository({
            postgres: pg,
            memory,
            pending: new PendingWrites(t.clock),
            clock: t.clock,
            timeoutMs: 100,
            log: silentLogger(),
          });
    store = new KeyStore({
      backend,
      flushIntervalMs: 500,
      probeIntervalMs: 300,
      cleanupIntervalMs: 3_600_000,
      log: silentLogger(),
    });
    await store.start();
    rotation = new KeyRotation({
      alg: 'ES256',
      rotationIntervalMs: ROTATE,
      publishGraceMs: GRACE,
      retryIntervalMs: RETRY,
      tokenMaxTtlMs: 600_000,
      skewMs: 60_000,
      replicaId: 'r1',
      keyStore: store,
      ...(options.announcer ? { announcer: options.announcer } : {}),
      clock: t.clock,
      log: silentLogger(),
    });
    await rotation.start();
  }

  /** Runs the fake clock, then waits for the actor: key generation runs on libuv's pool, which fake timers skip. */
  async function advance(ms: number): Promise<void> {
    await t.timers.tickAsync(ms);
    await rotation.ask({ type: 'retry' });
  }

  afterEach(async () => {
    await rotation.stop();
    await store.stop();
    t.timers.restore();
  });

  it('generates and publishes a key at start, then a new one every rotation interval', async () => {
    await start();
    const first = rotation.activeKid;
    expect(first).to.be.a('string');
    expect(pg.rows.has(first!)).to.be.true;
    expect(rotation.state.published).to.be.true;
    await advance(ROTATE);
    expect(rotation.activeKid).not.to.equal(first);
    expect(pg.rows.has(rotation.activeKid!)).to.be.true;
  });

  it('sets each key’s expiry to its last possible signing moment plus the longest token and the skew', async () => {
    await start();
    const key = rotation.active!;
    expect(key.publicKey.expiresAt).to.equal(T0 + ROTATE + GRACE + 600_000 + 60_000);
  });

  it('publishes a new key before any token can be signed with it: with Postgres down and no NATS, the old key keeps signing', async () => {
    await start();
    const first = rotation.activeKid;
    pg.mode = 'down';
    await advance(ROTATE);
    expect(rotation.activeKid).to.equal(first);
    expect(rotation.state.waitingKid).to.be.a('string');
    pg.mode = 'up';
    await advance(RETRY + 500);
    const second = rotation.activeKid;
    expect(second).not.to.equal(first);
    expect(pg.rows.has(second!)).to.be.true;
  });

  it('past the grace bound, activates the unpublished key rather than sign past the old key’s expiry', async () => {
    await start();
    const first = rotation.activeKid;
    pg.mode = 'down';
    await advance(ROTATE + GRACE - RETRY);
    expect(rotation.activeKid).to.equal(first);
    await advance(RETRY);
    expect(rotation.activeKid).not.to.equal(first);
    expect(rotation.state.published).to.be.false;
    pg.mode = 'up';
    await advance(RETRY + 500);
    expect(rotation.state.published).to.be.true;
  });

  it('counts a key acknowledged by the NATS bucket as published, even with Postgres down', async () => {
    announcer = { announce: sinon.stub<[PublicKey], Promise<void>>().resolves() };
    await start({ announcer: announcer as unknown as KeyAnnouncer });
    const first = rotation.activeKid;
    pg.mode = 'down';
    await advance(ROTATE);
    expect(rotation.activeKid).not.to.equal(first);
    expect(announcer.announce.lastCall.args[0].kid).to.equal(rotation.activeKid);
  });

  it('starts with Postgres down and NATS failing: signs with its new key at once (FT7) and keeps trying to publish it', async () => {
    announcer = { announce: sinon.stub<[PublicKey], Promise<void>>().rejects(new Error('nats down')) };
    await start({ announcer: announcer as unknown as KeyAnnouncer, postgres: 'down' });
    expect(rotation.active).to.not.be.undefined;
    expect(rotation.state.published).to.be.false;
    announcer.announce.resolves();
    await advance(RETRY);
    expect(rotation.state.published).to.be.true;
    expect(announcer.announce.lastCall.args[0].kid).to.equal(rotation.activeKid);
  });

  it('with neither Postgres nor NATS configured, a key is published as soon as it is in memory', async () => {
    await start({ durable: false });
    const first = rotation.activeKid;
    await advance(ROTATE);
    expect(rotation.activeKid).not.to.equal(first);
    expect(await store.get(first!)).to.not.be.undefined;
  });
});
