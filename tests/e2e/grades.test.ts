import { expect } from 'chai';
import { gunzipSync } from 'node:zlib';
import { BACKUP_COLUMNS, parseCsvLine } from '../../src/grades/backup.js';
import { FIELDS } from '../../src/grades/model.js';
import { deleteStreams, TEST_NATS_URL, uniqueName } from '../support/nats.js';
import { getJson, startService, type RunningService } from '../support/service.js';
import { closedPort, TcpFaultProxy } from '../support/tcp-proxy.js';
import { eventually as eventuallyEvery } from '../support/time.js';

const PASSWORD = 'e2e-grades-password';
const AUTH = `Basic ${Buffer.from(`grades:${PASSWORD}`).toString('base64')}`;
const USERS = Array.from({ length: 40 }, (_, i) => `user-${i}`);

interface Node {
  name: string;
  setPort: number;
  getPort: number;
  service?: RunningService;
}

async function set(node: Node, body: unknown, auth = AUTH) {
  const res = await fetch(`http://127.0.0.1:${node.setPort}/set`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: auth },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

function randomUpdate(): Record<string, unknown> {
  const update: Record<string, unknown> = { user_id: USERS[Math.floor(Math.random() * USERS.length)] };
  for (const field of FIELDS) if (Math.random() < 0.4) update[field] = Math.floor(Math.random() * 10_000);
  return update;
}

async function snapshot(node: Node): Promise<string> {
  const all = await Promise.all(USERS.map((u) => getJson(node.getPort, `/get?user_id=${u}`)));
  return JSON.stringify(all.map((r) => (r.status === 200 ? r.body : null)));
}

/** Polls every 100 ms: each check is a round of HTTP requests to real processes. */
const eventually = (check: () => Promise<boolean>, ms: number, what: string) =>
  eventuallyEvery(check, ms, what, 100);

describe('grades (end to end, three replica processes)', function () {
  // Three processes, a restart and an outage: minutes on a loaded machine, seconds on a quiet one.
  this.timeout(120_000);
  const stream = uniqueName('GRADES_E2E');
  const nodes: Node[] = [];
  let proxy: TcpFaultProxy;

  function start(node: Node, natsUrl: string): Promise<unknown> {
    const peers = nodes.filter((n) => n !== node).map((n) => `http://127.0.0.1:${n.getPort}`);
    node.service = startService({
      REPLICA_ID: node.name,
      TOKENS_PORT: '0',
      GRADES_SET_PORT: String(node.setPort),
      GRADES_GET_PORT: String(node.getPort),
      GRADES_PASSWORD: PASSWORD,
      GRADES_PEERS: peers.join(','),
      GRADES_STREAM: stream,
      GRADES_SUBJECT: `${stream}.set`,
      NATS_URL: natsUrl,
      NATS_KEYS_BUCKET: `${stream}_keys`,
      SIGNING_WORKERS: '0',
    });
    return node.service.ready;
  }

  before(async () => {
    const target = new URL(TEST_NATS_URL);
    proxy = new TcpFaultProxy({ host: target.hostname, port: Number(target.port || 4222) });
    await proxy.start();
    for (const name of ['r1', 'r2', 'r3'])
      nodes.push({ name, setPort: await closedPort(), getPort: await closedPort() });
  });
  after(async () => {
    await Promise.all(nodes.map(async (n) => n.service?.stop('SIGKILL')));
    await proxy.stop();
    await deleteStreams(stream, `KV_${stream}_keys`);
  });

  it('converge under concurrent partial writes, a restart mid-load that joins from a peer, and a NATS outage', async () => {
    const [r1, r2, r3] = nodes as [Node, Node, Node];
    const viaProxy = `nats://127.0.0.1:${proxy.port}`;
    await start(r1, TEST_NATS_URL);
    await Promise.all([start(r2, TEST_NATS_URL), start(r3, viaProxy)]);
    for (const n of nodes) {
      await eventually(
        async () => (await getJson(n.getPort, '/readyz')).status === 200,
        15_000,
        `${n.name} ready`,
      );
    }

    // Concurrent partial writes to all three.
    let writing = true;
    let accepted = 0;
    // Four writers per replica: a 200 now waits until the stream stored the write, so one sequential writer
    // makes fewer writes per second than when replicas answered before storing.
    const writers = nodes.flatMap((node, i) =>
      Array.from({ length: 4 }, async () => {
        while (writing) {
          if (node.service?.proc.exitCode !== null) {
            await new Promise((r) => setTimeout(r, 20));
            continue;
          }
          const res = await set(node, randomUpdate()).catch(() => undefined);
          if (res?.status === 200) accepted++;
          if (i === 1) await new Promise((r) => setTimeout(r, 2));
        }
      }),
    );
    await new Promise((r) => setTimeout(r, 1000));

    // Restart r2 mid-load: it joins from a peer's backup while the others keep taking writes.
    expect(await r2.service!.stop('SIGTERM')).to.equal(0);
    await new Promise((r) => setTimeout(r, 500));
    const joinedAt = Date.now();
    await start(r2, TEST_NATS_URL);
    await eventually(
      async () => (await getJson(r2.getPort, '/readyz')).status === 200,
      20_000,
      'r2 ready again',
    );
    const joined = r2.service!.logs.find((l) => l.msg === 'backup loaded');
    expect(joined, 'r2 loaded a peer backup').to.not.be.undefined;
    expect(['http://127.0.0.1:' + r1.getPort, 'http://127.0.0.1:' + r3.getPort]).to.include(joined?.peer);
    expect(Date.now() - joinedAt).to.be.below(20_000);

    // NATS outage for r3: writes to it are accepted and replicated once NATS is back.
    await proxy.setMode('refuse');
    await new Promise((r) => setTimeout(r, 1500));
    await proxy.setMode('pass');
    await new Promise((r) => setTimeout(r, 500));
    writing = false;
    await Promise.all(writers);
    expect(accepted).to.be.greaterThan(300);

    await eventually(
      async () => {
        const [a, b, c] = await Promise.all(nodes.map(snapshot));
        return a === b && b === c;
      },
      20_000,
      'identical records on all replicas',
    );

    // The backup of any replica holds exactly what /get returns.
    const res = await fetch(`http://127.0.0.1:${r3.getPort}/backup`, { headers: { authorization: AUTH } });
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-disposition')).to.match(
      /filename="grades-r3-\d{8}T\d{6}Z-seq\d+\.csv\.gz"/,
    );
    const lines = gunzipSync(Buffer.from(await res.arrayBuffer()))
      .toString()
      .trimEnd()
      .split('\n');
    expect(lines[0]).to.equal(BACKUP_COLUMNS.join(','));
    const fromBackup = new Map(
      lines.slice(2).map((line) => {
        const f = parseCsvLine(line);
        return [
          f[0],
          Object.fromEntries([['user_id', f[0]], ...FIELDS.map((field, i) => [field, Number(f[1 + i])])]),
        ];
      }),
    );
    for (const user of USERS) {
      const got = await getJson(r3.getPort, `/get?user_id=${user}`);
      expect(fromBackup.get(user) ?? null, user).to.deep.equal(got.status === 200 ? got.body : null);
    }
  });

  it('refuses bad input and bad credentials, changing nothing', async () => {
    const node = nodes[0]!;
    const before = await snapshot(node);
    const cases: [unknown, number, RegExp][] = [
      ['{not json', 400, /not valid JSON/],
      [{ spp: 1 }, 400, /user_id/],
      [{ user_id: 'user-1', spp: '5' }, 400, /spp/],
      [{ user_id: 'user-1', spp: 1.5 }, 400, /integer/],
      [{ user_id: 'user-1', bogus: 1 }, 400, /bogus|unrecognized/i],
      [{ user_id: 'user-1', spp: 2 ** 60 }, 400, /integer/],
      [{ user_id: 'x'.repeat(20_000) }, 413, /exceeds/],
    ];
    for (const [body, status, message] of cases) {
      const res = await set(node, body);
      expect(res.status, JSON.stringify(body).slice(0, 40)).to.equal(status);
      expect(res.body.message).to.match(message);
    }
    const wrong = await set(
      node,
      { user_id: 'user-1', spp: 1 },
      `Basic ${Buffer.from('grades:nope').toString('base64')}`,
    );
    expect(wrong.status).to.equal(401);
    expect((await set(node, { user_id: 'user-1', spp: 1 }, '')).status).to.equal(401);
    expect((await fetch(`http://127.0.0.1:${node.getPort}/backup`)).status).to.equal(401);
    const plain = await fetch(`http://127.0.0.1:${node.setPort}/set`, {
      method: 'POST',
      headers: { authorization: AUTH, 'content-type': 'text/plain' },
      body: '{"user_id":"user-1"}',
    });
    expect(plain.status).to.equal(415);
    expect((await getJson(node.getPort, '/get?user_id=nobody')).status).to.equal(404);
    expect((await getJson(node.getPort, '/get')).status).to.equal(400);
    expect(await snapshot(node)).to.equal(before);
  });
});
