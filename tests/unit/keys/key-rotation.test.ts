import { expect } from 'chai';
import { decodeProtectedHeader } from 'jose';
import sinon from 'sinon';
import { FaultTolerantPublicKeyRepository } from '../../../src/keys/fault-tolerant-repository.js';
import { KeyStore, MemoryOnlyBackend } from '../../../src/keys/key-store.js';
import { MemoryPublicKeyRepository } from '../../../src/keys/memory-repository.js';
import { PendingWrites } from '../../../src/keys/pending-writes.js';
import type { PublicKey } from '../../../src/keys/public-key.js';
import { silentLogger } from '../../../src/log.js';
import type { KeyAnnouncer } from '../../../src/keys/key-announcer.js';
import { PublicKeyReads } from '../../../src/keys/public-key-reads.js';
import { hashSecret } from '../../../src/tokens/client-auth.js';
import { KeyRotation } from '../../../src/keys/key-rotation.js';
import { keyRoutes } from '../../../src/keys/key-routes.js';
import { SigningPool } from '../../../src/tokens/signing-pool.js';
import { TokenService } from '../../../src/tokens/token-service.js';
import { parseTokensConfig } from '../../../src/tokens/tokens-config.js';
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
    options: {
      durable?: boolean;
      announcer?: KeyAnnouncer;
      postgres?: 'up' | 'down';
      delayMs?: number;
      hold?: boolean;
    } = {},
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
      clock: t.clock,
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
      ...(options.delayMs !== undefined ? { activationDelayMs: options.delayMs } : {}),
      ...(options.hold !== undefined ? { startupHold: options.hold } : {}),
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

  describe('with an activation delay (issue 11 item 4)', () => {
    const DELAY = 10_000;

    it('publishes a rotated key at its turn and signs with it only the delay later', async () => {
      await start({ delayMs: DELAY });
      const first = rotation.activeKid;
      await advance(ROTATE);
      const waiting = rotation.state.waitingKid!;
      expect(rotation.state).to.include({ activeKid: first, waitingPublished: true });
      expect(pg.rows.has(waiting)).to.be.true;
      expect(store.snapshot.get(waiting)).not.to.be.undefined; // served while the old key still signs
      await advance(DELAY - 1);
      expect(rotation.activeKid).to.equal(first);
      await t.timers.tickAsync(1); // the activation is timed to the delay, not left to the next retry tick
      expect(rotation.activeKid).to.equal(waiting);
      expect(rotation.state.waitingKid).to.be.undefined;
    });

    it('sets each key’s expiry to allow for the delay: rotation + delay + grace + longest token + skew', async () => {
      await start({ delayMs: DELAY });
      expect(rotation.active!.publicKey.expiresAt).to.equal(T0 + ROTATE + DELAY + GRACE + 600_000 + 60_000);
    });

    it('while the rotated key cannot be published, the current key keeps signing up to its grace bound', async () => {
      await start({ delayMs: DELAY });
      const first = rotation.activeKid;
      pg.mode = 'down';
      await advance(ROTATE + DELAY + GRACE - RETRY);
      expect(rotation.activeKid).to.equal(first);
      expect(rotation.state.waitingPublished).to.be.false;
      await advance(RETRY);
      // Past the bound (its expiry allows no more), the unpublished key signs, as without a delay.
      expect(rotation.activeKid).not.to.equal(first);
      expect(rotation.state.published).to.be.false;
    });

    it('a key published late still waits the full delay when the current key’s bound allows it', async () => {
      await start({ delayMs: DELAY });
      const first = rotation.activeKid;
      pg.mode = 'down';
      await advance(ROTATE + GRACE / 2);
      expect(rotation.activeKid).to.equal(first);
      pg.mode = 'up';
      await advance(RETRY);
      const publishedAt = Date.now();
      expect(rotation.state.waitingPublished).to.be.true;
      await advance(DELAY - 1);
      expect(rotation.activeKid).to.equal(first);
      await advance(1);
      expect(rotation.activeKid).not.to.equal(first);
      expect(Date.now() - publishedAt).to.equal(DELAY);
    });

    it('refuses a delay as long as the rotation interval', () => {
      t = fakeTime();
      expect(
        () =>
          new KeyRotation({
            alg: 'ES256',
            rotationIntervalMs: ROTATE,
            activationDelayMs: ROTATE,
            publishGraceMs: GRACE,
            retryIntervalMs: RETRY,
            tokenMaxTtlMs: 600_000,
            skewMs: 60_000,
            replicaId: 'r1',
            keyStore: store,
            clock: t.clock,
            log: silentLogger(),
          }),
      ).to.throw(/shorter than the rotation interval/);
      t.timers.restore();
      t = fakeTime(); // for afterEach
    });
  });

  describe('start-up hold (KEY_STARTUP_HOLD)', () => {
    const DELAY = 10_000;

    it('off: ready as soon as the start-up key signs', async () => {
      await start({ delayMs: DELAY });
      expect(rotation.ready).to.be.true;
      expect(rotation.state.held).to.be.false;
    });

    it('on: not ready until the start-up key has been published for the delay, then ready for good', async () => {
      await start({ delayMs: DELAY, hold: true });
      expect(rotation.active).not.to.be.undefined;
      expect(rotation.ready).to.be.false;
      expect(rotation.state.held).to.be.true;
      await advance(DELAY - 1);
      expect(rotation.ready).to.be.false;
      await advance(1);
      expect(rotation.ready).to.be.true;
      pg.mode = 'down';
      await advance(ROTATE + DELAY + GRACE);
      expect(rotation.state.published).to.be.false;
      expect(rotation.ready).to.be.true;
    });

    it('on, starting with nothing reachable: the delay counts from the start-up key’s late publication', async () => {
      await start({ delayMs: DELAY, hold: true, postgres: 'down' });
      await advance(5 * RETRY);
      expect(rotation.ready).to.be.false;
      pg.mode = 'up';
      await advance(RETRY);
      expect(rotation.state.published).to.be.true;
      await advance(DELAY - RETRY);
      expect(rotation.ready).to.be.false;
      await advance(RETRY);
      expect(rotation.ready).to.be.true;
    });
  });

  it('with a short rotation interval, every token carries a kid the JWKS had been serving for at least the delay', async () => {
    const R = 2_000;
    const DELAY = 1_000;
    t = fakeTime();
    pg = new FakePostgres(t.clock);
    store = new KeyStore({
      backend: new FaultTolerantPublicKeyRepository({
        postgres: pg,
        memory: new MemoryPublicKeyRepository(t.clock),
        pending: new PendingWrites(t.clock),
        clock: t.clock,
        timeoutMs: 100,
        log: silentLogger(),
      }),
      flushIntervalMs: 500,
      probeIntervalMs: 300,
      cleanupIntervalMs: 3_600_000,
      clock: t.clock,
      log: silentLogger(),
    });
    await store.start();
    rotation = new KeyRotation({
      alg: 'ES256',
      rotationIntervalMs: R,
      activationDelayMs: DELAY,
      publishGraceMs: 500,
      retryIntervalMs: 250,
      tokenMaxTtlMs: 60_000,
      skewMs: 5_000,
      replicaId: 'r1',
      keyStore: store,
      startupHold: true,
      clock: t.clock,
      log: silentLogger(),
    });
    await rotation.start();
    const jwks = keyRoutes(new PublicKeyReads({ keys: store, clock: t.clock }), t.clock, {
      activationDelayS: DELAY / 1000,
    }).find((r) => r.path === '/.well-known/jwks.json')!;
    const signer = new SigningPool({ workers: 0 });
    const service = new TokenService({
      issuer: () => 'https://tokens.test',
      providers: [],
      clients: parseTokensConfig(
        { clients: [{ id: 'svc', secretHash: hashSecret('secret'), audiences: ['orders'] }] },
        60,
      ).clients,
      signer,
      activeKey: () => rotation.active,
      clock: t.clock,
      skewS: 5,
      defaultTtlS: 30,
    });
    const auth = `Basic ${Buffer.from('svc:secret').toString('base64')}`;
    const firstServed = new Map<string, number>();
    const issuedKids = new Set<string>();
    let tokens = 0;
    try {
      for (let step = 0; step < 120; step++) {
        if (step > 0) await advance(100);
        const now = Date.now();
        const served = JSON.parse(String((await jwks.handler(request())).body)) as {
          keys: { kid: string }[];
        };
        for (const { kid } of served.keys) if (!firstServed.has(kid)) firstServed.set(kid, now);
        if (!rotation.ready) continue; // a load balancer sends nothing before readiness
        const token = (await service.handle(new URLSearchParams({ grant_type: 'client_credentials' }), auth))
          .access_token;
        const kid = decodeProtectedHeader(token).kid!;
        expect(firstServed.has(kid), kid).to.be.true;
        expect(now - firstServed.get(kid)!, `served ${now - firstServed.get(kid)!} ms`).to.be.at.least(DELAY);
        issuedKids.add(kid);
        tokens++;
      }
    } finally {
      await signer.close();
    }
    expect(tokens).to.be.at.least(100);
    expect(issuedKids.size).to.be.at.least(5); // 12 s of rotation every 2 s
  });
});

function request() {
  return {
    method: 'GET',
    path: '/.well-known/jwks.json',
    query: new URLSearchParams(),
    params: {},
    headers: {},
    body: () => Promise.resolve(Buffer.alloc(0)),
  };
}
