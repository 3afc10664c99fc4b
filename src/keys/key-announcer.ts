import { jetstream } from '@nats-io/jetstream';
import { Kvm, type KV, type KvWatchEntry } from '@nats-io/kv';
import type { QueuedIterator } from '@nats-io/nats-core';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { MessageAuth } from '../cluster/message-auth.js';
import { describeError, UnavailableError } from '../errors.js';
import type { KeyGate } from './key-admission.js';
import type { KeyStore } from './key-store.js';
import { parsePublicKey } from './public-key-schema.js';
import type { PublicKey } from './public-key.js';
import type { NatsClient } from '../nats/connection.js';
import { withTimeout } from '../timeout.js';

/** Tells peer replicas about a new public key. */
export interface KeyAnnouncer {
  /** Resolves once the announcement is durably accepted (JetStream ack); rejects otherwise. */
  announce(key: PublicKey): Promise<void>;
}

/** Settings of {@link NatsKeyAnnouncer}. */
export interface NatsKeyAnnouncerOptions {
  readonly nats: NatsClient;
  /** JetStream KV bucket shared by every replica. */
  readonly bucket: string;
  /** Entries older than this vanish (the longest a key can live). */
  readonly ttlMs: number;
  readonly replicaId: string;
  readonly keyStore: KeyStore;
  /** Verifies every peer key before it is stored (SPEC X7). */
  readonly gate: KeyGate;
  /**
   * Seals this replica's announcements and opens peers' (CLUSTER_SECRET); an announcement that does not open is
   * refused. Absent: announcements are not authenticated, and whoever can write to the bucket is trusted as far
   * as key verification lets them be.
   */
  readonly auth?: MessageAuth;
  /** Called for every announcement refused before key verification (the metric). */
  readonly onRefused?: (reason: AnnouncementRefusal) => void;
  readonly timeoutMs: number;
  readonly log: Logger;
}

/** Why an announcement was refused before its key was looked at. */
export type AnnouncementRefusal =
  /** Not an announcement: the envelope or the key in it does not parse, or it sits under another key's name. */
  | 'malformed'
  /** Without a valid MAC under the cluster secret. */
  | 'unauthenticated'
  /** The key names another replica than the announcement's origin. */
  | 'origin_mismatch';

/**
 * What a KV entry holds: the key's JSON text exactly as sealed, the announcing replica, and, with a cluster
 * secret, the MAC over both (bound to the purpose `keys:<bucket>`).
 */
const envelopeSchema = z
  .object({
    v: z.literal(1),
    origin: z.string().min(1).max(64),
    key: z.string().min(1).max(16_384),
    mac: z.string().max(128).optional(),
  })
  .strict();

/**
 * Key announcements over a JetStream KV bucket ("Keys across replicas"): each replica puts its new public key
 * under its `kid`, and watches the bucket to add every other replica's keys to its own KeyStore. The bucket keeps
 * each key until the bucket TTL, so a replica that starts later, even with Postgres down, still learns every
 * key that can verify a live token.
 */
export class NatsKeyAnnouncer implements KeyAnnouncer {
  readonly name = 'key-announcer';
  readonly #o: NatsKeyAnnouncerOptions;
  #kv: KV | undefined;
  #watch: QueuedIterator<KvWatchEntry> | undefined;
  #stopped = false;

  constructor(options: NatsKeyAnnouncerOptions) {
    this.#o = options;
  }

  /** True once the bucket is open and watched. */
  get ready(): boolean {
    return this.#kv !== undefined;
  }

  /** Opens the bucket and starts watching as soon as NATS is connected (now, or later in the background). */
  start(): Promise<void> {
    return new Promise((resolve) => {
      let resolved = false;
      const done = () => {
        if (!resolved) {
          resolved = true;
          resolve();
        }
      };
      this.#o.nats.onConnected((nc) => {
        void this.#open(nc).finally(done);
      });
      if (!this.#o.nats.connection) done();
    });
  }

  /** Stops watching. */
  stop(): Promise<void> {
    this.#stopped = true;
    this.#watch?.stop();
    return Promise.resolve();
  }

  /** Puts the key in the bucket; resolves on the JetStream acknowledgement. */
  async announce(key: PublicKey): Promise<void> {
    const kv = this.#kv;
    if (!kv) throw new UnavailableError('key bucket is not open (NATS unreachable)');
    const text = JSON.stringify(key);
    const origin = this.#o.replicaId;
    const mac = this.#o.auth?.seal(this.#purpose, origin, text);
    const envelope = JSON.stringify({ v: 1, origin, key: text, ...(mac ? { mac } : {}) });
    await withTimeout(kv.put(key.kid, envelope), this.#o.timeoutMs, 'key announcement');
  }

  /** What a MAC binds announcements to: this bucket's key announcements, nothing else. */
  get #purpose(): string {
    return `keys:${this.#o.bucket}`;
  }

  async #open(nc: Parameters<typeof jetstream>[0]): Promise<void> {
    for (let attempt = 0; !this.#stopped; attempt++) {
      try {
        const kvm = new Kvm(jetstream(nc));
        let kv: KV;
        try {
          kv = await kvm.create(this.#o.bucket, { history: 1, ttl: this.#o.ttlMs });
        } catch {
          kv = await kvm.open(this.#o.bucket);
        }
        const watch = await kv.watch();
        this.#kv = kv;
        this.#watch = watch;
        void this.#consume(watch);
        this.#o.log.info({ bucket: this.#o.bucket }, 'watching public-key announcements');
        return;
      } catch (err) {
        this.#o.log.warn({ err: describeError(err), attempt }, 'cannot open the key bucket; retrying');
        await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** attempt)).unref());
      }
    }
  }

  async #consume(watch: QueuedIterator<KvWatchEntry>): Promise<void> {
    for await (const entry of watch) {
      if (entry.operation !== 'PUT') continue;
      const key = this.#unseal(entry);
      if (!key || key.replicaId === this.#o.replicaId) continue;
      if (!(await this.#o.gate.admit(key, 'nats'))) continue;
      try {
        await this.#o.keyStore.create(key);
        this.#o.log.debug({ kid: key.kid, from: key.replicaId }, 'peer key added');
      } catch (err) {
        this.#o.log.warn({ kid: key.kid, err: describeError(err) }, 'could not store a peer key');
      }
    }
  }

  /** The announced key, once the envelope parses, its MAC opens (with a secret) and its origin matches. */
  #unseal(entry: KvWatchEntry): PublicKey | undefined {
    let envelope: z.infer<typeof envelopeSchema>;
    let key: PublicKey;
    try {
      envelope = envelopeSchema.parse(entry.json());
    } catch (err) {
      return this.#refuse(entry, 'malformed', describeError(err));
    }
    if (this.#o.auth) {
      const opened = this.#o.auth.open(this.#purpose, envelope.origin, envelope.key, envelope.mac);
      if (!opened.ok) return this.#refuse(entry, 'unauthenticated', `MAC ${opened.reason}`);
    }
    try {
      key = parsePublicKey(JSON.parse(envelope.key));
    } catch (err) {
      return this.#refuse(entry, 'malformed', describeError(err));
    }
    if (key.kid !== entry.key) return this.#refuse(entry, 'malformed', 'filed under another kid');
    if (key.replicaId !== envelope.origin)
      return this.#refuse(entry, 'origin_mismatch', 'key of another replica');
    return key;
  }

  #refuse(entry: KvWatchEntry, reason: AnnouncementRefusal, detail: string): undefined {
    this.#o.onRefused?.(reason);
    this.#o.log.warn({ entry: entry.key.slice(0, 64), reason, detail }, 'key announcement refused');
    return undefined;
  }
}
