import { randomBytes } from 'node:crypto';
import { mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import type { IncomingHttpHeaders } from 'node:http';
import { pino } from 'pino';
import type { Clock } from '../clock.js';
import { ConfigError } from '../errors.js';

/**
 * What is known of one token decision, noted by the token service as it handles the request. Only values the
 * service itself established go here (an authenticated client's id, a verified subject, what was granted), never
 * anything merely presented, so a token or secret pasted into the wrong parameter cannot reach the audit log.
 */
export interface TokenDecision {
  /** `token_exchange`, `client_credentials`, or `unsupported`; null when the request had none. */
  grant?: string;
  /** The issued token's `client_id`, or the authenticated client of a refused request. */
  clientId?: string;
  /** The provider (its configured name) whose subject token was read. */
  provider?: string;
  /** The subject token's verified subject claim, as the provider wrote it. */
  externalSubject?: string;
  /** The issued token's `sub`, or the internal subject mapped before a later refusal. */
  subject?: string;
  audience?: string | readonly string[];
  scope?: string;
  jti?: string;
  kid?: string;
}

/** Where audit lines go; written whole, one JSON line per call. */
export interface AuditSink {
  write(line: string): void;
  /** Writes what is buffered and releases the destination. */
  close(): Promise<void>;
}

/** Settings of {@link TokenAudit}. */
export interface TokenAuditOptions {
  readonly sink: AuditSink;
  readonly replica: string;
  readonly clock: Clock;
}

/**
 * The token audit log (E3): one JSON line per token decision, issued or refused, whatever the grant. Every line
 * has the same members (null when unknown), so a log pipeline can map them once; `time` is epoch milliseconds,
 * as in the service log beside it.
 */
export class TokenAudit {
  readonly #o: TokenAuditOptions;

  constructor(options: TokenAuditOptions) {
    this.#o = options;
  }

  /** Writes the line of one decision: `error` is the OAuth error code of a refusal. */
  record(requestId: string, decision: TokenDecision, error?: string): void {
    const d = decision;
    this.#o.sink.write(
      `${JSON.stringify({
        audit: 'token',
        time: this.#o.clock.now(),
        replica: this.#o.replica,
        requestId,
        grant: d.grant ?? null,
        clientId: d.clientId ?? null,
        provider: d.provider ?? null,
        externalSubject: d.externalSubject ?? null,
        subject: d.subject ?? null,
        audience: d.audience ?? null,
        scope: d.scope ?? null,
        jti: d.jti ?? null,
        kid: d.kid ?? null,
        outcome: error === undefined ? 'issued' : 'refused',
        error: error ?? null,
      })}\n`,
    );
  }

  /** Flushes and closes the destination (the last step of shutdown for the audit log). */
  close(): Promise<void> {
    return this.#o.sink.close();
  }
}

/**
 * An asynchronous sink on stdout or a file (sonic-boom, through pino): lines gather in memory and leave in writes
 * of up to 4 KiB, at least every 100 ms, so the log's volume costs the request path a string append and no
 * system call. Writes of whole lines no larger than PIPE_BUF cannot be torn by the service log writing to the
 * same pipe. Whatever is buffered is written at shutdown, and by pino's exit hook on a crash.
 */
export function fileAuditSink(destination: 'stdout' | { readonly path: string }): AuditSink {
  const stream = pino.destination({
    fd: destination === 'stdout' ? 1 : openForAppend(destination.path),
    sync: false,
    minLength: 2048,
    maxWrite: 4096,
    periodicFlush: 100,
  });
  return {
    write: (line) => {
      stream.write(line);
    },
    close: () =>
      new Promise<void>((resolve) => {
        stream.once('close', () => resolve());
        stream.end();
      }),
  };
}

/**
 * Opens the audit file at start-up, synchronously, so that a path that cannot be written stops start-up with a
 * configuration error instead of failing once requests arrive.
 */
function openForAppend(path: string): number {
  try {
    mkdirSync(dirname(path), { recursive: true });
    return openSync(path, 'a');
  } catch (err) {
    throw new ConfigError(`TOKENS_AUDIT_LOG: cannot open ${path}: ${(err as Error).message}`);
  }
}

const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

/**
 * Names requests for the audit log: the caller's `X-Request-Id` when it is a plausible id, else this process's
 * prefix and a counter (cheaper than a random id per request, and unique across replicas by the prefix).
 */
export class RequestIds {
  readonly #prefix = randomBytes(6).toString('base64url');
  #next = 0;

  /** The id of a request with these headers. */
  of(headers: IncomingHttpHeaders): string {
    const given = headers['x-request-id'];
    if (typeof given === 'string' && REQUEST_ID.test(given)) return given;
    return `${this.#prefix}-${(this.#next++).toString(36)}`;
  }
}
