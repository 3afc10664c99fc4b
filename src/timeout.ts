import { TimeoutError } from './errors.js';

/**
 * Races `work` against a timer of `ms` milliseconds. The timer uses the global `setTimeout`, so sinon's fake
 * timers drive it in tests. The work itself is not cancelled (pg has its own query timeouts); only the caller
 * stops waiting for it.
 */
export async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(what, ms)), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
    // The losing side may still reject later; observe it so it is never an unhandled rejection.
    work.catch(() => undefined);
  }
}
