import { pino, type Logger, type LevelWithSilent } from 'pino';

/**
 * Structured JSON logs on stdout. Paths that could carry secrets are redacted as a second line of defence;
 * the first is never passing secrets to the logger at all. Lines go through `process.stdout` ({@link
 * stdoutStream}), as the token audit log's batches do when it shares stdout, so the two queue in one order and
 * never tear each other's lines. On a pipe, Node writes each line at once on the main thread, and only what the
 * pipe cannot take yet waits in memory for the reader, up to a bound: a reader that lags never blocks the service.
 * (pino's default, sonic-boom, writes on libuv's thread pool, where a write of more than PIPE_BUF bytes may
 * interleave with another writer's, and its synchronous mode sleeps the whole process while a pipe is full.)
 */
export function createLogger(level: LevelWithSilent, base: Record<string, unknown> = {}): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid, ...base },
      redact: {
        paths: [
          'password',
          '*.password',
          'secret',
          '*.secret',
          'privateKey',
          '*.privateKey',
          'authorization',
          '*.authorization',
          'headers.authorization',
          'databaseUrl',
          '*.databaseUrl',
        ],
        censor: '[redacted]',
      },
      serializers: { err: pino.stdSerializers.err },
    },
    boundedStdout(),
  );
}

/**
 * stdout for the service log, through {@link streamTarget}: past its bound, lines wait for no lagging reader but are
 * dropped rather than pile up in memory (an error logged per request, with nobody reading, would otherwise grow
 * without bound); stderr says so once per such spell.
 */
function boundedStdout(): { write(line: string): void } {
  const target = streamTarget(stdoutStream());
  let dropping = false;
  return {
    write: (line) => {
      const written = target.write(line);
      if (!written && !dropping)
        process.stderr.write('stdout refuses log lines: they are dropped until it takes them\n');
      dropping = !written;
    },
  };
}

/**
 * The most bytes stdout may hold unwritten (its reader behind) before lines are refused: about 20,000 audit lines.
 */
export const STDOUT_MAX_PENDING = 8 * 1024 * 1024;
/** How long closing waits for stdout's reader to take what is still held. */
export const STDOUT_CLOSE_WAIT_MS = 2000;

/** Where {@link LineBatches} hands its batches. */
export interface BatchTarget {
  /** Writes a batch of whole lines, or returns false if it cannot (they are lost). Never throws. */
  write(text: string): boolean;
  /** Resolves once what was written has left the process (or cannot); releases the destination. */
  close(): Promise<void>;
}

/** What {@link streamTarget} needs of stdout (a `net.Socket` on a pipe, a `tty.WriteStream`, a file stream). */
export interface OutputStream {
  write(text: string): unknown;
  readonly writableLength: number;
  readonly destroyed: boolean;
  once(event: 'drain' | 'close', listener: () => void): unknown;
}

/**
 * Writes onto a stream, `process.stdout` for both logs, so that the service log's lines and the audit log's
 * batches (`src/tokens/audit.ts`) queue in one order and never interleave. On a pipe, Node writes at once, on the main thread, and only what
 * the pipe cannot take yet waits in the stream for it to drain: no thread pool, and no waiting on the request path
 * (synchronous writes would freeze the whole process while the reader lags). Past `maxPending` bytes waiting, or
 * once the stream failed (its reader gone), writes are refused. Closing waits up to `closeWaitMs` for the reader.
 */
export function streamTarget(
  stream: OutputStream,
  maxPending = STDOUT_MAX_PENDING,
  closeWaitMs = STDOUT_CLOSE_WAIT_MS,
): BatchTarget {
  return {
    write: (text) => {
      if (stream.destroyed || stream.writableLength > maxPending) return false;
      stream.write(text);
      return true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (stream.destroyed || stream.writableLength === 0) return resolve();
        stream.once('drain', resolve);
        stream.once('close', resolve);
        // A reader that has stopped would hold shutdown for good: what it has not taken by then is lost.
        setTimeout(resolve, closeWaitMs).unref();
      }),
  };
}

let stdoutReady = false;

/**
 * `process.stdout`, the one stream both logs write to. An error on it (EPIPE: the reader is gone) is noted on
 * stderr once instead of being thrown; the stream is then destroyed, and later lines are dropped.
 */
export function stdoutStream(): NodeJS.WriteStream {
  if (!stdoutReady) {
    stdoutReady = true;
    process.stdout.once('error', (err: NodeJS.ErrnoException) => {
      process.stdout.on('error', () => undefined);
      process.stderr.write(
        `stdout failed (${err.code ?? err.message}): log lines are dropped from here on\n`,
      );
    });
  }
  return process.stdout;
}

/** A logger that writes nothing, for tests and benchmarks. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/**
 * A URL fit for a log line, an error or `/readyz`: user, password, query and fragment removed (a presigned URL
 * carries its credentials in the query). A URL with none of them is returned as it was written.
 */
export function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    if (!u.username && !u.password && !u.search && !u.hash) return url;
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    return u.toString();
  } catch {
    return '(unparseable url)';
  }
}
