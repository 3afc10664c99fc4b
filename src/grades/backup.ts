import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import type { GradesActor } from './grades-actor.js';
import { FIELDS } from './model.js';
import type { BackupRow } from './store.js';

/**
 * The backup's columns (G7). Every row carries the four values and the stream sequence of each; the first row
 * after the header is a metadata row (empty `user_id`) with `generated_at` and `stream_sequence`, the position a
 * joiner replays from. A plain CSV with a constant column count, readable by any CSV tool after gunzip.
 */
export const BACKUP_COLUMNS = [
  'user_id',
  ...FIELDS,
  ...FIELDS.map((f) => `${f}_seq`),
  'generated_at',
  'stream_sequence',
] as const;

/** A backup being served: where it stands in the stream, when it was made, and its gzip stream. */
export interface BackupStream {
  readonly position: number;
  readonly generatedAt: Date;
  readonly body: Readable;
}

/**
 * Streams the actor's records as csv.gz without building it in memory (G7): rows are pulled from the actor in
 * chunks of `chunkRows` between other messages, so writes go on while the backup runs, and the gzip stream's
 * back-pressure paces the pulls. Rows written while the backup runs may or may not be in it; either way a joiner
 * that replays the stream from `position` ends up right, because every value carries its sequence.
 */
export async function openBackup(actor: GradesActor, chunkRows = 1000): Promise<BackupStream> {
  const { id, position } = await actor.ask({ type: 'backupOpen' });
  const generatedAt = new Date();
  async function* lines(): AsyncGenerator<string> {
    try {
      const meta = BACKUP_COLUMNS.map(() => '');
      meta[meta.length - 2] = generatedAt.toISOString();
      meta[meta.length - 1] = String(position);
      yield `${BACKUP_COLUMNS.join(',')}\n${meta.join(',')}\n`;
      for (;;) {
        const text = await actor.ask({ type: 'backupNext', id, max: chunkRows });
        if (text === '') return;
        yield text;
      }
    } finally {
      actor.tell({ type: 'backupClose', id });
    }
  }
  const gzip = createGzip();
  pipeline(Readable.from(lines()), gzip).catch((err: unknown) => gzip.destroy(err as Error));
  return { position, generatedAt, body: gzip };
}

/** Splits one CSV line into fields (RFC 4180 quoting; no line breaks inside fields, as user ids have none). */
export function parseCsvLine(line: string): string[] {
  const fields: string[] = [];
  let i = 0;
  while (i <= line.length) {
    if (line[i] === '"') {
      let value = '';
      i++;
      for (;;) {
        const quote = line.indexOf('"', i);
        if (quote < 0) throw new Error('unterminated quoted field');
        value += line.slice(i, quote);
        if (line[quote + 1] === '"') {
          value += '"';
          i = quote + 2;
        } else {
          i = quote + 1;
          break;
        }
      }
      fields.push(value);
      if (i < line.length && line[i] !== ',') throw new Error('text after a quoted field');
      i++;
    } else {
      const comma = line.indexOf(',', i);
      const end = comma < 0 ? line.length : comma;
      fields.push(line.slice(i, end));
      i = end + 1;
    }
  }
  return fields;
}

/** What reading a backup found. */
export interface BackupHeader {
  readonly position: number;
  readonly generatedAt: string;
}

/**
 * Reads a csv.gz backup from `source` line by line: checks the header, reports the metadata row to `onHeader`
 * (which may throw to abandon a backup too old to replay from), and hands rows to `onRows` in batches.
 */
export async function readBackup(
  source: AsyncIterable<Uint8Array> | Readable,
  onHeader: (header: BackupHeader) => Promise<void>,
  onRows: (rows: BackupRow[]) => Promise<void>,
  batchRows = 1000,
): Promise<{ header: BackupHeader; rows: number }> {
  const gunzip = createGunzip();
  const input = Readable.from(source).pipe(gunzip);
  const lines = createInterface({ input, crlfDelay: Infinity });
  let header: BackupHeader | undefined;
  let batch: BackupRow[] = [];
  let count = 0;
  let lineNo = 0;
  const width = BACKUP_COLUMNS.length;
  try {
    for await (const line of lines) {
      lineNo++;
      if (lineNo === 1) {
        if (line !== BACKUP_COLUMNS.join(',')) throw new Error('not a grades backup (unexpected header)');
        continue;
      }
      const fields = parseCsvLine(line);
      if (fields.length !== width)
        throw new Error(`line ${lineNo}: expected ${width} fields, got ${fields.length}`);
      if (lineNo === 2) {
        const position = Number(fields[width - 1]);
        if (fields[0] !== '' || !Number.isSafeInteger(position) || position < 0) {
          throw new Error('backup metadata row is missing or malformed');
        }
        header = { position, generatedAt: fields[width - 2] ?? '' };
        await onHeader(header);
        continue;
      }
      const numbers = fields.slice(1, 1 + 2 * FIELDS.length).map(Number);
      if (!fields[0] || numbers.some((n) => !Number.isSafeInteger(n)))
        throw new Error(`line ${lineNo}: malformed row`);
      batch.push({
        user_id: fields[0],
        values: numbers.slice(0, FIELDS.length),
        seqs: numbers.slice(FIELDS.length),
      });
      count++;
      if (batch.length >= batchRows) {
        await onRows(batch);
        batch = [];
      }
    }
  } finally {
    lines.close();
    input.destroy();
  }
  if (!header) throw new Error('backup is empty');
  if (batch.length > 0) await onRows(batch);
  return { header, rows: count };
}
