import { expect } from 'chai';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { gunzipSync } from 'node:zlib';
import { parseCsvLine } from '../../../src/grades/backup.js';
import { GradesReplica } from '../../../src/grades/grades-replica.js';
import { checkBackup } from '../../../src/grades/join.js';
import { silentLogger } from '../../../src/log.js';

async function collect(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return gunzipSync(Buffer.concat(chunks)).toString();
}

function standalone(restoreFrom?: string): GradesReplica {
  return new GradesReplica({
    replicaId: 'solo',
    stream: { name: 'S', subject: 's', maxAgeS: 1, maxBytes: -1, duplicateWindowS: 1 },
    peers: [],
    peerAuthorization: 'Basic x',
    publishWindow: 8,
    joinAttempts: 1,
    ...(restoreFrom ? { restoreFrom } : {}),
    log: silentLogger(),
    onFatal: (err) => {
      throw err;
    },
  });
}

describe('grades replica (standalone)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'grades-replica-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('the README walk-through: two sets, and the backup holds both records, exactly as get serves them', async () => {
    const r = standalone();
    await r.start();
    expect(r.ready).to.equal(true);
    expect((await r.set({ user_id: 'u1', spp: 5 })).status).to.equal('local');
    await r.set({ user_id: 'u1', shipping_fee: 7 });
    await r.set({ user_id: 'u2' });
    const lines = (await collect((await r.backup()).body)).trimEnd().split('\n');
    expect(lines.slice(2)).to.deep.equal(['u1,0,5,7,0,0,0,0,0,,,', 'u2,0,0,0,0,0,0,0,0,,,']);
    expect(r.get('u1')).to.deep.equal({
      user_id: 'u1',
      postpaid_limit: 0,
      spp: 5,
      shipping_fee: 7,
      return_fee: 0,
    });
    await r.stop();
  });

  it('get reads synchronously between whole writes: a write is visible once set resolves, never half of it', async () => {
    const r = standalone();
    await r.start();
    await r.set({ user_id: 'u', spp: 0, return_fee: 0 });
    const writing = r.set({ user_id: 'u', spp: 1, return_fee: 2 });
    // Whether or not the mailbox has handled it yet, a read sees all of the write or none of it.
    const seen = [r.get('u')?.spp, r.get('u')?.return_fee];
    expect([JSON.stringify([0, 0]), JSON.stringify([1, 2])]).to.include(JSON.stringify(seen));
    await writing;
    expect(r.get('u')).to.include({ spp: 1, return_fee: 2 });
    await r.stop();
  });

  it('restores a backup file at start (GRADES_RESTORE_FROM) when it has no stream', async () => {
    const source = standalone();
    await source.start();
    await source.set({ user_id: 'a', spp: 3 });
    await source.set({ user_id: 'b' });
    const file = join(dir, 'solo.csv.gz');
    await pipeline((await source.backup()).body, createWriteStream(file));
    const restored = standalone(file);
    await restored.start();
    expect(restored.get('a')).to.deep.equal(source.get('a'));
    expect(restored.get('b')).to.deep.equal(source.get('b'));
    await Promise.all([source.stop(), restored.stop()]);
  });
});

describe('grades join – backups a replica of this stream must refuse (X4)', () => {
  const stream = { created: '2026-11-27T00:00:00Z', first: 5, last: 100 };
  const header = (position: number, streamCreated = stream.created) => ({
    position,
    generatedAt: '',
    streamCreated,
    marks: new Map<string, number>(),
  });

  it('accepts a backup of this incarnation within the range the stream holds', () => {
    expect(() => checkBackup('p', header(4), stream)).to.not.throw();
    expect(() => checkBackup('p', header(100), stream)).to.not.throw();
    // A replica without a stream wrote it: its values are all at sequence 0, nothing to misplace.
    expect(() => checkBackup('p', header(0, ''), { ...stream, first: 1 })).to.not.throw();
  });

  it('refuses a backup that names no stream yet claims a position: it would hide the messages up to it', () => {
    expect(() => checkBackup('p', header(4, ''), stream)).to.throw(/names no stream yet claims position 4/);
  });

  it('refuses another incarnation, a position beyond the stream, and one the stream no longer continues', () => {
    expect(() => checkBackup('p', header(50, '2020-01-01T00:00:00Z'), stream)).to.throw(
      /another incarnation/,
    );
    expect(() => checkBackup('p', header(101), stream)).to.throw(/beyond the stream's last sequence 100/);
    expect(() => checkBackup('p', header(3), stream)).to.throw(/stream starts at 5/);
  });

  it('parses the metadata columns it checks', () => {
    expect(parseCsvLine(',,,,,,,,,2026-11-27T00:00:00Z,2026-11-27T01:00:00.000Z,42')).to.have.length(12);
  });
});
