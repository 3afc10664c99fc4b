/**
 * What the audit log's writing costs per line, in process CPU (main thread and libuv's pool together, read with
 * `process.cpuUsage`), for the sinks the service uses: whole-line batches (`LineBatches`) onto a Node stream on the
 * pipe (`streamTarget`, as on stdout: written at once, only what the pipe refuses held), and onto a regular file
 * with one synchronous write each (`fileTarget`); next to what they replaced: sonic-boom alone, writing
 * asynchronously on libuv's thread pool (`minLength` 2048, `maxWrite` 4096, `periodicFlush` 100), and the same
 * batches handed to sonic-boom. The pipe is drained by `cat`, as stdout is under a container runtime. A sink that
 * discards its lines shows what building them costs. Lines come a few at a time between turns of the event loop,
 * as requests bring them. The sinks take turns, each round starting with another; medians and ranges are printed.
 * CPU only: a sink that waited (none of these blocks) would look cheaper than it is.
 *
 *   node --import tsx scripts/bench-audit.ts [--rounds 7] [--seconds 2]
 */
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import {
  AUDIT_FLUSH_MS,
  AUDIT_MAX_WRITE,
  fileTarget,
  LineBatches,
  type AuditSink,
} from '../src/tokens/audit.js';
import { streamTarget } from '../src/log.js';
import { median } from './lib/load.js';

const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '7' }, seconds: { type: 'string', default: '2' } },
});
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
/** Lines written per turn of the event loop. */
const PER_TURN = 8;

const dir = mkdtempSync(join(tmpdir(), 'bench-audit-'));
const fifo = join(dir, 'pipe');
execFileSync('mkfifo', [fifo]);
const drain = spawn('sh', ['-c', `cat "${fifo}" > /dev/null`], { stdio: 'ignore' });
const fd = openSync(fifo, 'w');

const line = (i: number) =>
  `${JSON.stringify({
    audit: 'token',
    time: Date.now(),
    replica: 'r1',
    requestId: `bench-${i.toString(36)}`,
    grant: 'urn:ietf:params:oauth:grant-type:token-exchange',
    clientId: 'bench-client',
    provider: 'acme',
    externalSubject: `user-${i % 1000}@acme.example`,
    subject: `acme|user-${i % 1000}`,
    audience: ['orders'],
    scope: null,
    jti: '6f1c1c0e-5d1b-4b8e-9d1a-3c1f0b8f2a9e',
    kid: 'k-2026-11-27T00:00:00Z-abcd',
    outcome: 'issued',
    error: null,
  })}\n`;

/** The pipe as a Node stream, as `process.stdout` is on a pipe: writes at once, holds only what the pipe refuses. */
const pipe = new Socket({ fd, readable: false, writable: true });

/** What a LineBatches round leaves gathered is written within AUDIT_FLUSH_MS; then the stream is drained. */
const settle = async (stream?: { writableLength: number; once(e: 'drain', l: () => void): unknown }) => {
  await new Promise((r) => setTimeout(r, AUDIT_FLUSH_MS + 10));
  if (stream && stream.writableLength > 0) await new Promise<void>((r) => stream.once('drain', r));
};

const sinks: Record<string, () => AuditSink> = {
  'sonic-boom alone': () => {
    const stream = pino.destination({
      fd,
      sync: false,
      minLength: 2048,
      maxWrite: AUDIT_MAX_WRITE,
      periodicFlush: 100,
    });
    return {
      write: (l) => void stream.write(l),
      close: () => new Promise<void>((r) => stream.flush(() => r())),
    };
  },
  'batches, sonic-boom': () => {
    const stream = pino.destination({ fd, sync: false, minLength: 0, maxWrite: AUDIT_MAX_WRITE });
    const sink = new LineBatches({ write: (text) => stream.write(text), close: () => Promise.resolve() });
    return {
      write: (l) => sink.write(l),
      close: async () => {
        await settle();
        await new Promise<void>((r) => stream.flush(() => r()));
      },
    };
  },
  'batches, stream': () => {
    const sink = new LineBatches(streamTarget(pipe));
    return { write: (l) => sink.write(l), close: () => settle(pipe) };
  },
  'batches, file': () => {
    const sink = new LineBatches(fileTarget(openSync(join(dir, 'audit.log'), 'w')));
    return { write: (l) => sink.write(l), close: () => sink.close() };
  },
  discard: () => ({ write: () => undefined, close: () => Promise.resolve() }),
};
/** The service's sink on stdout, compared with each of the others. */
const SERVICE = 'batches, stream';

/** CPU microseconds per line while `sink` takes lines for SECONDS. */
async function round(make: () => AuditSink): Promise<number> {
  const sink = make();
  let n = 0;
  const start = process.cpuUsage();
  const until = Date.now() + SECONDS * 1000;
  await new Promise<void>((resolve) => {
    const turn = () => {
      for (let i = 0; i < PER_TURN; i++) sink.write(line(n++));
      if (Date.now() < until) setImmediate(turn);
      else resolve();
    };
    turn();
  });
  await sink.close();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / n;
}

// Each round's LineBatches keeps its exit hook (the pipe is shared, so it is never closed).
process.setMaxListeners(2 * ROUNDS + 10);
const results: Record<string, number[]> = Object.fromEntries(Object.keys(sinks).map((k) => [k, []]));
const names = Object.keys(sinks);
for (let r = 0; r < ROUNDS; r++) {
  // Each round starts with a different sink, so what one leaves behind (garbage, a pipe still draining) does not
  // always land on the same next one.
  for (let k = 0; k < names.length; k++) {
    const name = names[(r + k) % names.length] as string;
    results[name]!.push(await round(sinks[name] as () => AuditSink));
  }
}
console.log(
  `audit sink: ${ROUNDS} rounds × ${SECONDS}s each, ${PER_TURN} lines a turn, into a pipe (the file sink into a file); CPU per line (line built included)`,
);
for (const [name, us] of Object.entries(results)) {
  console.log(
    `  ${name.padEnd(18)} ${median(us).toFixed(2)} µs  (${Math.min(...us).toFixed(2)}–${Math.max(...us).toFixed(2)})`,
  );
}
for (const name of Object.keys(sinks)) {
  if (name === SERVICE || name === 'discard') continue;
  const ratios = results[name]!.map((b, i) => b / results[SERVICE]![i]!);
  console.log(
    `  ${SERVICE} against ${name}: ${median(ratios).toFixed(2)}x less CPU per line (median of paired rounds, ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`,
  );
}
const writing = (name: string) => median(results[name]!.map((us, i) => us - results.discard![i]!)).toFixed(2);
console.log(
  `  writing alone (each sink less the discarding one, median of paired rounds): ${Object.keys(sinks)
    .filter((n) => n !== 'discard')
    .map((n) => `${n} ${writing(n)} µs`)
    .join(', ')}`,
);
// `cat` ends by itself once this process has exited and closed the pipe; ended before, it would leave sonic-boom's
// exit-time flush of the pipe waiting for a reader that is gone.
drain.unref();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
