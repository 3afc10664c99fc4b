import { BackupRefusedError } from './errors.js';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { FIELDS, userIdSchema } from './model.js';
import type { BackupRow } from './store.js';

/**
 * The backup's columns (G7). Every row carries the four values `/get` serves and the stream sequence of each
 * (0: set by no stream message, the lowest precedence for a joiner); the first row after the header is a
 * metadata row (empty `user_id`) with `stream_created` (the stream's creation time: which incarnation of the
 * stream the sequences belong to; empty on a replica without a stream), `generated_at` and `stream_sequence`,
 * the position a joiner replays from. Right after it come the mark rows, one per origin (empty `user_id`, the
 * origin in `stream_created`, its last write counter applied in `stream_sequence`), so a joiner inherits the
 * replay protection (see the Grades actor). A plain CSV with a constant column count, readable by any CSV tool.
 */
export const BACKUP_COLUMNS = [
  'user_id',
  ...FIELDS,
  ...FIELDS.map((f) => `${f}_seq`),
  'stream_created',
  'generated_at',
  'stream_sequence',
] as const;

/** A backup being served: where it stands in the stream, when it was made, and its gzip stream. */
export interface BackupStream {
  readonly position: number;
  readonly streamCreated: string;
  readonly generatedAt: Date;
  readonly body: Readable;
}

/** Longest origin a mark row may name (the replication message's limit). */
const MAX_ORIGIN = 200;

/**
 * Where a backup's rows come from: a cursor opened, read in chunks and closed through the Grades actor's
 * mailbox (so the rows are read between writes, never while one is half-applied).
 */
export interface BackupSource {
  open(): Promise<{
    id: number;
    position: number;
    streamCreated: string;
    /** Each origin's last write counter applied up to `position`. */
    marks: ReadonlyMap<string, number>;
  }>;
  /** Up to `max` CSV lines; '' once every row was read. */
  next(id: number, max: number): Promise<string>;
  close(id: number): void;
}

/**
 * Streams the actor's records as csv.gz without building it in memory (G7): rows are pulled from the actor in
 * chunks of `chunkRows` between other messages, so writes go on while the backup runs, and the gzip stream's
 * back-pressure paces the pulls. Rows written while the backup runs may or may not be in it; either way a joiner
 * that replays the stream from `position` ends up right, because every value carries its sequence.
 */
export async function openBackup(source: BackupSource, chunkRows = 1000): Promise<BackupStream> {
  const { id, position, streamCreated, marks } = await source.open();
  const generatedAt = new Date();
  async function* lines(): AsyncGenerator<string> {
    try {
      const meta = BACKUP_COLUMNS.map(() => '');
      meta[meta.length - 3] = streamCreated;
      meta[meta.length - 2] = generatedAt.toISOString();
      meta[meta.length - 1] = String(position);
      let head = `${BACKUP_COLUMNS.join(',')}\n${meta.join(',')}\n`;
      for (const [origin, n] of marks) {
        const row = BACKUP_COLUMNS.map(() => '');
        row[row.length - 3] = csvField(origin);
        row[row.length - 1] = String(n);
        head += `${row.join(',')}\n`;
      }
      yield head;
      for (;;) {
        const text = await source.next(id, chunkRows);
        if (text === '') return;
        yield text;
      }
    } finally {
      source.close(id);
    }
  }
  const gzip = createGzip();
  pipeline(Readable.from(lines()), gzip).catch((err: unknown) => gzip.destroy(err as Error));
  return { position, streamCreated, generatedAt, body: gzip };
}

/** Quotes a CSV field when it needs it (RFC 4180). */
export function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
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
        if (quote < 0) throw new BackupRefusedError('unterminated quoted field');
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
      if (i < line.length && line[i] !== ',') throw new BackupRefusedError('text after a quoted field');
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

/** A plain decimal integer, as the backup writes every number. */
const INTEGER = /^(0|-?[1-9][0-9]*)$/;

/** What reading a backup found. */
export interface BackupHeader {
  readonly position: number;
  readonly generatedAt: string;
  /** The stream incarnation the sequences belong to; '' when made without a stream. */
  readonly streamCreated: string;
  /** Each origin's last write counter applied up to `position` (the mark rows). */
  readonly marks: ReadonlyMap<string, number>;
}

/**
 * Reads a csv.gz backup from `source` line by line: checks the header, reports the metadata row with the mark
 * rows after it to `onHeader` (which may throw to abandon a backup too old to replay from), and hands rows to
 * `onRows` in batches.
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
  let meta: Omit<BackupHeader, 'marks'> | undefined;
  const marks = new Map<string, number>();
  let header: BackupHeader | undefined;
  // The header is reported once every mark row is read: at the first record, or at the end.
  const reportHeader = async (): Promise<void> => {
    if (header || !meta) return;
    header = { ...meta, marks };
    await onHeader(header);
  };
  let batch: BackupRow[] = [];
  let count = 0;
  let lineNo = 0;
  const width = BACKUP_COLUMNS.length;
  try {
    for await (const line of lines) {
      lineNo++;
      if (lineNo === 1) {
        if (line !== BACKUP_COLUMNS.join(','))
          throw new BackupRefusedError('not a grades backup (unexpected header)');
        continue;
      }
      const fields = parseCsvLine(line);
      if (fields.length !== width)
        throw new BackupRefusedError(`line ${lineNo}: expected ${width} fields, got ${fields.length}`);
      if (lineNo === 2) {
        const position = Number(fields[width - 1]);
        if (fields[0] !== '' || !Number.isSafeInteger(position) || position < 0) {
          throw new BackupRefusedError('backup metadata row is missing or malformed');
        }
        meta = { position, generatedAt: fields[width - 2] ?? '', streamCreated: fields[width - 3] ?? '' };
        continue;
      }
      if (fields[0] === '' && !header) {
        const [origin, n] = parseMark(fields, lineNo);
        if (marks.has(origin)) throw new BackupRefusedError(`line ${lineNo}: a second mark for one origin`);
        marks.set(origin, n);
        continue;
      }
      await reportHeader();
      // Held to what `/set` takes: a valid user_id and plain decimal integers (no '', 1e3 or 0x1F). A sequence may
      // lie beyond the backup's position (rows are read between writes while the backup runs); the join checks
      // it against the stream's last.
      const texts = fields.slice(1, 1 + 2 * FIELDS.length);
      const numbers = texts.map(Number);
      const userId = fields[0] ?? '';
      if (
        !userIdSchema.safeParse(userId).success ||
        texts.some((t) => !INTEGER.test(t)) ||
        numbers.some((n) => !Number.isSafeInteger(n)) ||
        numbers.slice(FIELDS.length).some((n) => n < 0)
      )
        throw new BackupRefusedError(`line ${lineNo}: malformed row`);
      batch.push({
        user_id: userId,
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
  await reportHeader();
  if (!header) throw new BackupRefusedError('backup is empty');
  if (batch.length > 0) await onRows(batch);
  return { header, rows: count };
}

/**
 * A mark row: every column empty but the origin (`stream_created`, non-empty and at most {@link MAX_ORIGIN}
 * characters) and its counter (`stream_sequence`, a positive safe integer).
 */
function parseMark(fields: readonly string[], lineNo: number): [string, number] {
  const width = fields.length;
  const origin = fields[width - 3] ?? '';
  const text = fields[width - 1] ?? '';
  const n = Number(text);
  const othersEmpty = fields.every((f, i) => i === width - 3 || i === width - 1 || f === '');
  if (
    !othersEmpty ||
    origin === '' ||
    origin.length > MAX_ORIGIN ||
    !/^[1-9][0-9]*$/.test(text) ||
    !Number.isSafeInteger(n)
  )
    throw new BackupRefusedError(`line ${lineNo}: malformed mark row`);
  return [origin, n];
}
