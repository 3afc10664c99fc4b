import sinon from 'sinon';
import type { Clock } from '../../src/clock.js';

/** Noon, 2026-01-01 UTC: a fixed start for every fake-timer test. */
export const T0 = Date.UTC(2026, 0, 1, 12);

/**
 * Installs sinon fake timers (timeouts, intervals and Date only: promises and I/O keep running) and returns them
 * with a Clock that reads the fake Date.
 */
export function fakeTime(): { timers: sinon.SinonFakeTimers; clock: Clock } {
  const timers = sinon.useFakeTimers({
    now: T0,
    toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'],
  });
  return { timers, clock: { now: () => Date.now() } };
}

/**
 * Waits, in real time, until `check` holds, asking every `pollMs`; throws naming `what` once `ms` have passed
 * without it. For tests against real servers and processes (fake-timer tests tick instead).
 */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
  pollMs = 25,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
