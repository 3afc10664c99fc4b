import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { IncomingHttpHeaders } from 'node:http';
import { stdoutStream, streamTarget, type BatchTarget } from '../log.js';
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
 * The most bytes in one write: PIPE_BUF on Linux, so a batch written to a pipe is one atomic write that no other
 * writer on that pipe (another process's, say) can tear.
 */
export const AUDIT_MAX_WRITE = 4096;
/** The longest a line waits in memory before it is written. */
export const AUDIT_FLUSH_MS = 100;
/**
 * Gathers whole lines into batches of at most {@link AUDIT_MAX_WRITE} bytes (a longer line goes alone), handed to
 * the target at least every {@link AUDIT_FLUSH_MS}: a line costs one measure of itself and one append, and one
 * write in about ten carries them all. A batch the target cannot take is dropped and reported through `onDropped`
 * with its line count, never thrown into the request that filled it. What is gathered is handed over at
 * {@link close}, and on an exit that did not close it (a crash), before the process ends.
 */
export class LineBatches implements AuditSink {
  readonly #target: BatchTarget;
  readonly #onDropped: (lines: number) => void;
  #pending = '';
  #bytes = 0;
  #lines = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed: Promise<void> | undefined;
  readonly #onExit = (): void => this.#flush();

  constructor(target: BatchTarget, onDropped: (lines: number) => void = () => undefined) {
    this.#target = target;
    this.#onDropped = onDropped;
    process.on('exit', this.#onExit);
  }

  write(line: string): void {
    if (this.#closed) return;
    const bytes = Buffer.byteLength(line);
    if (this.#bytes > 0 && this.#bytes + bytes > AUDIT_MAX_WRITE) this.#flush();
    this.#pending += line;
    this.#bytes += bytes;
    this.#lines++;
    if (this.#bytes >= AUDIT_MAX_WRITE) this.#flush();
    else this.#timer ??= setTimeout(() => this.#flush(), AUDIT_FLUSH_MS).unref();
  }

  close(): Promise<void> {
    this.#closed ??= (() => {
      process.off('exit', this.#onExit);
      this.#flush();
      return this.#target.close();
    })();
    return this.#closed;
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#bytes === 0) return;
    // Taken before the write: a batch is handed over once, whatever becomes of it.
    const text = this.#pending;
    const lines = this.#lines;
    this.#pending = '';
    this.#bytes = 0;
    this.#lines = 0;
    if (!this.#target.write(text)) this.#onDropped(lines);
  }
}

/**
 * Batches appended to a regular file, each with one synchronous write: a file takes a write at once (into the page
 * cache), so this costs the request path less than handing it to libuv's thread pool (`scripts/bench-audit.ts`).
 * A write that fails (disk full, I/O error) refuses its batch.
 */
export function fileTarget(fd: number): BatchTarget {
  return {
    write: (text) => {
      try {
        const bytes = Buffer.from(text);
        for (let at = 0; at < bytes.length;) at += writeSync(fd, bytes, at);
        return true;
      } catch {
        return false;
      }
    },
    close: () => {
      try {
        closeSync(fd);
      } catch {
        // Already closed: nothing more to release.
      }
      return Promise.resolve();
    },
  };
}

/**
 * The audit log's sink: on stdout ({@link streamTarget}) or appended to a file ({@link fileTarget}), lines
 * gathered into batches ({@link LineBatches}). Batches that cannot be written are reported to `onDropped`.
 */
export function fileAuditSink(
  destination: 'stdout' | { readonly path: string },
  onDropped?: (lines: number) => void,
): AuditSink {
  const target =
    destination === 'stdout' ? streamTarget(stdoutStream()) : fileTarget(openForAppend(destination.path));
  return new LineBatches(target, onDropped);
}

/**
 * Opens the audit file at start-up, synchronously, so that a path that cannot be written stops start-up with a
 * configuration error instead of failing once requests arrive. Only a regular file: a pipe or device could block
 * the synchronous writes (stdout is the way to a pipe).
 */
function openForAppend(path: string): number {
  let fd: number;
  try {
    mkdirSync(dirname(path), { recursive: true });
    // Non-blocking only so that a FIFO with no reader is refused here instead of hanging start-up; a regular
    // file's writes are unaffected.
    fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NONBLOCK);
  } catch (err) {
    throw new ConfigError(`TOKENS_AUDIT_LOG: cannot open ${path}: ${(err as Error).message}`);
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new ConfigError(`TOKENS_AUDIT_LOG: ${path} is not a regular file (use "stdout" for a pipe)`);
  }
  return fd;
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
