import { pino, type Logger, type LevelWithSilent } from 'pino';

/**
 * Structured JSON logs on stdout. Paths that could carry secrets are redacted as a second line of defence;
 * the first is never passing secrets to the logger at all. Lines go through `process.stdout` ({@link
 * stdoutStream}), as the token audit log's batches do when it shares stdout, so the two queue in one order and
 * never tear each other's lines. On a pipe, Node writes each line at once on the main thread, and only what the pipe
 * cannot take yet waits in memory for the reader (up to a bound): a reader that lags never blocks the service. (pino's default,
 * sonic-boom, writes on libuv's thread pool, where a write of more than PIPE_BUF bytes may interleave with another
 * writer's, and its synchronous mode sleeps the whole process while a pipe is full.)
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

/** The most bytes of log lines stdout may hold unwritten (its reader behind) before lines are dropped. */
const LOG_MAX_PENDING = 8 * 1024 * 1024;

/**
 * stdout for the service log: past {@link LOG_MAX_PENDING} bytes waiting for a lagging reader, lines are dropped
 * rather than pile up in memory (an error logged per request, with nobody reading, would otherwise grow without
 * bound); stderr says so once per such spell.
 */
function boundedStdout(): { write(line: string): void } {
  const out = stdoutStream();
  let dropping = false;
  return {
    write: (line) => {
      if (out.destroyed) return;
      if (out.writableLength > LOG_MAX_PENDING) {
        if (!dropping) process.stderr.write('stdout is not being read: log lines are dropped until it is\n');
        dropping = true;
        return;
      }
      dropping = false;
      out.write(line);
    },
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
