import { Writable } from 'node:stream';
import { pino, type Level, type Logger } from 'pino';

/** A pino logger at `level` whose lines are kept, parsed, for tests that assert what was logged. */
export function recordingLogger(level: Level = 'info'): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) {
        if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { log: pino({ level }, sink), lines };
}
