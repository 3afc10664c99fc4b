import { request } from 'undici';
import type { Logger } from 'pino';
import { describeError } from '../errors.js';
import { readBackup } from './backup.js';
import type { GradesActor } from './grades-actor.js';
import type { StreamRange } from './replication.js';

/** The stream no longer holds the messages right after a backup's position: replaying from it would skip writes. */
export class StaleBackupError extends Error {
  constructor(peer: string, position: number, first: number) {
    super(
      `backup of ${peer} is at ${position}, but the stream starts at ${first}: writes in between are gone`,
    );
    this.name = 'StaleBackupError';
  }
}

/** Settings of {@link joinCluster}. */
export interface JoinOptions {
  /** Peers' get-port base URLs (`http://host:port`). Any of them will do: there is no master. */
  readonly peers: readonly string[];
  readonly authorization: string;
  readonly actor: GradesActor;
  /** The stream's current range, asked again before each try. */
  readonly range: () => Promise<StreamRange>;
  readonly attempts: number;
  readonly retryMs: number;
  readonly timeoutMs: number;
  readonly log: Logger;
}

/** How a join ended: the first stream sequence to consume, and where the data came from. */
export interface JoinResult {
  readonly startSeq: number;
  readonly source: string;
}

/**
 * G8: loads a backup from any live peer, in random order, and returns the sequence to consume from. A backup
 * older than what the stream still holds is refused loudly and a fresher one is tried. If no peer answers at
 * all, the replica rebuilds from the stream when the stream still holds everything; otherwise it starts empty
 * from what the stream holds and says so. If peers answer but none has a usable backup after every attempt, the
 * join fails (and the process with it) rather than serve data with writes missing.
 */
export async function joinCluster(o: JoinOptions): Promise<JoinResult> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= o.attempts; attempt++) {
    let answered = false;
    for (const peer of shuffle(o.peers)) {
      try {
        const position = await loadFrom(peer, o);
        return { startSeq: position + 1, source: peer };
      } catch (err) {
        lastError = err;
        const reachable = !(err instanceof PeerUnreachableError);
        answered ||= reachable;
        o.log[reachable ? 'error' : 'warn'](
          { peer, attempt, err: describeError(err) },
          'could not join from peer',
        );
        await o.actor.ask({ type: 'restart', position: 0 });
      }
    }
    if (!answered) break;
    await new Promise((r) => setTimeout(r, o.retryMs * attempt));
  }
  if (o.peers.length > 0 && lastError && !(lastError instanceof PeerUnreachableError)) {
    throw new Error(
      `no usable backup from any peer after ${o.attempts} attempts: ${describeError(lastError)}`,
    );
  }
  const range = await o.range();
  if (range.first <= 1) {
    o.log.info({ last: range.last }, 'no peer answered; rebuilding from the whole stream');
    return { startSeq: 1, source: 'stream' };
  }
  o.log.error(
    { first: range.first },
    'no peer answered and the stream no longer holds everything: starting empty from what it holds',
  );
  return { startSeq: range.first, source: 'partial-stream' };
}

class PeerUnreachableError extends Error {
  constructor(peer: string, options: { cause: unknown }) {
    super(`peer ${peer} did not answer`, options);
    this.name = 'PeerUnreachableError';
  }
}

async function loadFrom(peer: string, o: JoinOptions): Promise<number> {
  const started = Date.now();
  let response;
  try {
    response = await request(`${peer.replace(/\/$/, '')}/backup`, {
      headers: { authorization: o.authorization },
      headersTimeout: o.timeoutMs,
      bodyTimeout: o.timeoutMs,
    });
  } catch (err) {
    throw new PeerUnreachableError(peer, { cause: err });
  }
  if (response.statusCode !== 200) {
    await response.body.dump();
    // A peer that is itself still joining answers 503: as good as absent.
    if (response.statusCode === 503) throw new PeerUnreachableError(peer, { cause: new Error('503') });
    throw new Error(`peer ${peer} answered ${response.statusCode}`);
  }
  const { header, rows } = await readBackup(
    response.body,
    async ({ position }) => {
      const range = await o.range();
      if (range.first > position + 1) throw new StaleBackupError(peer, position, range.first);
      await o.actor.ask({ type: 'restart', position });
    },
    (batch) => o.actor.ask({ type: 'load', rows: batch }),
  );
  o.log.info(
    { peer, rows, position: header.position, generatedAt: header.generatedAt, ms: Date.now() - started },
    'backup loaded',
  );
  return header.position;
}

function shuffle<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}
