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

/** The most bytes in one write: PIPE_BUF on Linux, so whole lines written to a pipe are never torn by the
 * service log writing to the same pipe. */
export const AUDIT_MAX_WRITE = 4096;
/** The longest a line waits in memory before it is written. */
export const AUDIT_FLUSH_MS = 100;

/** What {@link LineBatches} needs of sonic-boom (pino's destination). */
export interface LineStream {
  write(text: string): unknown;
  flushSync(): void;
  end(): void;
  once(event: 'close', listener: () => void): unknown;
}

/**
 * Gathers whole lines into writes of at most {@link AUDIT_MAX_WRITE} bytes (a longer line goes alone) before
 * sonic-boom sees them, at least every {@link AUDIT_FLUSH_MS}: a line costs one measure of itself and one append,
 * and one write in about ten carries them all. (Handed one line at a time, sonic-boom measured its whole pending
 * buffer on every call, which cost the request path several microseconds a line.) What is gathered is handed over
 * at {@link close}, and on an exit that did not close it (a crash), synchronously, before the process ends.
 */
export class LineBatches implements AuditSink {
  readonly #stream: LineStream;
  #pending = '';
  #bytes = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed: Promise<void> | undefined;
  readonly #onExit = (): void => {
    this.#flush();
    try {
      this.#stream.flushSync();
    } catch {
      // Nothing more can be done for the log while the process ends.
    }
  };

  constructor(stream: LineStream) {
    this.#stream = stream;
    process.on('exit', this.#onExit);
  }

  write(line: string): void {
    if (this.#closed) return;
    const bytes = Buffer.byteLength(line);
    if (this.#bytes > 0 && this.#bytes + bytes > AUDIT_MAX_WRITE) this.#flush();
    this.#pending += line;
    this.#bytes += bytes;
    if (this.#bytes >= AUDIT_MAX_WRITE) this.#flush();
    else this.#timer ??= setTimeout(() => this.#flush(), AUDIT_FLUSH_MS).unref();
  }

  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      process.off('exit', this.#onExit);
      this.#flush();
      this.#stream.once('close', () => resolve());
      this.#stream.end();
    });
    return this.#closed;
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#bytes === 0) return;
    this.#stream.write(this.#pending);
    this.#pending = '';
    this.#bytes = 0;
  }
}

/**
 * A sink on stdout or a file: lines gather in memory ({@link LineBatches}) and each batch of up to 4 KiB is
 * written by sonic-boom at once, synchronously, as the service log is written (`src/log.ts`). One system call per
 * batch costs the request path less than handing it to libuv's thread pool: `scripts/bench-audit.ts` measures the
 * two. A destination that stops reading (a full pipe) holds the service back rather than lose audit lines or let
 * them pile up in memory. Whatever is buffered is written at shutdown, and on a crash by the exit hook.
 */
export function fileAuditSink(destination: 'stdout' | { readonly path: string }): AuditSink {
  return new LineBatches(auditStream(destination === 'stdout' ? 1 : openForAppend(destination.path)));
}

/** sonic-boom as the audit sink configures it on `fd` (exported for `scripts/bench-audit.ts`). */
export function auditStream(fd: number): LineStream {
  return pino.destination({
    fd,
    sync: true,
    // Batches arrive whole: each is written as it comes, never merged past PIPE_BUF.
    minLength: 0,
    maxWrite: AUDIT_MAX_WRITE,
  });
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
