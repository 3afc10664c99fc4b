import { expect } from 'chai';
import sinon from 'sinon';
import { execFileSync, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { openSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../../src/errors.js';
import { STDOUT_MAX_PENDING, streamTarget } from '../../../src/log.js';
import {
  AUDIT_FLUSH_MS,
  AUDIT_MAX_WRITE,
  fileAuditSink,
  fileTarget,
  LineBatches,
  RequestIds,
  TokenAudit,
  type AuditSink,
} from '../../../src/tokens/audit.js';

const AUDIT_MODULE = new URL('../../../src/tokens/audit.ts', import.meta.url).href;

/** Runs `script` (an ES module) in a child process; resolves with how it ended. */
function runModule(script: string): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: 'inherit',
    });
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

/** A sink that keeps its lines. */
function memorySink(): AuditSink & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    write: (line) => void lines.push(line),
    close: () => Promise.resolve(),
  };
}

describe('token audit log', () => {
  it('writes one JSON line per decision with every member, null where unknown', () => {
    const sink = memorySink();
    const audit = new TokenAudit({ sink, replica: 'r1', clock: { now: () => 1_700_000_000_000 } });
    audit.record('req-1', {
      grant: 'client_credentials',
      clientId: 'svc-a',
      subject: 'svc-a',
      audience: 'orders',
      jti: 'j-1',
      kid: 'k-1',
    });
    audit.record('req-2', { grant: 'token_exchange', provider: 'acme' }, 'invalid_request');
    expect(sink.lines).to.have.length(2);
    expect(sink.lines.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n'))).to.equal(true);
    expect(JSON.parse(sink.lines[0]!)).to.deep.equal({
      audit: 'token',
      time: 1_700_000_000_000,
      replica: 'r1',
      requestId: 'req-1',
      grant: 'client_credentials',
      clientId: 'svc-a',
      provider: null,
      externalSubject: null,
      subject: 'svc-a',
      audience: 'orders',
      scope: null,
      jti: 'j-1',
      kid: 'k-1',
      outcome: 'issued',
      error: null,
    });
    expect(JSON.parse(sink.lines[1]!)).to.include({
      requestId: 'req-2',
      provider: 'acme',
      outcome: 'refused',
      error: 'invalid_request',
    });
  });

  describe('file sink', () => {
    let dir: string;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'audit-'));
    });
    after(() => rm(dir, { recursive: true, force: true }));

    it('buffers lines and has written every one, whole and in order, once closed', async () => {
      const path = join(dir, 'nested', 'audit.log');
      const sink = fileAuditSink({ path });
      const lines = Array.from(
        { length: 500 },
        (_, i) => `${JSON.stringify({ n: i, pad: 'x'.repeat(i % 90) })}\n`,
      );
      for (const line of lines) sink.write(line);
      await sink.close();
      expect(await readFile(path, 'utf8')).to.equal(lines.join(''));
    });

    it('has written a full batch to a file before write() returns: a SIGKILL right after loses none of it', async () => {
      const path = join(dir, 'killed.log');
      const line = `${JSON.stringify({ pad: 'x'.repeat(500) })}\n`;
      const perBatch = Math.floor(AUDIT_MAX_WRITE / Buffer.byteLength(line));
      const { signal } = await runModule(`
        const { fileAuditSink } = await import(${JSON.stringify(AUDIT_MODULE)});
        const sink = fileAuditSink({ path: ${JSON.stringify(path)} });
        // The last line does not fit the first batch, so that batch is written; the last line is still gathering.
        for (let i = 0; i <= ${perBatch}; i++) sink.write(${JSON.stringify(line)});
        process.kill(process.pid, 'SIGKILL');
      `);
      expect(signal).to.equal('SIGKILL');
      expect(await readFile(path, 'utf8')).to.equal(line.repeat(perBatch));
    });

    it('a batch the file cannot take is dropped and counted, never thrown into the request or written twice', async () => {
      const written: string[] = [];
      let fail = true;
      const dropped: number[] = [];
      const sink = new LineBatches(
        {
          write: (text) => {
            if (fail) return false;
            written.push(text);
            return true;
          },
          close: () => Promise.resolve(),
        },
        (lines) => dropped.push(lines),
      );
      // 1,024 bytes a line (n is one digit): four fill a batch.
      const line = (i: number) => `${JSON.stringify({ n: i, pad: 'x'.repeat(1007) })}\n`;
      for (let i = 0; i < 8; i++) expect(() => sink.write(line(i))).not.to.throw();
      expect(dropped).to.deep.equal([4, 4]);
      fail = false;
      sink.write(line(8));
      sink.write(line(9));
      await sink.close();
      // What was dropped is gone for good; what came after is written once.
      expect(written).to.deep.equal([line(8) + line(9)]);
      expect(dropped).to.deep.equal([4, 4]);
    });

    it('a file that fails its writes (a full disk) refuses batches without throwing', () => {
      const target = fileTarget(openSync('/dev/full', 'w'));
      expect(target.write('{"n":1}\n')).to.equal(false);
      return target.close();
    });

    it('a FIFO with no reader is refused at start-up, not waited on', () => {
      const fifo = join(dir, 'audit.fifo');
      execFileSync('mkfifo', [fifo]);
      expect(() => fileAuditSink({ path: fifo }))
        .to.throw(ConfigError)
        .with.property('message')
        .that.matches(/^TOKENS_AUDIT_LOG: cannot open .*audit\.fifo/);
    });

    it('a path that is not a regular file (a pipe or device could block writes) stops start-up', () => {
      expect(() => fileAuditSink({ path: '/dev/null' }))
        .to.throw(ConfigError)
        .with.property('message')
        .that.matches(/^TOKENS_AUDIT_LOG: \/dev\/null is not a regular file/);
    });

    it('gathers lines into writes of whole lines of at most PIPE_BUF bytes; a longer line goes alone', async () => {
      const clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      try {
        const writes: string[] = [];
        const sink = new LineBatches({
          write: (text) => writes.push(text) > 0,
          close: () => Promise.resolve(),
        });
        // Multi-byte characters: the bound is in bytes, not characters.
        const lines = Array.from(
          { length: 1000 },
          (_, i) => `${JSON.stringify({ n: i, who: 'é'.repeat(i % 50) })}\n`,
        );
        const long = `${JSON.stringify({ pad: 'x'.repeat(AUDIT_MAX_WRITE) })}\n`;
        lines.splice(500, 0, long);
        for (const line of lines) sink.write(line);
        const beforeTimer = writes.length;
        expect(beforeTimer).to.be.above(10);
        // What is left waits at most AUDIT_FLUSH_MS.
        await clock.tickAsync(AUDIT_FLUSH_MS);
        expect(writes.length).to.equal(beforeTimer + 1);
        expect(writes.join('')).to.equal(lines.join(''));
        for (const text of writes) {
          expect(text.endsWith('\n')).to.equal(true);
          if (text !== long) expect(Buffer.byteLength(text)).to.be.at.most(AUDIT_MAX_WRITE);
        }
        expect(writes).to.include(long);
        // Full batches: each would have overflowed with the first line of the next.
        for (let i = 0; i + 1 < writes.length; i++) {
          const next = writes[i + 1]!;
          const firstOfNext = next.slice(0, next.indexOf('\n') + 1);
          expect(Buffer.byteLength(writes[i]!) + Buffer.byteLength(firstOfNext)).to.be.above(AUDIT_MAX_WRITE);
        }
        sink.write('{"last":true}\n');
        await sink.close();
        expect(writes.at(-1)).to.equal('{"last":true}\n');
        sink.write('{"after":"close"}\n');
        await clock.tickAsync(AUDIT_FLUSH_MS);
        expect(writes.join('')).to.equal(`${lines.join('')}{"last":true}\n`);
      } finally {
        clock.restore();
      }
    });

    it('an exit that never closed the sink (a crash) still writes every line gathered', async () => {
      const path = join(dir, 'crash.log');
      const script = `
        const { fileAuditSink } = await import(${JSON.stringify(AUDIT_MODULE)});
        const sink = fileAuditSink({ path: ${JSON.stringify(path)} });
        for (let i = 0; i < 2000; i++) sink.write(JSON.stringify({ n: i }) + '\\n');
        setImmediate(() => process.exit(3));
      `;
      const { code } = await runModule(script);
      expect(code).to.equal(3);
      const written = (await readFile(path, 'utf8')).split('\n').filter(Boolean);
      expect(written).to.have.length(2000);
      expect(written.at(-1)).to.equal('{"n":1999}');
    });

    it('a path that cannot be opened stops start-up with a configuration error naming the setting', async () => {
      const file = join(dir, 'a-file');
      await writeFile(file, '');
      expect(() => fileAuditSink({ path: join(file, 'audit.log') }))
        .to.throw(ConfigError)
        .with.property('message')
        .that.matches(/^TOKENS_AUDIT_LOG: cannot open /);
    });
  });

  describe('stdout sink', () => {
    /** A stream whose reader lags: it holds what it is given until drained. */
    function laggingStream() {
      const events = new EventEmitter();
      const stream = {
        held: [] as string[],
        writableLength: 0,
        destroyed: false,
        write(text: string) {
          stream.held.push(text);
          stream.writableLength += Buffer.byteLength(text);
          return true;
        },
        once: (event: 'drain' | 'close', listener: () => void) => events.once(event, listener),
        drain() {
          stream.writableLength = 0;
          events.emit('drain');
        },
      };
      return stream;
    }

    it('hands batches to the stream without waiting; past the bound, or once the stream failed, refuses them', () => {
      const stream = laggingStream();
      const target = streamTarget(stream, 10);
      expect(target.write('{"n":1}\n')).to.equal(true); // 8 bytes waiting: within the bound
      expect(target.write('{"n":2}\n')).to.equal(true); // 16: past it, for the next batch
      expect(target.write('{"n":3}\n')).to.equal(false);
      stream.drain();
      expect(target.write('{"n":4}\n')).to.equal(true);
      expect(stream.held).to.deep.equal(['{"n":1}\n', '{"n":2}\n', '{"n":4}\n']);
      stream.destroyed = true;
      expect(target.write('{"n":5}\n')).to.equal(false);
    });

    it('closes once what the stream holds has been written', async () => {
      const stream = laggingStream();
      const target = streamTarget(stream);
      target.write('{"n":1}\n');
      let closed = false;
      const closing = target.close().then(() => (closed = true));
      await new Promise((resolve) => setImmediate(resolve));
      expect(closed).to.equal(false);
      stream.drain();
      await closing;
      expect(closed).to.equal(true);
    });
    it('a reader that never drains holds closing only so long', async () => {
      const clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      try {
        const stream = laggingStream();
        const target = streamTarget(stream, STDOUT_MAX_PENDING, 2000);
        target.write('{"n":1}\n');
        let closed = false;
        void target.close().then(() => (closed = true));
        await clock.tickAsync(1999);
        expect(closed).to.equal(false);
        await clock.tickAsync(1);
        expect(closed).to.equal(true);
      } finally {
        clock.restore();
      }
    });
  });

  describe('request ids', () => {
    it('keeps a plausible X-Request-Id and names other requests uniquely', () => {
      const ids = new RequestIds();
      expect(ids.of({ 'x-request-id': 'abc-123' })).to.equal('abc-123');
      const made = [ids.of({}), ids.of({ 'x-request-id': 'bad id with spaces' }), ids.of({})];
      expect(new Set(made).size).to.equal(3);
      expect(made.every((id) => /^[A-Za-z0-9_-]+-[0-9a-z]+$/.test(id))).to.equal(true);
      expect(ids.of({ 'x-request-id': 'x'.repeat(129) })).not.to.have.length(129);
    });
  });
});
