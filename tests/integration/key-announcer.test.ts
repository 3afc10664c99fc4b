import { jetstream } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { expect } from 'chai';
import sinon from 'sinon';
import { systemClock } from '../../src/clock.js';
import { MessageAuth } from '../../src/cluster/message-auth.js';
import { KeyAdmission } from '../../src/keys/key-admission.js';
import { KeyStore, MemoryOnlyBackend } from '../../src/keys/key-store.js';
import { MemoryPublicKeyRepository } from '../../src/keys/memory-repository.js';
import type { PublicKey } from '../../src/keys/public-key.js';
import { silentLogger } from '../../src/log.js';
import { NatsClient } from '../../src/nats/connection.js';
import { NatsKeyAnnouncer } from '../../src/keys/key-announcer.js';
import { makeTrustedKey } from '../support/keys.js';
import { deleteStreams, TEST_NATS_URL, uniqueName } from '../support/nats.js';

const LIFETIME = 2 * 3_600_000;
const SKEW = 60_000;
const SECRET = 'integration-test-cluster-secret-0123456789';

/** Polls `check` until it holds or `ms` pass. */
async function eventually(check: () => Promise<boolean>, ms: number): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > ms) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** One replica's key store fed by the real key bucket, and a writer that puts whatever it likes there. */
interface Rig {
  bucket: string;
  store: KeyStore;
  nats: NatsClient;
  announcer: NatsKeyAnnouncer;
  refused: sinon.SinonSpy;
  writer: NatsConnection;
  kv: KV;
  stop(): Promise<void>;
}

async function rig(auth: MessageAuth | undefined): Promise<Rig> {
  const bucket = uniqueName('keys');
  const log = silentLogger();
  const store = new KeyStore({
    backend: new MemoryOnlyBackend(new MemoryPublicKeyRepository(systemClock)),
    flushIntervalMs: 60_000,
    probeIntervalMs: 60_000,
    cleanupIntervalMs: 60_000,
    log,
  });
  await store.start();
  const refused = sinon.spy();
  const gate = new KeyAdmission({
    policy: { algorithms: ['ES256'], keyLifetimeMs: LIFETIME, skewMs: SKEW },
    clock: systemClock,
    log,
    onRefused: (source, reason) => {
      refused(source, reason);
    },
  });
  const nats = new NatsClient({ url: TEST_NATS_URL, name: 'replica', startWaitMs: 2000, retryMs: 200, log });
  await nats.start();
  const announcer = new NatsKeyAnnouncer({
    nats,
    bucket,
    ttlMs: LIFETIME,
    replicaId: 'replica',
    keyStore: store,
    gate,
    ...(auth ? { auth } : {}),
    onRefused: (reason) => {
      refused('nats', reason);
    },
    timeoutMs: 2000,
    log,
  });
  await announcer.start();
  expect(announcer.ready).to.be.true;
  const writer = await connect({ servers: TEST_NATS_URL });
  const kv = await new Kvm(jetstream(writer)).open(bucket);
  return {
    bucket,
    store,
    nats,
    announcer,
    refused,
    writer,
    kv,
    stop: async () => {
      await announcer.stop();
      await nats.stop();
      await writer.close();
      await store.stop();
      await deleteStreams(`KV_${bucket}`);
    },
  };
}

/** An announcement as a replica writes it (sealed when `auth` is given) under the key's kid. */
async function put(r: Rig, key: PublicKey, options: { auth?: MessageAuth; origin?: string } = {}) {
  const origin = options.origin ?? key.replicaId;
  const text = JSON.stringify(key);
  const mac = options.auth?.seal(`keys:${r.bucket}`, origin, text);
  await r.kv.put(key.kid, JSON.stringify({ v: 1, origin, key: text, ...(mac ? { mac } : {}) }));
}

/** Puts a genuine sealed key behind the others and waits for it: the watch delivers in order, so every earlier entry has been judged. */
async function barrier(r: Rig, auth: MessageAuth | undefined): Promise<void> {
  const marker = await makeTrustedKey('ES256', Date.now(), LIFETIME, 'peer');
  await put(r, marker, auth ? { auth } : {});
  await eventually(async () => (await r.store.get(marker.kid)) !== undefined, 5000);
}

describe('key announcements over a real NATS key bucket', () => {
  describe('with CLUSTER_SECRET set', () => {
    const auth = new MessageAuth({ current: SECRET });
    let r: Rig;
    before(async () => {
      r = await rig(auth);
    });
    after(async () => {
      await r.stop();
    });

    it('a well-formed key put without the MAC, or with one under another secret, never reaches the key store', async () => {
      const unsealed = await makeTrustedKey('ES256', Date.now(), LIFETIME, 'peer');
      const foreign = await makeTrustedKey('ES256', Date.now(), LIFETIME, 'peer');
      await put(r, unsealed);
      await put(r, foreign, {
        auth: new MessageAuth({ current: 'another-cluster-secret-0123456789abcdef' }),
      });
      await barrier(r, auth);
      expect(await r.store.get(unsealed.kid)).to.be.undefined;
      expect(await r.store.get(foreign.kid)).to.be.undefined;
      const jwks = (await r.store.list()).map((k) => k.kid);
      expect(jwks).not.to.include.members([unsealed.kid]);
      expect(jwks).not.to.include.members([foreign.kid]);
      expect(r.refused.withArgs('nats', 'unauthenticated').callCount).to.equal(2);
    });

    it('a sealed announcement whose origin is not the key’s replica is refused', async () => {
      const key = await makeTrustedKey('ES256', Date.now(), LIFETIME, 'peer');
      await put(r, key, { auth, origin: 'someone-else' });
      await barrier(r, auth);
      expect(await r.store.get(key.kid)).to.be.undefined;
      expect(r.refused.calledWith('nats', 'origin_mismatch')).to.be.true;
    });

    it('a sealed key with a wrong kid or an unbounded expiry is still refused', async () => {
      const good = await makeTrustedKey('ES256', Date.now(), LIFETIME, 'peer');
      const wrongKid = { ...good, kid: 'chosen-kid', jwk: { ...good.jwk, kid: 'chosen-kid' } };
      const forever = { ...(await makeTrustedKey('ES256', Date.now(), LIFETIME, 'peer')) };
      const unbounded = { ...forever, expiresAt: Date.UTC(9999, 0, 1) };
      await put(r, wrongKid, { auth });
      await put(r, unbounded, { auth });
      await barrier(r, auth);
      expect(await r.store.get(wrongKid.kid)).to.be.undefined;
      expect(await r.store.get(unbounded.kid)).to.be.undefined;
      expect(r.refused.calledWith('nats', 'kid_mismatch')).to.be.true;
      expect(r.refused.calledWith('nats', 'expiry_too_far')).to.be.true;
    });

    it('the replica’s own announcements are sealed, and a peer with the secret opens them', async () => {
      const own = await makeTrustedKey('ES256', Date.now(), LIFETIME, 'replica');
      await r.announcer.announce(own);
      const entry = await r.kv.get(own.kid);
      const envelope = entry?.json<{ origin: string; key: string; mac: string }>();
      expect(envelope?.origin).to.equal('replica');
      expect(auth.open(`keys:${r.bucket}`, 'replica', envelope?.key ?? '', envelope?.mac).ok).to.be.true;
    });
  });

  describe('without CLUSTER_SECRET', () => {
    let r: Rig;
    before(async () => {
      r = await rig(undefined);
    });
    after(async () => {
      await r.stop();
    });

    it('a key with a wrong kid or an unbounded expiry is refused; a genuine one is stored', async () => {
      const good = await makeTrustedKey('ES256', Date.now(), LIFETIME, 'peer');
      const wrongKid = { ...good, kid: 'chosen-kid', jwk: { ...good.jwk, kid: 'chosen-kid' } };
      const unbounded = {
        ...(await makeTrustedKey('ES256', Date.now(), LIFETIME, 'peer')),
        expiresAt: Date.UTC(9999, 0, 1),
      };
      await put(r, wrongKid);
      await put(r, unbounded);
      await barrier(r, undefined);
      expect(await r.store.get(wrongKid.kid)).to.be.undefined;
      expect(await r.store.get(unbounded.kid)).to.be.undefined;
      expect(r.refused.calledWith('nats', 'kid_mismatch')).to.be.true;
      expect(r.refused.calledWith('nats', 'expiry_too_far')).to.be.true;
    });

    it('an entry that is not an announcement is refused as malformed', async () => {
      await r.kv.put('junk', '{"kid":"junk"}');
      await barrier(r, undefined);
      expect(r.refused.calledWith('nats', 'malformed')).to.be.true;
    });
  });
});
