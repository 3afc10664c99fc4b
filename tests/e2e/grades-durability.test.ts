import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parseCsvLine } from '../../src/grades/backup.js';
import { FIELDS } from '../../src/grades/model.js';
import { deleteStreams, TEST_NATS_URL, uniqueName } from '../support/nats.js';
import { getJson, startService, type RunningService } from '../support/service.js';
import { closedPort, TcpFaultProxy } from '../support/tcp-proxy.js';
import { eventually as eventuallyEvery } from '../support/time.js';

const PASSWORD = 'e2e-durability-password';
const AUTH = `Basic ${Buffer.from(`grades:${PASSWORD}`).toString('base64')}`;
/** Users every replica writes to, one field at a time. */
const HOT_USERS = 16;

interface Node {
  name: string;
  setPort: number;
  getPort: number;
  outboxDir?: string;
  viaProxy: boolean;
  service?: RunningService;
}

/** Runs `fn` over `items` with at most `limit` at a time. */
async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i] as T);
      }
    }),
  );
  return out;
}

/** Polls every 200 ms: each check is a round of HTTP requests to real processes. */
const eventually = (check: () => Promise<boolean>, ms: number, what: string) =>
  eventuallyEvery(check, ms, what, 200);

describe('grades durability (end to end): every write that got a 2xx survives SIGKILL, on every replica', function () {
  // Three processes, restarts and an outage: minutes on a loaded machine, seconds on a quiet one.
  this.timeout(240_000);
  let proxy: TcpFaultProxy;
  let dir: string;
  const streams: string[] = [];
  const running: Node[] = [];

  before(async () => {
    const target = new URL(TEST_NATS_URL);
    proxy = new TcpFaultProxy({ host: target.hostname, port: Number(target.port || 4222) });
    await proxy.start();
    dir = await mkdtemp(join(tmpdir(), 'grades-durability-'));
  });
  after(async () => {
    await Promise.all(running.map(async (n) => n.service?.stop('SIGKILL')));
    await proxy.stop();
    await deleteStreams(...streams.flatMap((s) => [s, `KV_${s}_keys`]));
    await rm(dir, { recursive: true, force: true });
  });
  afterEach(() => proxy.setMode('pass'));

  async function cluster(
    outboxOn: string | undefined,
  ): Promise<{ nodes: Node[]; start: (node: Node) => Promise<unknown> }> {
    const stream = uniqueName('GRADES_DURABLE');
    streams.push(stream);
    const nodes: Node[] = [];
    for (const name of ['r1', 'r2', 'r3']) {
      nodes.push({
        name,
        setPort: await closedPort(),
        getPort: await closedPort(),
        viaProxy: name === 'r3',
        ...(name === outboxOn ? { outboxDir: join(dir, `${stream}-${name}`) } : {}),
      });
    }
    const start = (node: Node) => {
      node.service = startService({
        REPLICA_ID: node.name,
        GRADES_SET_PORT: String(node.setPort),
        GRADES_GET_PORT: String(node.getPort),
        GRADES_PASSWORD: PASSWORD,
        GRADES_PEERS: nodes
          .filter((n) => n !== node)
          .map((n) => `http://127.0.0.1:${n.getPort}`)
          .join(','),
        GRADES_STREAM: stream,
        GRADES_SUBJECT: `${stream}.set`,
        NATS_URL: node.viaProxy ? `nats://127.0.0.1:${proxy.port}` : TEST_NATS_URL,
        NATS_KEYS_BUCKET: `${stream}_keys`,
        SIGNING_WORKERS: '0',
        ...(node.outboxDir ? { GRADES_OUTBOX_DIR: node.outboxDir } : {}),
      });
      running.push(node);
      return node.service.ready;
    };
    await start(nodes[0]!);
    await Promise.all([start(nodes[1]!), start(nodes[2]!)]);
    for (const n of nodes) await waitReady(n);
    return { nodes, start };
  }

  async function waitReady(node: Node): Promise<void> {
    await eventually(
      async () => (await getJson(node.getPort, '/readyz').catch(() => ({ status: 0 }))).status === 200,
      // Joining and catching up while writers keep the stream busy: on a loaded 2-core machine this took over
      // 30 s once (the replica is not ready until its consumer has seen the end of the stream).
      60_000,
      `${node.name} ready`,
    );
  }

  /** Concurrent writers, each write to a user of its own; remembers every write answered 2xx. */
  function writers(nodes: Node[], perNode: number) {
    const acknowledged = new Map<string, { spp: number; status: number; node: string }>();
    let writing = true;
    let counter = 0;
    let badHeaders = 0;
    let hotAcknowledged = 0;
    const loops = nodes.flatMap((node) =>
      Array.from({ length: perNode }, async () => {
        while (writing) {
          if (node.service?.proc.exitCode !== null || node.service.proc.signalCode !== null) {
            await new Promise((r) => setTimeout(r, 20));
            continue;
          }
          const i = counter++;
          // Every fourth write is a partial write of one field of a user every replica writes to, so that
          // replicas must also converge on writes that compete; the others each set a user of their own.
          const hot = i % 4 === 0;
          const user = hot ? `hot-${(i / 4) % HOT_USERS}` : `w-${node.name}-${i}`;
          const field = hot ? FIELDS[(i / 4) % FIELDS.length]! : 'spp';
          const res = await fetch(`http://127.0.0.1:${node.setPort}/set`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: AUTH },
            body: JSON.stringify({ user_id: user, [field]: i }),
          }).catch(() => undefined);
          if (res && hot && res.status >= 200 && res.status < 300) hotAcknowledged++;
          if (res && !hot && (res.status === 200 || res.status === 202)) {
            acknowledged.set(user, { spp: i, status: res.status, node: node.name });
            // 200: stored, at the stream sequence in x-stream-sequence; 202: kept locally, replication pending.
            const header =
              res.status === 200
                ? /^[1-9]\d*$/.test(res.headers.get('x-stream-sequence') ?? '')
                : res.headers.get('x-replication') === 'pending';
            if (!header) badHeaders++;
          }
          await res?.arrayBuffer().catch(() => undefined);
        }
      }),
    );
    return {
      acknowledged,
      hotAcknowledged: () => hotAcknowledged,
      badHeaders: () => badHeaders,
      stop: async () => {
        writing = false;
        await Promise.all(loops);
      },
    };
  }

  async function missingOn(node: Node, acknowledged: Map<string, { spp: number }>): Promise<string[]> {
    const users = [...acknowledged.keys()];
    const found = await pool(users, 32, async (user) => {
      const res = await getJson(node.getPort, `/get?user_id=${encodeURIComponent(user)}`).catch(
        () => undefined,
      );
      return res?.status === 200 && (res.body as { spp: number }).spp === acknowledged.get(user)?.spp;
    });
    return users.filter((_, i) => !found[i]);
  }

  async function expectEverywhere(nodes: Node[], acknowledged: Map<string, { spp: number }>): Promise<void> {
    for (const node of nodes) {
      let missing: string[] = [];
      await eventually(
        async () => (missing = await missingOn(node, acknowledged)).length === 0,
        30_000,
        `every acknowledged write on ${node.name}`,
      ).catch((err: Error) => {
        throw new Error(`${err.message}: ${missing.length} missing, e.g. ${missing.slice(0, 5).join(', ')}`);
      });
    }
  }

  /** Every replica answers the same for each shared user (a write that got a 2xx or not: all or none have it). */
  async function expectAgreement(nodes: Node[]): Promise<void> {
    const users = Array.from({ length: HOT_USERS }, (_, i) => `hot-${i}`);
    let differing: string[] = [];
    await eventually(
      async () => {
        const answers = await Promise.all(
          nodes.map((node) =>
            pool(users, 8, async (user) =>
              getJson(node.getPort, `/get?user_id=${encodeURIComponent(user)}`).then(
                (res) => JSON.stringify([res.status, res.body]),
                () => 'unreachable',
              ),
            ),
          ),
        );
        differing = users.filter((_, i) =>
          answers.some((a) => a[i] === 'unreachable' || a[i] !== answers[0]![i]),
        );
        return differing.length === 0;
      },
      30_000,
      'every replica answers the same for every shared user',
    ).catch((err: Error) => {
      throw new Error(`${err.message}: ${differing.length} differ, e.g. ${differing.slice(0, 5).join(', ')}`);
    });
  }

  async function expectBackupEqualsGet(node: Node, users: string[]): Promise<void> {
    const res = await fetch(`http://127.0.0.1:${node.getPort}/backup`, { headers: { authorization: AUTH } });
    expect(res.status).to.equal(200);
    const rows = new Map(
      gunzipSync(Buffer.from(await res.arrayBuffer()))
        .toString()
        .trimEnd()
        .split('\n')
        .slice(2)
        .map((line) => {
          const f = parseCsvLine(line);
          return [f[0], Number(f[2])] as const;
        }),
    );
    const gets = await pool(users, 32, (user) =>
      getJson(node.getPort, `/get?user_id=${encodeURIComponent(user)}`),
    );
    users.forEach((user, i) => {
      const got = gets[i]!;
      expect(rows.get(user) ?? null, user).to.equal(
        got.status === 200 ? (got.body as { spp: number }).spp : null,
      );
    });
  }

  it('the README walk-through with no configuration: after two sets the backup holds what get serves', async () => {
    const solo = startService({ GRADES_PASSWORD: PASSWORD });
    try {
      const { gradesSetPort, gradesGetPort } = (await solo.ready) as {
        gradesSetPort: number;
        gradesGetPort: number;
      };
      for (const body of [
        '{"user_id":"u1","spp":5}',
        '{"user_id":"u1","shipping_fee":7}',
        '{"user_id":"u2"}',
      ]) {
        const res = await fetch(`http://127.0.0.1:${gradesSetPort}/set`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: AUTH },
          body,
        });
        expect(res.status).to.equal(200);
      }
      expect((await getJson(gradesGetPort, '/get?user_id=u1')).body).to.deep.equal({
        user_id: 'u1',
        postpaid_limit: 0,
        spp: 5,
        shipping_fee: 7,
        return_fee: 0,
      });
      const res = await fetch(`http://127.0.0.1:${gradesGetPort}/backup`, {
        headers: { authorization: AUTH },
      });
      const lines = gunzipSync(Buffer.from(await res.arrayBuffer()))
        .toString()
        .trimEnd()
        .split('\n');
      expect(lines.slice(2)).to.deep.equal(['u1,0,5,7,0,0,0,0,0,,,', 'u2,0,0,0,0,0,0,0,0,,,']);
    } finally {
      await solo.stop('SIGKILL');
    }
  });

  it('with NATS up: a replica SIGKILLed under concurrent writes loses none it acknowledged (200 means stored)', async () => {
    const { nodes, start } = await cluster(undefined);
    const [, r2] = nodes as [Node, Node, Node];
    const load = writers(nodes, 4);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await r2.service!.stop('SIGKILL')).to.equal('SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    await start(r2);
    await waitReady(r2);
    await new Promise((r) => setTimeout(r, 500));
    await load.stop();
    expect(load.badHeaders()).to.equal(0);
    const statuses = new Set([...load.acknowledged.values()].map((w) => w.status));
    expect([...statuses]).to.deep.equal([200]);
    expect(load.acknowledged.size).to.be.greaterThan(100);
    expect([...load.acknowledged.values()].some((w) => w.node === 'r2')).to.equal(true);
    await expectEverywhere(nodes, load.acknowledged);
    expect(load.hotAcknowledged()).to.be.greaterThan(0);
    await expectAgreement(nodes);
    const sample = [...load.acknowledged.keys()].slice(0, 200);
    for (const node of nodes) await expectBackupEqualsGet(node, sample);
  });

  it('during an outage with GRADES_OUTBOX_DIR: writes answered 202 survive SIGKILL of that replica (refused, then frozen link), another replica restarts mid-load, and every 2xx write reaches every replica', async () => {
    const { nodes, start } = await cluster('r3');
    const [, r2, r3] = nodes as [Node, Node, Node];
    const load = writers(nodes, 3);
    await new Promise((r) => setTimeout(r, 800));
    await proxy.setMode('refuse');
    // Meanwhile another replica is SIGKILLed and restarted mid-load: it joins from a peer.
    expect(await r2.service!.stop('SIGKILL')).to.equal('SIGKILL');
    await start(r2);
    await waitReady(r2);
    await new Promise((r) => setTimeout(r, 500));
    await proxy.setMode('stall');
    await new Promise((r) => setTimeout(r, 3000));
    expect(await r3.service!.stop('SIGKILL')).to.equal('SIGKILL');
    const during = [...load.acknowledged.values()].filter((w) => w.node === 'r3' && w.status === 202).length;
    expect(during, 'writes accepted by r3 during the outage').to.be.greaterThan(0);
    await proxy.setMode('pass');
    await start(r3);
    await waitReady(r3);
    await new Promise((r) => setTimeout(r, 500));
    await load.stop();
    expect(load.badHeaders()).to.equal(0);
    await expectEverywhere(nodes, load.acknowledged);
    expect(load.hotAcknowledged()).to.be.greaterThan(0);
    await expectAgreement(nodes);
    const sample = [...load.acknowledged.entries()]
      .filter(([, w]) => w.status === 202)
      .map(([user]) => user)
      .slice(0, 200);
    for (const node of nodes) await expectBackupEqualsGet(node, sample);
  });
});
