import { expect } from 'chai';
import { createGzip } from 'node:zlib';
import { Readable } from 'node:stream';
import { backupSource, GradesActor } from '../../../src/grades/grades-actor.js';
import { BACKUP_COLUMNS, openBackup, readBackup } from '../../../src/grades/backup.js';
import type { ReplicationMessage } from '../../../src/grades/model.js';
import { silentLogger } from '../../../src/log.js';

const msg = (origin: string, n: number, spp: number, user = 'u'): ReplicationMessage => ({
  origin,
  n,
  updates: [{ user_id: user, spp }],
});

/** A gzipped backup text: header, metadata row at `position`, then `rows`. */
function gz(rows: string[], position = 5): Readable {
  const meta = BACKUP_COLUMNS.map(() => '');
  meta[meta.length - 1] = String(position);
  return Readable.from([[BACKUP_COLUMNS.join(','), meta.join(','), ...rows].join('\n') + '\n']).pipe(
    createGzip(),
  );
}

describe('grades replay protection', () => {
  let actor: GradesActor;
  beforeEach(async () => {
    actor = new GradesActor({ log: silentLogger() });
    await actor.start();
  });
  afterEach(() => actor.stop());

  it('skips a re-published older message of an origin: values stay, the position moves past it', async () => {
    expect(await actor.ask({ type: 'stream', seq: 10, msg: msg('a/1', 1, 1), own: false })).to.deep.equal({
      status: 'applied',
    });
    await actor.ask({ type: 'stream', seq: 11, msg: msg('a/1', 2, 2), own: false });
    const replay = await actor.ask({ type: 'stream', seq: 12, msg: msg('a/1', 1, 1), own: false });
    expect(replay).to.deep.equal({ status: 'replayed', mark: 2 });
    expect(actor.peek('u')?.spp).to.equal(2);
    expect(actor.state.position).to.equal(12);
    // The latest message replayed is a replay too; another origin's counter is its own.
    expect((await actor.ask({ type: 'stream', seq: 13, msg: msg('a/1', 2, 2), own: false })).status).to.equal(
      'replayed',
    );
    await actor.ask({ type: 'stream', seq: 14, msg: msg('b/1', 1, 5), own: false });
    expect(actor.peek('u')?.spp).to.equal(5);
    // A redelivery at or below the position is not a replay: it is already reflected.
    expect((await actor.ask({ type: 'stream', seq: 11, msg: msg('a/1', 2, 2), own: false })).status).to.equal(
      'reflected',
    );
  });

  it('takes a message of several writes by its last counter: any range it covers is a replay', async () => {
    await actor.ask({
      type: 'stream',
      seq: 3,
      msg: {
        origin: 'a/1',
        n: 4,
        updates: [
          { user_id: 'u', spp: 1 },
          { user_id: 'v', spp: 2 },
        ],
      },
      own: false,
    });
    expect((await actor.ask({ type: 'stream', seq: 4, msg: msg('a/1', 5, 9), own: false })).status).to.equal(
      'replayed',
    );
    expect((await actor.ask({ type: 'stream', seq: 5, msg: msg('a/1', 6, 7), own: false })).status).to.equal(
      'applied',
    );
    expect(actor.peek('u')?.spp).to.equal(7);
  });

  it('its own acknowledged writes: applied once stored, their stream copies still accepted, a replay of them skipped', async () => {
    await actor.ask({
      type: 'stored',
      seq: 10,
      writes: [{ n: 1, update: { user_id: 'u', spp: 1 }, provisional: false }],
    });
    await actor.ask({
      type: 'stored',
      seq: 11,
      writes: [{ n: 2, update: { user_id: 'u', spp: 2 }, provisional: false }],
    });
    // The consumer lags behind the acknowledgements: the copy of write 1 arrives after write 2 was stored. It
    // is not a replay (the stream never delivered it), and applying it again at its own sequence changes nothing.
    expect((await actor.ask({ type: 'stream', seq: 10, msg: msg('me/1', 1, 1), own: true })).status).to.equal(
      'applied',
    );
    expect(actor.peek('u')?.spp).to.equal(2);
    await actor.ask({ type: 'stream', seq: 11, msg: msg('me/1', 2, 2), own: true });
    expect((await actor.ask({ type: 'stream', seq: 12, msg: msg('me/1', 1, 1), own: true })).status).to.equal(
      'replayed',
    );
    expect(actor.peek('u')?.spp).to.equal(2);
    expect(actor.state).to.include({ position: 12, unconfirmed: 0 });
  });

  it('after a restart (a rejoin), an acknowledgement of a later write does not make an earlier stream copy a replay', async () => {
    await actor.ask({ type: 'restart', position: 9, streamCreated: 'c' });
    await actor.ask({
      type: 'stored',
      seq: 11,
      writes: [{ n: 2, update: { user_id: 'v', spp: 2 }, provisional: false }],
    });
    await actor.ask({ type: 'stream', seq: 10, msg: msg('me/1', 1, 1), own: true });
    expect(actor.peek('u')?.spp).to.equal(1);
  });

  it('writes shown provisionally (the outbox log) are confirmed when their messages arrive, and a replay does not revert them', async () => {
    await actor.ask({ type: 'local', n: 1, update: { user_id: 'u', spp: 1 } });
    await actor.ask({ type: 'local', n: 2, update: { user_id: 'u', spp: 2 } });
    expect(actor.state.unconfirmed).to.equal(2);
    expect((await actor.ask({ type: 'stream', seq: 5, msg: msg('me/1', 1, 1), own: true })).status).to.equal(
      'applied',
    );
    expect(actor.state.unconfirmed).to.equal(1);
    expect(actor.peek('u')?.spp).to.equal(2);
    await actor.ask({ type: 'stream', seq: 6, msg: msg('me/1', 2, 2), own: true });
    expect(actor.state.unconfirmed).to.equal(0);
    await actor.ask({ type: 'stream', seq: 7, msg: msg('me/1', 1, 1), own: true });
    expect(actor.peek('u')?.spp).to.equal(2);
    // And confirmed through the acknowledgement path instead: the same end.
    await actor.ask({ type: 'local', n: 3, update: { user_id: 'u', spp: 3 } });
    await actor.ask({
      type: 'stored',
      seq: 8,
      writes: [{ n: 3, update: { user_id: 'u', spp: 3 }, provisional: true }],
    });
    await actor.ask({ type: 'stream', seq: 8, msg: msg('me/1', 3, 3), own: true });
    await actor.ask({ type: 'stream', seq: 9, msg: msg('me/1', 2, 2), own: true });
    expect(actor.peek('u')?.spp).to.equal(3);
    expect(actor.state).to.include({ unconfirmed: 0, position: 9 });
  });

  it('a restart installs the marks it is given and drops the old ones', async () => {
    await actor.ask({ type: 'stream', seq: 1, msg: msg('old/1', 5, 1), own: false });
    await actor.ask({ type: 'restart', position: 10, streamCreated: 'c', marks: new Map([['a/1', 5]]) });
    expect((await actor.ask({ type: 'stream', seq: 11, msg: msg('a/1', 5, 1), own: false })).status).to.equal(
      'replayed',
    );
    expect(
      (await actor.ask({ type: 'stream', seq: 12, msg: msg('old/1', 5, 1), own: false })).status,
    ).to.equal('applied');
    expect((await actor.ask({ type: 'stream', seq: 13, msg: msg('a/1', 6, 4), own: false })).status).to.equal(
      'applied',
    );
    expect(actor.peek('u')?.spp).to.equal(4);
  });

  it('a backup carries the marks; a joiner that loaded it skips a replay of a message from before its position', async () => {
    await actor.ask({ type: 'stream', seq: 1, msg: msg('a,"1"', 1, 1), own: false });
    await actor.ask({ type: 'stream', seq: 2, msg: msg('a,"1"', 2, 2), own: false });
    await actor.ask({ type: 'stream', seq: 3, msg: msg('b/1', 7, 3, 'w'), own: false });
    const backup = await openBackup(backupSource(actor), 10);
    const joiner = new GradesActor({ log: silentLogger() });
    await joiner.start();
    try {
      const { header, rows } = await readBackup(
        backup.body,
        (h) =>
          joiner.ask({
            type: 'restart',
            position: h.position,
            streamCreated: h.streamCreated,
            marks: h.marks,
          }),
        (batch) => joiner.ask({ type: 'load', rows: batch }),
      );
      expect([...header.marks]).to.deep.equal([
        ['a,"1"', 2],
        ['b/1', 7],
      ]);
      expect(rows).to.equal(2);
      // The replay lands after the backup's position: the joiner would apply it without the marks.
      const replay = await joiner.ask({ type: 'stream', seq: 4, msg: msg('a,"1"', 1, 1), own: false });
      expect(replay).to.deep.equal({ status: 'replayed', mark: 2 });
      expect(joiner.peek('u')?.spp).to.equal(2);
      expect(joiner.state.position).to.equal(4);
    } finally {
      await joiner.stop();
    }
  });

  it('reads mark rows only between the metadata row and the first record, and validates them strictly', async () => {
    const mark = (origin: string, n: string) => `,,,,,,,,,${origin},,${n}`;
    const record = 'u,0,1,0,0,0,1,0,0,,,';
    const read = (rows: string[]) =>
      readBackup(
        gz(rows),
        async () => undefined,
        async () => undefined,
      ).then(
        (r) => r.header.marks,
        (e: unknown) => e as Error,
      );
    expect([
      ...((await read([mark('a', '3'), mark('b', '9007199254740991'), record])) as Map<string, number>),
    ]).to.deep.equal([
      ['a', 3],
      ['b', 9007199254740991],
    ]);
    // Marks and no record at all: still reported.
    expect([...((await read([mark('a', '3')])) as Map<string, number>)]).to.deep.equal([['a', 3]]);
    for (const bad of [
      [mark('', '3')],
      [mark('a', '0')],
      [mark('a', '-1')],
      [mark('a', '1.5')],
      [mark('a', '')],
      [mark('a', '9007199254740992')],
      [mark('x'.repeat(201), '1')],
      [mark('a', '1'), mark('a', '2')],
      [',1,,,,,,,,a,,1'],
      [',,,,,,,,,a,2026-01-01T00:00:00Z,1'],
      [record, mark('a', '1')],
    ]) {
      const result = await read(bad);
      expect(result, bad.join(' / ')).to.be.instanceOf(Error);
      expect((result as Error).message).to.match(/malformed|second mark/);
    }
  });

  it('reports the header only after the mark rows, before any record', async () => {
    const events: string[] = [];
    await readBackup(
      gz([',,,,,,,,,a,,4', 'u,0,1,0,0,0,1,0,0,,,']),
      async (h) => {
        events.push(`header ${[...h.marks].join(';')}`);
      },
      async (rows) => {
        events.push(`rows ${rows.length}`);
      },
    );
    expect(events).to.deep.equal(['header a,4', 'rows 1']);
  });
});
