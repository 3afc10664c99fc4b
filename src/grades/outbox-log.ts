import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { gradeUpdateSchema, type GradeUpdate } from './model.js';

/** A write kept in the outbox log: its counter and the update. */
export interface LoggedWrite {
  readonly n: number;
  readonly update: GradeUpdate;
}

/** A log line: a write, or the counter the next write takes (written when the log is compacted). */
const lineSchema = z.union([
  z.object({ n: z.number().int().positive(), update: gradeUpdateSchema }).strict(),
  z.object({ next: z.number().int().positive() }).strict(),
]);

/** The outbox directory holds something this version cannot read. */
export class OutboxLogError extends AppError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('OUTBOX_UNREADABLE', message, options);
  }
}

/** What a log held when it was opened. */
export interface OpenedOutboxLog {
  readonly log: OutboxLog;
  /** The origin this directory writes as, the same in every run. */
  readonly origin: string;
  /** Writes not known to be in the stream, oldest first. */
  readonly writes: LoggedWrite[];
  /** The counter of the next write. */
  readonly nextN: number;
}

type Op =
  | { readonly kind: 'append'; readonly text: string; resolve(): void; reject(err: unknown): void }
  | { readonly kind: 'rewrite'; readonly text: string; resolve(): void; reject(err: unknown): void };

const ORIGIN_FILE = 'origin';
const LOG_FILE = 'outbox.jsonl';

/**
 * The outbox's durable half (X6): an append-only file of JSON lines in `GRADES_OUTBOX_DIR`, one per write
 * accepted while the stream could not take it. An append resolves only after `fdatasync`, and appends that
 * arrive while one is being synced share the next sync (group commit), so an outage costs one sync per group
 * of concurrent writes, not one per write. Writes leave the file only when the log is rewritten without them
 * (after the stream stored them); the rewrite goes to a new file renamed over the old one, so a crash at any
 * point leaves either file whole. The directory also keeps the origin, so a restarted process continues the
 * same origin and counter and its replayed writes keep their place in its order.
 */
export class OutboxLog {
  readonly #dir: string;
  #fh: FileHandle;
  readonly #ops: Op[] = [];
  #running = false;

  private constructor(dir: string, fh: FileHandle) {
    this.#dir = dir;
    this.#fh = fh;
  }

  /** Opens (or creates) the log in `dir`; `makeOrigin` names a new directory's origin. */
  static async open(dir: string, makeOrigin: () => string): Promise<OpenedOutboxLog> {
    await mkdir(dir, { recursive: true });
    let origin: string;
    try {
      origin = (await readFile(join(dir, ORIGIN_FILE), 'utf8')).trim();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      origin = makeOrigin();
      await writeDurably(dir, ORIGIN_FILE, `${origin}\n`);
    }
    if (!origin) throw new OutboxLogError(`${join(dir, ORIGIN_FILE)} is empty`);
    let text = '';
    try {
      text = await readFile(join(dir, LOG_FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const writes: LoggedWrite[] = [];
    let nextN = 1;
    let torn = false;
    const lines = text.split('\n');
    for (const [i, line] of lines.entries()) {
      if (line === '') continue;
      let parsed: z.infer<typeof lineSchema>;
      try {
        parsed = lineSchema.parse(JSON.parse(line));
      } catch (err) {
        // The last line may be torn by a crash during its append: that write was never acknowledged.
        if (i >= lines.length - 2) {
          torn = true;
          break;
        }
        throw new OutboxLogError(`${join(dir, LOG_FILE)} line ${i + 1} is malformed`, { cause: err });
      }
      if ('next' in parsed) nextN = Math.max(nextN, parsed.next);
      else {
        writes.push(parsed);
        nextN = Math.max(nextN, parsed.n + 1);
      }
    }
    // Appending after a torn line would glue the next write to it: the file is rewritten without it first.
    if (torn) await writeDurably(dir, LOG_FILE, logText(writes, nextN));
    const fh = await open(join(dir, LOG_FILE), 'a');
    // The file may have just been created: its directory entry must be on disk before an append counts.
    await syncDir(dir);
    return { log: new OutboxLog(dir, fh), origin, writes, nextN };
  }

  /** Appends writes; resolves once they are on disk. */
  append(writes: readonly LoggedWrite[]): Promise<void> {
    const text = writes.map((w) => `${JSON.stringify({ n: w.n, update: w.update })}\n`).join('');
    return this.#enqueue('append', text);
  }

  /** Replaces the log with `writes` (those not yet stored by the stream) and the next counter. */
  rewrite(writes: readonly LoggedWrite[], nextN: number): Promise<void> {
    return this.#enqueue('rewrite', logText(writes, nextN));
  }

  /** Waits for queued operations and closes the file. */
  async close(): Promise<void> {
    await this.#enqueue('append', '').catch(() => undefined);
    await this.#fh.close();
  }

  #enqueue(kind: Op['kind'], text: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#ops.push({ kind, text, resolve, reject });
      if (!this.#running) void this.#run();
    });
  }

  async #run(): Promise<void> {
    this.#running = true;
    while (this.#ops.length > 0) {
      const head = this.#ops[0] as Op;
      // Every append waiting now shares one write and one sync.
      let count = 1;
      if (head.kind === 'append') while (this.#ops[count]?.kind === 'append') count++;
      const group = this.#ops.splice(0, count);
      try {
        if (head.kind === 'append') {
          const text = group.map((op) => op.text).join('');
          if (text !== '') {
            await this.#fh.write(text);
            await this.#fh.datasync();
          }
        } else {
          await writeDurably(this.#dir, LOG_FILE, head.text);
          const fh = await open(join(this.#dir, LOG_FILE), 'a');
          await this.#fh.close().catch(() => undefined);
          this.#fh = fh;
        }
        for (const op of group) op.resolve();
      } catch (err) {
        for (const op of group) op.reject(err);
      }
    }
    this.#running = false;
  }
}

/** A whole log: the next counter, then the writes. */
function logText(writes: readonly LoggedWrite[], nextN: number): string {
  return (
    `${JSON.stringify({ next: nextN })}\n` +
    writes.map((w) => `${JSON.stringify({ n: w.n, update: w.update })}\n`).join('')
  );
}

/** Writes `name` in `dir` through a synced temporary file renamed over it, then syncs the directory. */
async function writeDurably(dir: string, name: string, text: string): Promise<void> {
  const tmp = join(dir, `.${name}.${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'w');
  try {
    await fh.write(text);
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(tmp, join(dir, name));
  await syncDir(dir);
}

/** Makes the directory's entries (a created or renamed file) durable. */
async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
