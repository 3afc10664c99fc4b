import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { buffer } from 'node:stream/consumers';
import sinon from 'sinon';
import { openBackup, readBackup, type BackupSource } from '../../../src/grades/backup.js';
import { BackupRefusedError } from '../../../src/grades/errors.js';
import { Readable } from 'node:stream';
import { joinCluster, type JoinOptions } from '../../../src/grades/join.js';
import type { StreamIdentity } from '../../../src/grades/replication.js';
import type { BackupRow } from '../../../src/grades/store.js';
import { silentLogger } from '../../../src/log.js';

const CREATED = '2026-11-27T00:00:00Z';

/** The csv.gz bytes of a backup at `position` of incarnation `created` holding `lines` (CSV record rows). */
async function backupBytes(
  position: number,
  created: string,
  lines: string,
  marks: ReadonlyMap<string, number> = new Map(),
): Promise<Buffer> {
  let served = false;
  const source: BackupSource = {
    open: () => Promise.resolve({ id: 1, position, streamCreated: created, marks }),
    next: () => Promise.resolve(served ? '' : ((served = true), lines)),
    close: () => undefined,
  };
  return buffer((await openBackup(source)).body);
}

/** A peer's get port serving `/backup` with `bytes` (only to `authorization`). */
async function peer(
  bytes: Buffer,
  authorization: string,
): Promise<{ url: string; server: Server; hits: () => number }> {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    if (req.url?.split('?')[0] !== '/backup' || req.headers.authorization !== authorization) {
      res.writeHead(401).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/gzip' }).end(bytes);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, hits: () => hits };
}

/** A port nothing listens on: the peer is down. */
async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return `http://127.0.0.1:${port}`;
}

describe('grades join – from any peer, never a master (G8, G9, X4)', () => {
  const AUTH = 'Basic Z3JhZGVzOnNlY3JldA==';
  const servers: Server[] = [];
  let dir: string;
  let loaded: BackupRow[];
  let restarts: [number, string][];
  let marks: ReadonlyMap<string, number> | undefined;
  let stream: StreamIdentity;

  before(async () => {
    dir = await mkdtemp(joinPath(tmpdir(), 'join-test-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    loaded = [];
    restarts = [];
    stream = { created: CREATED, first: 1, last: 10 };
  });
  afterEach(async () => {
    for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
  });

  const options = (over: Partial<JoinOptions>): JoinOptions => ({
    peers: [],
    authorization: AUTH,
    target: {
      restart: (position, created, m) => {
        restarts.push([position, created]);
        marks = m;
        loaded = [];
        return Promise.resolve();
      },
      load: (rows) => {
        loaded.push(...rows);
        return Promise.resolve();
      },
    },
    stream: () => Promise.resolve(stream),
    streamFallback: true,
    attempts: 2,
    retryMs: 1,
    timeoutMs: 2000,
    log: silentLogger(),
    ...over,
  });

  const ROW = 'alice,1,2,3,4,1,2,3,4,,,\n';

  it('joins from a live peer when another is down, and consumes from the backup position + 1', async () => {
    const good = await peer(await backupBytes(7, CREATED, ROW), AUTH);
    servers.push(good.server);
    const result = await joinCluster(options({ peers: [await deadUrl(), good.url] }));
    expect(result).to.deep.equal({ startSeq: 8, source: good.url });
    expect(loaded.map((r) => r.user_id)).to.deep.equal(['alice']);
    expect(loaded[0]?.values).to.deep.equal([1, 2, 3, 4]);
    expect(loaded[0]?.seqs).to.deep.equal([1, 2, 3, 4]);
  });

  it('hands the backup’s marks (each origin’s last write counter) to the target with its position', async () => {
    const good = await peer(await backupBytes(7, CREATED, ROW, new Map([['r1/ab', 4]])), AUTH);
    servers.push(good.server);
    await joinCluster(options({ peers: [good.url] }));
    expect(restarts).to.deep.equal([[7, CREATED]]);
    expect([...(marks ?? [])]).to.deep.equal([['r1/ab', 4]]);
  });

  it('a backup that names no stream (a standalone replica’s) joins only as one: at position 0, every sequence 0', async () => {
    const hiding = await peer(await backupBytes(5, '', 'alice,1,2,3,4,0,0,0,0,,,\n'), AUTH);
    const sequenced = await peer(await backupBytes(0, '', ROW), AUTH);
    const standalone = await peer(await backupBytes(0, '', 'bob,1,2,3,4,0,0,0,0,,,\n'), AUTH);
    servers.push(hiding.server, sequenced.server, standalone.server);
    const result = await joinCluster(options({ peers: [hiding.url, sequenced.url, standalone.url] }));
    expect(result).to.deep.equal({ startSeq: 1, source: standalone.url });
    // Taken as this stream's, from its start: every stream message then wins over its sequence-0 values.
    expect(restarts.at(-1)).to.deep.equal([0, CREATED]);
    expect(loaded.map((r) => r.user_id)).to.deep.equal(['bob']);
    const refusals = [
      [hiding, /names no stream yet claims position 5/],
      [sequenced, /holds sequences beyond the stream's last \(0\)/],
    ] as const;
    for (const [refused, why] of refusals) {
      const err = await joinCluster(options({ peers: [refused.url], attempts: 1 })).catch((e: unknown) => e);
      expect(err, refused.url).to.be.instanceOf(BackupRefusedError);
      expect((err as Error).message).to.match(why);
    }
  });

  it('refuses a backup of another stream incarnation and one beyond the stream, and joins from the good one', async () => {
    const foreign = await peer(await backupBytes(3, '2020-01-01T00:00:00Z', ROW), AUTH);
    const beyond = await peer(await backupBytes(99, CREATED, ROW), AUTH);
    const good = await peer(await backupBytes(4, CREATED, ROW), AUTH);
    servers.push(foreign.server, beyond.server, good.server);
    const result = await joinCluster(options({ peers: [foreign.url, beyond.url, good.url] }));
    expect(result.source).to.equal(good.url);
    expect(result.startSeq).to.equal(5);
  });

  it('peers that answer with stale backups only: fails loudly after every attempt, never serving a gap', async () => {
    stream = { created: CREATED, first: 50, last: 60 };
    const stale = await peer(await backupBytes(10, CREATED, ROW), AUTH);
    servers.push(stale.server);
    const err = await joinCluster(options({ peers: [stale.url], attempts: 3 })).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(Error);
    expect((err as Error).message).to.match(/no usable backup from any peer after 3 attempts/);
    expect(stale.hits()).to.equal(3);
    // What a refused backup loaded is cleared every time (the store starts over).
    expect(restarts).to.have.length(3);
    expect(loaded).to.deep.equal([]);
  });

  it('a restore URL shows in the result (and so in /readyz and the logs) without its credentials or query', async () => {
    const good = await peer(await backupBytes(6, CREATED, ROW), AUTH);
    servers.push(good.server);
    const secretUrl = `${good.url.replace('http://', 'http://user:pw@')}/backup?X-Amz-Signature=abc`;
    const result = await joinCluster(options({ peers: [await deadUrl()], restoreFrom: secretUrl }));
    expect(result.source).to.equal(`${good.url}/backup`);
    expect(result.source).not.to.match(/pw|Signature/);
  });

  it('no peer answers: loads GRADES_RESTORE_FROM under the same checks', async () => {
    const file = joinPath(dir, 'restore.csv.gz');
    await writeFile(file, await backupBytes(6, CREATED, ROW));
    const result = await joinCluster(options({ peers: [await deadUrl()], restoreFrom: file }));
    expect(result).to.deep.equal({ startSeq: 7, source: file });
    expect(loaded.map((r) => r.user_id)).to.deep.equal(['alice']);
  });

  it('refuses backup rows /set would refuse: loose numbers, a bad user_id', async () => {
    const bad = [
      'alice,,2,3,4,1,2,3,4,,,\n',
      'alice,1e3,2,3,4,1,2,3,4,,,\n',
      'alice,0x1F,2,3,4,1,2,3,4,,,\n',
      '"a\tb",1,2,3,4,1,2,3,4,,,\n',
    ];
    for (const row of bad) {
      const err = await readBackup(
        Readable.from([await backupBytes(7, CREATED, row)]),
        () => Promise.resolve(),
        () => Promise.resolve(),
      ).catch((e: unknown) => e);
      expect(err, row).to.be.instanceOf(BackupRefusedError);
      expect((err as Error).message, row).to.match(/line \d+: malformed row/);
    }
    const ok = await readBackup(
      Readable.from([await backupBytes(7, CREATED, ROW)]),
      () => Promise.resolve(),
      () => Promise.resolve(),
    );
    expect(ok.rows).to.equal(1);
  });

  it('no peer and nothing to restore: rebuilds from a whole stream, starts from what a cut one holds, or refuses to rejoin', async () => {
    const log = silentLogger();
    const error = sinon.spy(log, 'error');
    expect(await joinCluster(options({ peers: [await deadUrl()], log }))).to.deep.equal({
      startSeq: 1,
      source: 'stream',
    });
    stream = { created: CREATED, first: 5, last: 10 };
    expect(await joinCluster(options({ log }))).to.deep.equal({ startSeq: 5, source: 'partial-stream' });
    expect(error.calledWithMatch({ first: 5 }, sinon.match(/no longer holds everything/))).to.equal(true);
    const refused = await joinCluster(options({ streamFallback: false })).catch((e: unknown) => e);
    expect((refused as Error).message).to.match(/cannot rejoin/);
  });
});
