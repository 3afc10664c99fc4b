import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A service process started by a test. */
export interface RunningService {
  readonly proc: ChildProcess;
  /** Every log line the process printed, parsed (non-JSON lines kept as `{ raw }`). */
  readonly logs: Record<string, unknown>[];
  readonly stderr: string[];
  /** Resolves with the `ready` log line. */
  readonly ready: Promise<Record<string, unknown>>;
  /** Resolves with the exit code (or signal name) once the process ends. */
  readonly exited: Promise<number | string>;
  /** Sends `signal` and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/**
 * Starts `src/main.ts` in its own process with exactly `env` (plus PATH), so no setting leaks in from the test's
 * own environment. `root` is the checkout to run (this one by default; a benchmark may compare another).
 */
export function startService(env: Record<string, string>, root = ROOT): RunningService {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    // Every port defaults to 0 (a free one) so that services started side by side never collide.
    env: {
      PATH: process.env.PATH ?? '',
      LOG_LEVEL: 'info',
      TOKENS_PORT: '0',
      GRADES_SET_PORT: '0',
      GRADES_GET_PORT: '0',
      GRADES_PASSWORD: 'test-password',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  // E2E_LOG_DIR keeps each started process's output in a file of its own, to read after a failure.
  const keep = process.env.E2E_LOG_DIR;
  if (keep) {
    mkdirSync(keep, { recursive: true });
    const file = createWriteStream(join(keep, `${env.REPLICA_ID ?? 'service'}-${proc.pid ?? 0}.log`));
    proc.stdout?.pipe(file, { end: false });
    proc.stderr?.pipe(file, { end: false });
  }
  const exited = new Promise<number | string>((resolve) =>
    proc.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')),
  );
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    let buffer = '';
    proc.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      let nl;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line) as Record<string, unknown>;
        } catch {
          entry = { raw: line };
        }
        logs.push(entry);
        if (entry.msg === 'ready') resolve(entry);
      }
    });
    proc.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk.toString()));
    void exited.then((code) =>
      reject(new Error(`service exited (${code}) before ready: ${stderr.join('')}`)),
    );
  });
  ready.catch(() => undefined);
  return {
    proc,
    logs,
    stderr,
    ready,
    exited,
    stop: (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** GET on loopback, with the JSON body parsed when there is one. */
export async function getJson(
  port: number,
  path: string,
): Promise<{ status: number; body: unknown; headers: Headers }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body, headers: res.headers };
}
