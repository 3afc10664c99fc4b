import { expect } from 'chai';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OutboxLog, OutboxLogError } from '../../../src/grades/outbox-log.js';

describe('grades outbox log', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'outbox-log-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('keeps its origin and its writes across opens; a rewrite keeps only what it is given and the next counter', async () => {
    const first = await OutboxLog.open(dir, () => 'r1/abc');
    expect(first).to.deep.include({ origin: 'r1/abc', writes: [], nextN: 1 });
    await first.log.append([
      { n: 1, update: { user_id: 'a', spp: 1 } },
      { n: 2, update: { user_id: 'b' } },
    ]);
    await first.log.append([{ n: 3, update: { user_id: 'c', return_fee: -3 } }]);
    await first.log.close();
    const second = await OutboxLog.open(dir, () => 'another');
    expect(second.origin).to.equal('r1/abc');
    expect(second.writes.map((w) => w.n)).to.deep.equal([1, 2, 3]);
    expect(second.nextN).to.equal(4);
    await second.log.rewrite([{ n: 3, update: { user_id: 'c', return_fee: -3 } }], 4);
    await second.log.append([{ n: 4, update: { user_id: 'd' } }]);
    await second.log.close();
    const third = await OutboxLog.open(dir, () => 'another');
    expect(third.writes).to.deep.equal([
      { n: 3, update: { user_id: 'c', return_fee: -3 } },
      { n: 4, update: { user_id: 'd' } },
    ]);
    await third.log.rewrite([], 9);
    await third.log.close();
    expect(await readFile(join(dir, 'outbox.jsonl'), 'utf8')).to.equal('{"next":9}\n');
    const fourth = await OutboxLog.open(dir, () => 'x');
    expect(fourth.nextN).to.equal(9);
    await fourth.log.close();
  });

  it('ignores a last line torn by a crash during its append (never acknowledged), refuses a malformed one before it', async () => {
    const { log } = await OutboxLog.open(dir, () => 'r1/abc');
    await log.append([{ n: 1, update: { user_id: 'a', spp: 1 } }]);
    await log.close();
    await appendFile(join(dir, 'outbox.jsonl'), '{"n":2,"upda');
    const reopened = await OutboxLog.open(dir, () => 'x');
    expect(reopened.writes.map((w) => w.n)).to.deep.equal([1]);
    // The torn bytes are gone: the next append starts a line of its own.
    await reopened.log.append([{ n: 2, update: { user_id: 'b' } }]);
    await reopened.log.close();
    const again = await OutboxLog.open(dir, () => 'x');
    expect(again.writes.map((w) => w.n)).to.deep.equal([1, 2]);
    await again.log.close();
    await writeFile(join(dir, 'outbox.jsonl'), '{"n":1,"update":{"user_id":"a"}}\nnot json\n{"next":5}\n');
    const err = await OutboxLog.open(dir, () => 'x').catch((e: unknown) => e);
    expect(err).to.be.instanceOf(OutboxLogError);
    expect(String(err)).to.match(/line 2 is malformed/);
  });
});
