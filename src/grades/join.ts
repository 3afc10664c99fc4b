import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { request } from 'undici';
import type { Logger } from 'pino';
import { AppError, describeError } from '../errors.js';
import { withoutCredentials } from '../log.js';
import { readBackup, type BackupHeader } from './backup.js';
import { BackupRefusedError } from './errors.js';
import type { StreamIdentity } from './replication.js';
import type { BackupRow } from './store.js';

/** The stream no longer holds the messages right after a backup's position: replaying from it would skip writes. */
export class StaleBackupError extends BackupRefusedError {
  constructor(source: string, position: number, first: number) {
    super(
      `backup of ${source} is at ${position}, but the stream starts at ${first}: writes in between are gone`,
    );
  }
}

/** Where a backup is loaded into: the Grades actor, through its mailbox. */
export interface JoinTarget {
  /**
   * Empties the store; the data will reflect the stream up to `position` of incarnation `streamCreated`, with
   * each origin's last write counter applied up to there in `marks` (a backup's; none when rebuilding).
   */
  restart(position: number, streamCreated: string, marks?: ReadonlyMap<string, number>): Promise<void>;
  load(rows: readonly BackupRow[]): Promise<void>;
}

/** Settings of {@link joinCluster}. */
export interface JoinOptions {
  /** Peers' get-port base URLs (`http://host:port`). Any of them will do: there is no master. */
  readonly peers: readonly string[];
  readonly authorization: string;
  readonly target: JoinTarget;
  /** The stream's current range and identity, asked again before each try. */
  readonly stream: () => Promise<StreamIdentity>;
  /** A backup (file path or URL) to load when no peer answers (`GRADES_RESTORE_FROM`). */
  readonly restoreFrom?: string;
  /**
   * Whether, with no peer answering and nothing to restore from, the replica may rebuild from the stream
   * alone. True at start (the first replica of a cluster); false when rejoining after a gap, where the stream
   * is exactly what lacks the missing writes.
   */
  readonly streamFallback: boolean;
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
 * that would leave writes out is refused loudly and another one tried: older than what the stream still holds,
 * from another incarnation of the stream, or with sequences beyond the stream's last (X4). If no peer answers at
 * all, the backup named by `restoreFrom` is loaded under the same checks; without one, the replica rebuilds from
 * the stream when allowed and the stream still holds everything, and otherwise starts from what the stream holds
 * and says so loudly. If peers answer but none has a usable backup after every attempt, the join fails (and the
 * process with it) rather than serve data with writes missing.
 */
export async function joinCluster(o: JoinOptions): Promise<JoinResult> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= o.attempts; attempt++) {
    let answered = false;
    for (const peer of shuffle(o.peers)) {
      try {
        const position = await loadFrom(peer, o);
        return { startSeq: position + 1, source: shown(peer) };
      } catch (err) {
        lastError = err;
        const reachable = !(err instanceof PeerUnreachableError);
        answered ||= reachable;
        o.log[reachable ? 'error' : 'warn'](
          { peer: shown(peer), attempt, err: describeError(err) },
          'could not join from peer',
        );
        await o.target.restart(0, '');
      }
    }
    if (!answered) break;
    await new Promise((r) => setTimeout(r, o.retryMs * attempt));
  }
  if (o.peers.length > 0 && lastError && !(lastError instanceof PeerUnreachableError)) {
    throw new BackupRefusedError(
      `no usable backup from any peer after ${o.attempts} attempts: ${describeError(lastError)}`,
    );
  }
  if (o.restoreFrom) {
    const position = await loadFrom(o.restoreFrom, o);
    return { startSeq: position + 1, source: shown(o.restoreFrom) };
  }
  const range = await o.stream();
  if (!o.streamFallback) {
    throw new BackupRefusedError(
      'no peer answered with a backup and GRADES_RESTORE_FROM is not set: cannot rejoin',
    );
  }
  await o.target.restart(0, range.created);
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

/**
 * Refuses a backup a replica of this stream cannot replay from (X4): one from another incarnation of the stream,
 * one whose position lies beyond the stream's last sequence (the stream lost messages it had), or one older than
 * the oldest message the stream still holds.
 */
export function checkBackup(source: string, header: BackupHeader, stream: StreamIdentity): void {
  // Only a replica without a stream writes a backup that names none, and it has read no stream message.
  if (header.streamCreated === '' && header.position !== 0) {
    throw new BackupRefusedError(
      `backup of ${source} names no stream yet claims position ${header.position}: it would hide that many messages`,
    );
  }
  if (header.streamCreated !== '' && header.streamCreated !== stream.created) {
    throw new BackupRefusedError(
      `backup of ${source} belongs to another incarnation of the stream (created ${header.streamCreated}, ` +
        `the stream now was created ${stream.created}): its sequences mean nothing here`,
    );
  }
  if (header.position > stream.last) {
    throw new BackupRefusedError(
      `backup of ${source} is at position ${header.position}, beyond the stream's last sequence ${stream.last}`,
    );
  }
  if (stream.first > header.position + 1) throw new StaleBackupError(source, header.position, stream.first);
}

class PeerUnreachableError extends AppError {
  constructor(peer: string, options: { cause: unknown }) {
    super('PEER_UNREACHABLE', `peer ${peer} did not answer`, options);
  }
}

/** A backup's bytes: a peer's `/backup` or any URL (with the peers' credentials), or a file. */
async function open(
  source: string,
  o: Pick<JoinOptions, 'peers' | 'authorization' | 'timeoutMs'>,
): Promise<Readable | AsyncIterable<Uint8Array>> {
  if (!/^https?:\/\//i.test(source)) return createReadStream(source);
  const peer = o.peers.includes(source);
  let response;
  try {
    response = await request(peer ? `${source.replace(/\/$/, '')}/backup` : source, {
      headers: { authorization: o.authorization },
      headersTimeout: o.timeoutMs,
      bodyTimeout: o.timeoutMs,
    });
  } catch (err) {
    if (peer) throw new PeerUnreachableError(shown(source), { cause: err });
    throw err;
  }
  if (response.statusCode !== 200) {
    await response.body.dump();
    // A peer that is itself still joining answers 503: as good as absent.
    if (peer && response.statusCode === 503)
      throw new PeerUnreachableError(shown(source), { cause: new Error('503') });
    throw new BackupRefusedError(`${shown(source)} answered ${response.statusCode}`);
  }
  return response.body;
}

/** Loads a backup from `source` with every check; resolves with its position. */
async function loadFrom(source: string, o: JoinOptions): Promise<number> {
  const started = Date.now();
  let stream: StreamIdentity | undefined;
  let last = 0;
  const { header, rows } = await readBackup(
    await open(source, o),
    async (h) => {
      stream = await o.stream();
      checkBackup(shown(source), h, stream);
      // A backup of no stream holds no stream sequence at all (its values were never replicated).
      last = h.streamCreated === '' ? 0 : stream.last;
      // Its own incarnation when it named none (a backup of a replica without a stream, at position 0).
      await o.target.restart(h.position, stream.created, h.marks);
    },
    async (batch) => {
      if (batch.some((row) => row.seqs.some((s) => s > last))) {
        throw new BackupRefusedError(
          `backup of ${shown(source)} holds sequences beyond the stream's last (${last})`,
        );
      }
      await o.target.load(batch);
    },
  );
  o.log.info(
    {
      peer: shown(source),
      rows,
      position: header.position,
      generatedAt: header.generatedAt,
      ms: Date.now() - started,
    },
    'backup loaded',
  );
  return header.position;
}

/**
 * Loads a backup into a replica without a stream (standalone, `GRADES_RESTORE_FROM`): nothing to check it
 * against, so every row is taken as it is.
 */
export async function restoreStandalone(
  source: string,
  target: JoinTarget,
  authorization: string,
  log: Logger,
): Promise<void> {
  const { header, rows } = await readBackup(
    await open(source, { peers: [], authorization, timeoutMs: 30_000 }),
    (h) => target.restart(h.position, h.streamCreated, h.marks),
    (batch) => target.load(batch),
  );
  log.info({ source: shown(source), rows, generatedAt: header.generatedAt }, 'backup restored');
}

/**
 * A backup source as logs, errors and `/readyz` may show it: a URL without user, password, query or fragment
 * (a presigned `GRADES_RESTORE_FROM` URL carries its credentials there); a file path as it is.
 */
export function shown(source: string): string {
  return /^https?:\/\//i.test(source) ? withoutCredentials(source) : source;
}

function shuffle<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}
