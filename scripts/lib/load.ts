/** Helpers shared by the benchmark scripts: summary statistics and a wrk runner. */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';

/** The middle value (upper middle for an even count). */
export function median(xs: readonly number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
}

/** The value below which a fraction `q` of `xs` falls. */
export function quantile(xs: readonly number[], q: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

/** True when the `wrk` load generator (Debian package `wrk`) is installed. */
export function hasWrk(): boolean {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (err) {
    // wrk prints its version and exits 1.
    return (err as { status?: number }).status === 1;
  }
}

/** What one wrk run measured. */
export interface WrkResult {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  /** Non-2xx answers and timeouts. */
  readonly errors: number;
}

/** One wrk run with one thread; `script` is a Lua file that shapes the requests. */
export async function runWrk(
  url: string,
  o: { connections: number; seconds: number; script?: string },
): Promise<WrkResult> {
  const args = [
    '-t1',
    `-c${o.connections}`,
    `-d${o.seconds}s`,
    '--latency',
    ...(o.script ? ['-s', o.script] : []),
    url,
  ];
  const { stdout } = await promisify(execFile)('wrk', args);
  const ms = (label: string) => {
    const m = new RegExp(`^\\s*${label}\\s+([\\d.]+)(us|ms|s)`, 'm').exec(stdout);
    if (!m) return NaN;
    const v = Number(m[1]);
    return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
  };
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? NaN),
    p50: ms('50%'),
    p99: ms('99%'),
    errors:
      Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0) +
      Number(/Socket errors:.*?timeout (\d+)/.exec(stdout)?.[1] ?? 0),
  };
}
