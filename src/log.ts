import { pino, type Logger, type LevelWithSilent } from 'pino';

/**
 * Structured JSON logs on stdout. Paths that could carry secrets are redacted as a second line of defence;
 * the first is never passing secrets to the logger at all. Lines are written synchronously, from the main thread,
 * as the token audit log's batches are when it shares stdout: two writers on one thread never tear each other's
 * lines, whatever their size, and a crash loses no line already logged. (pino's default writes on libuv's thread
 * pool, where a write of more than PIPE_BUF bytes may interleave with another writer's.) The service logs events,
 * and failures, not every request, so a system call per line costs nothing measurable.
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
    pino.destination({ dest: 1, sync: true }),
  );
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
