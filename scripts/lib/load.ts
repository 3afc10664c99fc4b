/** Helpers shared by the benchmark scripts: summary statistics and a wrk runner. */
import { execFile, execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
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

/** CPU time a process has used so far, in milliseconds: its main thread, and all its other threads together. */
export interface ProcessCpu {
  readonly mainMs: number;
  readonly otherMs: number;
}

/** Linux clock ticks per second (`getconf CLK_TCK`), the unit of /proc's CPU times. */
const TICKS_PER_S = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/**
 * Reads a process's CPU time per thread from /proc (Linux only; undefined elsewhere or once it has exited). CPU
 * time is what a request costs whatever else the machine is doing, so it drifts far less than requests/s.
 */
export function processCpu(pid: number): ProcessCpu | undefined {
  try {
    let mainMs = 0;
    let otherMs = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // Fields after the parenthesised command name; utime and stime are fields 14 and 15 of the whole line.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_S;
      if (Number(tid) === pid) mainMs += ms;
      else otherMs += ms;
    }
    return { mainMs, otherMs };
  } catch {
    return undefined;
  }
}

/**
 * CPU time this process and its children that have exited (a finished `wrk`) have used so far, in milliseconds:
 * what a load generator costs, in process (autocannon) or as a child (wrk). Linux only; undefined elsewhere.
 */
export function loaderCpuMs(): number | undefined {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    // utime, stime, cutime and cstime are fields 14 to 17 of the whole line.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
    return (ticks * 1000) / TICKS_PER_S;
  } catch {
    return undefined;
  }
}
