import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { describeError, MethodNotAllowedError, NotFoundError, PayloadTooLargeError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { toErrorResponse } from './errors.js';

/** What a handler sees of a request. */
export interface HttpRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  /** Values of `:name` segments of the route pattern. */
  readonly params: Readonly<Record<string, string>>;
  readonly headers: IncomingHttpHeaders;
  /** Reads the whole body, rejecting with PayloadTooLargeError past the server's limit. */
  body(): Promise<Buffer>;
}

/** What a handler answers: a JSON value, raw bytes, or a stream. */
export interface HttpResponse {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly json?: unknown;
  readonly body?: string | Buffer;
  readonly stream?: Readable;
}

/** A route: a method, a path pattern with optional `:name` segments, and a handler. */
export interface Route {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly handler: (req: HttpRequest) => Promise<HttpResponse> | HttpResponse;
}

/**
 * How long a connection may take and how many a listener holds, so that idle and slow clients (a slowloris
 * trickling headers, a body sent a byte at a time, keep-alive sockets left open) cannot pile up: each is closed
 * after its deadline, and past the limit a new connection is closed at once instead of taking memory and file
 * descriptors. The event loop never waits on a slow client, so requests on other connections go on meanwhile.
 */
export interface HttpLimits {
  /** Time from a connection's (or a keep-alive request's) first byte to the end of its headers. */
  readonly headersTimeoutMs: number;
  /** Time to receive a whole request, headers and body (not the response, which may stream for long). */
  readonly requestTimeoutMs: number;
  /** How long a keep-alive connection may sit idle between requests. */
  readonly keepAliveTimeoutMs: number;
  /** Most open connections on this listener. */
  readonly maxConnections: number;
}

/** The defaults of `HTTP_HEADERS_TIMEOUT_MS` and its siblings (see the README's configuration table). */
export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 15_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 1_000,
};

/** Settings of {@link HttpServer}. */
export interface HttpServerOptions {
  /** Names the server in logs and metrics (`tokens`, `grades-set`, …). */
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly routes: readonly Route[];
  readonly maxBodyBytes: number;
  /** Timeouts and the connection limit; {@link DEFAULT_HTTP_LIMITS} when left out. */
  readonly limits?: HttpLimits;
  readonly log: Logger;
  readonly metrics: Metrics;
}

const NO_PARAMS: Readonly<Record<string, string>> = Object.freeze({});

interface CompiledRoute extends Route {
  readonly segments: readonly string[];
}

/**
 * A small HTTP front end on `node:http`: exact-segment routing, a body limit, and one place (`toErrorResponse`)
 * where thrown errors become statuses. Responses never carry stack traces. `stop()` stops accepting, lets
 * in-flight requests finish, and cuts what is left after the grace period.
 */
export class HttpServer {
  readonly #options: HttpServerOptions;
  readonly #routes: CompiledRoute[];
  /** Routes without parameters, by exact path: most requests are found with one lookup. */
  readonly #static = new Map<string, CompiledRoute[]>();
  /** Histogram children by label values, so a request does not hash its labels again. */
  readonly #timers = new Map<string, { observe(seconds: number): void }>();
  readonly #server: Server;
  #stopping: Promise<void> | undefined;
  /** Connections closed at once because the listener was at its limit. */
  #droppedConnections = 0;

  constructor(options: HttpServerOptions) {
    this.#options = options;
    this.#routes = options.routes.map((r) => ({ ...r, segments: r.path.split('/').filter(Boolean) }));
    for (const route of this.#routes) {
      if (route.segments.some((s) => s.startsWith(':'))) continue;
      const key = `/${route.segments.join('/')}`;
      this.#static.set(key, [...(this.#static.get(key) ?? []), route]);
    }
    const limits = options.limits ?? DEFAULT_HTTP_LIMITS;
    this.#server = createServer(
      // node:http checks header and request deadlines on this sweep (30 s by default), so a deadline is kept to
      // within a second, or half of it when shorter.
      { connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(limits.headersTimeoutMs / 2))) },
      (req, res) => this.#handle(req, res),
    );
    this.#server.headersTimeout = limits.headersTimeoutMs;
    this.#server.requestTimeout = limits.requestTimeoutMs;
    this.#server.keepAliveTimeout = limits.keepAliveTimeoutMs;
    this.#server.maxConnections = limits.maxConnections;
    this.#server.on('drop', () => this.#dropped());
  }

  /** Logs connections closed at the limit: the first, then every thousandth, so a flood does not flood the log. */
  #dropped(): void {
    this.#droppedConnections++;
    if (this.#droppedConnections !== 1 && this.#droppedConnections % 1_000 !== 0) return;
    this.#options.log.warn(
      {
        server: this.#options.name,
        dropped: this.#droppedConnections,
        maxConnections: this.#server.maxConnections,
      },
      'connection limit reached: new connections are closed',
    );
  }

  /** The bound port (useful when configured as 0). */
  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** Listens on the configured host and port. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#options.port, this.#options.host, () => {
        this.#server.off('error', reject);
        this.#options.log.info({ server: this.#options.name, port: this.port }, 'http listening');
        resolve();
      });
    });
  }

  /** Stops accepting connections; in-flight requests get `graceMs` to finish. Idempotent. */
  stop(graceMs = 5_000): Promise<void> {
    this.#stopping ??= new Promise<void>((resolve) => {
      if (!this.#server.listening) return resolve();
      const timer = setTimeout(() => this.#server.closeAllConnections(), graceMs);
      this.#server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      this.#server.closeIdleConnections();
    });
    return this.#stopping;
  }

  /**
   * Handles one request. Synchronous handlers are answered synchronously, inside the request event (no promise,
   * no microtask: this is the hot path of reads); a handler that returns a promise is awaited.
   */
  #handle(req: IncomingMessage, res: ServerResponse): void {
    const started = process.hrtime.bigint();
    const raw = req.url ?? '/';
    const q = raw.indexOf('?');
    const pathname = q < 0 ? raw : raw.slice(0, q);
    const match = this.#match(req.method ?? 'GET', pathname);
    if (match === 'method-not-allowed') {
      this.#fail(req, res, 'unmatched', started, new MethodNotAllowedError());
      return;
    }
    if (!match) {
      this.#fail(req, res, 'unmatched', started, new NotFoundError('no such route'));
      return;
    }
    const route = match.route.path;
    let result: HttpResponse | Promise<HttpResponse>;
    try {
      result = match.route.handler(
        new IncomingRequest(
          req,
          pathname,
          q < 0 ? '' : raw.slice(q + 1),
          match.params,
          this.#options.maxBodyBytes,
        ),
      );
    } catch (err) {
      this.#fail(req, res, route, started, err);
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (response) => this.#finish(req, res, route, started, response),
        (err: unknown) => this.#fail(req, res, route, started, err),
      );
    } else {
      this.#finish(req, res, route, started, result);
    }
  }

  /** Sends a response and records its duration; a stream that fails half-way cuts the connection. */
  #finish(
    req: IncomingMessage,
    res: ServerResponse,
    route: string,
    started: bigint,
    response: HttpResponse,
  ): void {
    let sending: Promise<void> | undefined;
    try {
      sending = this.#send(res, response);
    } catch (err) {
      this.#fail(req, res, route, started, err);
      return;
    }
    if (!sending) {
      this.#observe(req, route, response.status, started);
      return;
    }
    sending.then(
      () => this.#observe(req, route, response.status, started),
      (err: unknown) => this.#fail(req, res, route, started, err),
    );
  }

  /** Answers a thrown error through the one mapping (`toErrorResponse`), without ever showing internals. */
  #fail(req: IncomingMessage, res: ServerResponse, route: string, started: bigint, err: unknown): void {
    const mapped = toErrorResponse(err);
    // A 500 is a fault worth a stack trace; an expected 503 (not ready, unavailable, unconfirmed) is not, and a
    // client polling a joining replica must not flood the log.
    if (mapped.status === 500) this.#options.log.error({ err, route }, 'request failed');
    else if (mapped.status > 500)
      this.#options.log.debug({ err: describeError(err), route }, 'request refused');
    if (!res.headersSent) {
      try {
        // After a rejected body the rest of it may still be arriving; do not reuse the connection.
        if (mapped.status === 413) mapped.headers.connection = 'close';
        void this.#send(res, { status: mapped.status, json: mapped.body, headers: mapped.headers });
      } catch {
        res.destroy();
      }
    } else {
      res.destroy();
    }
    this.#observe(req, route, mapped.status, started);
  }

  #observe(req: IncomingMessage, route: string, status: number, started: bigint): void {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const method = req.method ?? 'GET';
    const key = `${route} ${method} ${status}`;
    let timer = this.#timers.get(key);
    if (!timer) {
      timer = this.#options.metrics.httpDuration.labels(this.#options.name, route, method, String(status));
      this.#timers.set(key, timer);
    }
    timer.observe(seconds);
  }

  /** Writes the response; returns a promise only for a stream, which takes time to pipe. */
  #send(res: ServerResponse, response: HttpResponse): Promise<void> | undefined {
    // Object.assign, not spread: a spread copy costs microseconds on Node 20, on every request.
    const headers: Record<string, string> = Object.assign({}, response.headers);
    if (response.json !== undefined) {
      const body = JSON.stringify(response.json);
      headers['content-type'] ??= 'application/json';
      // A known length spares chunked framing: header and body leave in one write.
      headers['content-length'] = String(Buffer.byteLength(body));
      res.writeHead(response.status, headers);
      res.end(body);
    } else if (response.stream) {
      res.writeHead(response.status, headers);
      return pipeline(response.stream, res);
    } else {
      res.writeHead(response.status, headers);
      res.end(response.body);
    }
    return undefined;
  }

  #match(
    method: string,
    pathname: string,
  ): { route: CompiledRoute; params: Readonly<Record<string, string>> } | 'method-not-allowed' | undefined {
    const exact =
      this.#static.get(pathname) ?? this.#static.get(`/${pathname.split('/').filter(Boolean).join('/')}`);
    if (exact) {
      const route = exact.find((r) => r.method === method || (method === 'HEAD' && r.method === 'GET'));
      if (route) return { route, params: NO_PARAMS };
    }
    const segments = pathname.split('/').filter(Boolean);
    let pathMatched = false;
    for (const route of this.#routes) {
      const params = matchSegments(route.segments, segments);
      if (!params) continue;
      if (route.method === method || (method === 'HEAD' && route.method === 'GET')) return { route, params };
      pathMatched = true;
    }
    return pathMatched ? 'method-not-allowed' : undefined;
  }
}

/** A request as handlers see it; the query string is parsed only if a handler asks for it. */
class IncomingRequest implements HttpRequest {
  readonly method: string;
  readonly path: string;
  readonly params: Readonly<Record<string, string>>;
  readonly headers: IncomingHttpHeaders;
  readonly #req: IncomingMessage;
  readonly #search: string;
  readonly #maxBodyBytes: number;
  #query: URLSearchParams | undefined;

  constructor(
    req: IncomingMessage,
    path: string,
    search: string,
    params: Readonly<Record<string, string>>,
    maxBodyBytes: number,
  ) {
    this.method = req.method ?? 'GET';
    this.path = path;
    this.params = params;
    this.headers = req.headers;
    this.#req = req;
    this.#search = search;
    this.#maxBodyBytes = maxBodyBytes;
  }

  get query(): URLSearchParams {
    return (this.#query ??= new URLSearchParams(this.#search));
  }

  body(): Promise<Buffer> {
    return readBody(this.#req, this.#maxBodyBytes);
  }
}

function matchSegments(
  pattern: readonly string[],
  actual: readonly string[],
): Record<string, string> | undefined {
  if (pattern.length !== actual.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i] as string;
    const a = actual[i] as string;
    if (p.startsWith(':')) {
      try {
        params[p.slice(1)] = decodeURIComponent(a);
      } catch {
        return undefined;
      }
    } else if (p !== a) {
      return undefined;
    }
  }
  return params;
}

/** Collects a request body up to `limit` bytes; rejects as soon as the limit is passed. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(new PayloadTooLargeError(limit));
  return new Promise((resolve, reject) => {
    // A small body arrives in one chunk: it is kept as it is, with no list and no copy.
    let first: Buffer | undefined;
    let rest: Buffer[] | undefined;
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.off('data', onData);
        req.resume();
        reject(new PayloadTooLargeError(limit));
        return;
      }
      if (!first) first = chunk;
      else (rest ??= [first]).push(chunk);
    };
    req.on('data', onData);
    req.on('end', () => resolve(rest ? Buffer.concat(rest, size) : (first ?? Buffer.alloc(0))));
    req.on('error', reject);
  });
}
