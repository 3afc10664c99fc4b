import pg from 'pg';
import type { Logger } from 'pino';

/** Settings of {@link createPgPool}. */
export interface PgPoolOptions {
  readonly url: string;
  readonly poolMax: number;
  /** pg's own per-query deadline; longer than the key store's so the key store always gives up first. */
  readonly queryTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly applicationName: string;
}

/**
 * A pg pool with connect and query timeouts, so a stalled server never holds a client forever, and an error
 * listener, so an idle client whose connection dies is logged instead of crashing the process.
 */
export function createPgPool(options: PgPoolOptions, log: Logger): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolMax,
    connectionTimeoutMillis: options.connectTimeoutMs,
    query_timeout: options.queryTimeoutMs,
    statement_timeout: options.queryTimeoutMs,
    idleTimeoutMillis: 30_000,
    application_name: options.applicationName,
  });
  pool.on('error', (err) => log.warn({ err: { message: err.message } }, 'idle postgres client failed'));
  return pool;
}
