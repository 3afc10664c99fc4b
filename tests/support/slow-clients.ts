import { connect, type Socket } from 'node:net';

/**
 * How a slow client misbehaves: `silent` connects and sends nothing; `trickle` sends a request line and then one
 * header line at a time, never ending the headers (slowloris); `slow-body` sends complete headers and then its
 * body a byte at a time; `idle` sends one complete request, reads the answer, and keeps the connection open.
 */
export type SlowKind = 'silent' | 'trickle' | 'slow-body' | 'idle';

/** A slow client's connection, on loopback. */
export interface SlowClient {
  readonly kind: SlowKind;
  /** Milliseconds from connecting to the server closing the connection. */
  readonly closed: Promise<number>;
  /** Whether the server answered anything (an `idle` client reads one answer). */
  answered(): boolean;
  /** Closes it from this side (clean-up for a test that failed before the server did). */
  destroy(): void;
}

/** Opens one slow client against `127.0.0.1:port`; it writes every `stepMs` until the server closes it. */
export function openSlowClient(port: number, kind: SlowKind, path: string, stepMs = 200): SlowClient {
  const socket: Socket = connect(port, '127.0.0.1');
  const opened = Date.now();
  let timer: NodeJS.Timeout | undefined;
  let bytes = 0;
  const closed = new Promise<number>((resolve) => {
    socket.once('close', () => {
      clearInterval(timer);
      resolve(Date.now() - opened);
    });
  });
  socket.on('error', () => undefined);
  socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
  const every = (write: () => string) => {
    timer = setInterval(() => {
      if (socket.writable) socket.write(write());
    }, stepMs);
  };
  socket.once('connect', () => {
    switch (kind) {
      case 'silent':
        break;
      case 'trickle': {
        socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`);
        let n = 0;
        every(() => `X-Slow-${n++}: x\r\n`);
        break;
      }
      case 'slow-body':
        socket.write(
          `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4096\r\n\r\n`,
        );
        every(() => 'a');
        break;
      case 'idle':
        socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
        break;
      default: {
        const unknown: never = kind;
        throw new Error(`unknown kind ${String(unknown)}`);
      }
    }
  });
  return { kind, closed, answered: () => bytes > 0, destroy: () => socket.destroy() };
}
