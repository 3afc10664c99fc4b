import { AppError } from '../errors.js';

/** A write was refused because it could not be kept (the stream is unreachable and there is no outbox log). */
export class GradesUnavailableError extends AppError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('UNAVAILABLE', message, { ...options, retryAfterS: 1 });
  }
}

/**
 * A write was sent to the stream but its storage was not confirmed in time: it may still be applied (it is
 * retried in order), so the client may retry it or read it back later.
 */
export class GradesWriteUnconfirmedError extends AppError {
  /** `why`: what left the outcome unknown, e.g. "the stream did not confirm the write within 10000 ms". */
  constructor(why: string) {
    super('UNCONFIRMED', `${why}; it may still be applied (retrying is safe)`, { retryAfterS: 1 });
  }
}

/** A backup that would leave writes out or misorder them: another stream incarnation, or beyond the stream. */
export class BackupRefusedError extends AppError {
  constructor(message: string) {
    super('BACKUP_REFUSED', message);
  }
}
