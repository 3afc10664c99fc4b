import { expect } from 'chai';
import { backupSource, GradesActor } from '../../../src/grades/grades-actor.js';
import { BACKUP_COLUMNS, openBackup, parseCsvLine, readBackup } from '../../../src/grades/backup.js';
import type { BackupRow } from '../../../src/grades/store.js';
import { silentLogger } from '../../../src/log.js';
import { gunzipSync } from 'node:zlib';

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('grades backup', () => {
  let actor: GradesActor;
  beforeEach(async () => {
    actor = new GradesActor({ log: silentLogger() });
    await actor.start();
  });
  afterEach(() => actor.stop());

  it('is a CSV with a header, a metadata row (stream identity, time and stream sequence), and one row per record as get serves it', async () => {
    await actor.ask({
      type: 'stream',
      seq: 7,
      msg: { origin: 'r2/y', n: 1, updates: [{ user_id: 'a,"b"', spp: 3 }] },
      own: false,
    });
    await actor.ask({
      type: 'stream',
      seq: 8,
      msg: { origin: 'r2/y', n: 2, updates: [{ user_id: 'c', return_fee: -4 }] },
      own: false,
    });
    await actor.ask({ type: 'local', n: 1, update: { user_id: 'pending-only', spp: 1 } });
    const backup = await openBackup(backupSource(actor), 1);
    expect(backup.position).to.equal(8);
    const lines = gunzipSync(await collect(backup.body))
      .toString()
      .trimEnd()
      .split('\n');
    expect(lines[0]).to.equal(BACKUP_COLUMNS.join(','));
    const meta = parseCsvLine(lines[1]!);
    expect(meta).to.have.length(BACKUP_COLUMNS.length);
    expect(meta.slice(0, -2).every((f) => f === '')).to.be.true;
    expect(meta.at(-3)).to.equal('');
    expect(meta.at(-2)).to.equal(backup.generatedAt.toISOString());
    expect(meta.at(-1)).to.equal('8');
    // Then one mark row per origin: its last write counter applied, in stream_created and stream_sequence.
    expect(lines[2]).to.equal(',,,,,,,,,r2/y,,2');
    // The write not yet in the stream is there as get serves it, at sequence 0 (the lowest precedence).
    expect(lines.slice(3)).to.deep.equal([
      '"a,""b""",0,3,0,0,0,7,0,0,,,',
      'c,0,0,0,-4,0,0,0,8,,,',
      'pending-only,0,1,0,0,0,0,0,0,,,',
    ]);
  });

  it('round-trips through readBackup into another replica', async () => {
    for (let i = 0; i < 2500; i++) {
      await actor.ask({
        type: 'stream',
        seq: i + 1,
        msg: { origin: 'r2/y', n: i + 1, updates: [{ user_id: `u${i}`, spp: i }] },
        own: false,
      });
    }
    const backup = await openBackup(backupSource(actor), 1000);
    const target = new GradesActor({ log: silentLogger() });
    await target.start();
    const batches: BackupRow[][] = [];
    const { header, rows } = await readBackup(
      backup.body,
      (h) => target.ask({ type: 'restart', position: h.position, streamCreated: h.streamCreated }),
      async (batch) => {
        batches.push(batch);
        await target.ask({ type: 'load', rows: batch });
      },
    );
    expect(header.position).to.equal(2500);
    expect(rows).to.equal(2500);
    expect(batches.map((b) => b.length)).to.deep.equal([1000, 1000, 500]);
    expect(target.peek('u1234')).to.deep.equal({
      user_id: 'u1234',
      postpaid_limit: 0,
      spp: 1234,
      shipping_fee: 0,
      return_fee: 0,
    });
    expect(target.state.position).to.equal(2500);
    await target.stop();
  });

  it('refuses a file that is not a grades backup', async () => {
    const { createGzip } = await import('node:zlib');
    const { Readable } = await import('node:stream');
    const gz = Readable.from(['name,age\nx,1\n']).pipe(createGzip());
    const err = await readBackup(
      gz,
      async () => undefined,
      async () => undefined,
    ).catch((e: unknown) => e);
    expect((err as Error).message).to.match(/not a grades backup/);
  });

  it('lets writes through while a backup is being read', async () => {
    for (let i = 0; i < 3000; i++)
      await actor.ask({
        type: 'stream',
        seq: i + 1,
        msg: { origin: 'o', n: i + 1, updates: [{ user_id: `u${i}`, spp: 1 }] },
        own: false,
      });
    const backup = await openBackup(backupSource(actor), 100);
    const reading = collect(backup.body);
    const write = await actor.ask({ type: 'local', n: 1, update: { user_id: 'during', spp: 9 } });
    expect(write.spp).to.equal(9);
    const lines = gunzipSync(await reading)
      .toString()
      .trimEnd()
      .split('\n');
    // Every record read, and the one written meanwhile too: the cursor walks the live map, which visits
    // records added after it started (the record is new, so it is after every row already read).
    // (Header, metadata row, one mark row, the records.)
    expect(lines.length).to.equal(3004);
    expect(lines.at(-1)).to.equal('during,0,9,0,0,0,0,0,0,,,');
  });
});

describe('csv line parsing', () => {
  it('splits plain and quoted fields', () => {
    expect(parseCsvLine('a,,"b,c","d""e",')).to.deep.equal(['a', '', 'b,c', 'd"e', '']);
  });
  it('refuses an unterminated quote', () => {
    expect(() => parseCsvLine('"abc')).to.throw(/unterminated/);
  });
});
