import { pino, type Logger, type LevelWithSilent } from 'pino';

/**
 * Structured JSON logs on stdout. Paths that could carry secrets are redacted as a second line of defence;
 * the first is never passing secrets to the logger at all.
 */
export function createLogger(level: LevelWithSilent, base: Record<string, unknown> = {}): Logger {
  return pino({
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
  });
}

/** A logger that writes nothing, for tests and benchmarks. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
