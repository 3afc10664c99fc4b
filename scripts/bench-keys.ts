/**
 * Public-key endpoints under load (issue 14), every figure next to a baseline measured in the same run:
 *  1. `GET /.well-known/jwks.json` requests/s and p99 next to a bare `node:http` server answering a fixed body of
 *     the same bytes (alternating rounds A B A B, medians, the median ratio of paired rounds);
 *  2. `GET /keys/{kid}` the same way, next to the bare server answering that one JWK;
 *  3. a flood of random kids on `/keys/{kid}` against a replica rotating its key every second: the Postgres
 *     queries per second the key routes caused (`keys_route_postgres_queries_total`), and the time from each
 *     rotation's create to its completion (`keystore_operation_duration_seconds{operation="create"}`), at rest and
 *     during the flood.
 *
 *   node --import tsx scripts/bench-keys.ts [--rounds 5] [--seconds 4] [--connections 32] [--flood-seconds 10]
 *                                           [--flood-connections 256] [--loader wrk|autocannon]
 *                                           [--only jwks,kid,flood]
 *
 * Needs Postgres (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test); uses a schema of its own and
 * drops it afterwards. The service and the baseline run as JavaScript compiled by tsc (`tsconfig.bench.json`), as
 * `npm start` runs the service. `wrk` (Debian package `wrk`) is used when installed, autocannon otherwise.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import pg from 'pg';
import { hasWrk, median, runWrk, type WrkResult } from './lib/load.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '4' },
    connections: { type: 'string', default: '32' },
    'flood-seconds': { type: 'string', default: '10' },
    // Unknown kids wait up to a second for the next shared lookup, so the flood needs many connections to press.
    'flood-connections': { type: 'string', default: '256' },
    loader: { type: 'string', default: hasWrk() ? 'wrk' : 'autocannon' },
    only: { type: 'string', default: 'jwks,kid,flood' },
  },
});
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const CONNECTIONS = Number(values.connections);
const FLOOD_SECONDS = Number(values['flood-seconds']);
const FLOOD_CONNECTIONS = Number(values['flood-connections']);
const ONLY = new Set(values.only.split(','));
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const KID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

let scratch = tmpdir();

/** Starts a node process and resolves with it and the first number it prints under `field`. */
function spawnAndWait(
  args: string[],
  env: Record<string, string>,
  field: string,
): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let buffer = '';
    proc.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      for (const line of buffer.split('\n')) {
        try {
          const parsed = JSON.parse(line) as Record<string, unknown>;
          if (typeof parsed[field] === 'number') resolve({ proc, port: parsed[field] });
        } catch {
          // partial or non-JSON line
        }
      }
      buffer = buffer.slice(buffer.lastIndexOf('\n') + 1);
    });
    proc.once('exit', (code) => reject(new Error(`process exited early (${code})`)));
  });
}

/** One load run of GETs on `path`; `randomKids` makes every request ask for a new random kid under `/keys/`. */
async function load(
  port: number,
  path: string,
  seconds = SECONDS,
  randomKids = false,
  connections = CONNECTIONS,
): Promise<WrkResult> {
  if (values.loader === 'wrk') {
    let script: string | undefined;
    if (randomKids) {
      script = join(scratch, 'random-kids.lua');
      await writeFile(
        script,
        [
          `local chars = "${KID_CHARS}"`,
          'request = function()',
          '  local t = {}',
          '  for i = 1, 43 do local n = math.random(1, 64); t[i] = chars:sub(n, n) end',
          '  return wrk.format("GET", "/keys/" .. table.concat(t))',
          'end',
        ].join('\n'),
      );
    }
    return runWrk(`http://127.0.0.1:${port}${path}`, {
      connections,
      seconds,
      ...(script ? { script } : {}),
    });
  }
  const result = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections,
    duration: seconds,
    requests: [
      randomKids
        ? {
            method: 'GET',
            setupRequest: (req) => ({ ...req, path: `/keys/${randomBytes(32).toString('base64url')}` }),
          }
        : { method: 'GET', path },
    ],
  });
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    // A flood of unknown kids is answered 404 by design; only transport failures count as errors there.
    errors: (randomKids ? 0 : result.non2xx) + result.errors + result.timeouts,
  };
}

/** Alternates baseline and service runs (A B A B …) after one warm-up each, and prints medians and the ratio. */
async function alternate(
  name: string,
  baseline: () => Promise<WrkResult>,
  service: () => Promise<WrkResult>,
) {
  await baseline();
  await service();
  const b: WrkResult[] = [];
  const s: WrkResult[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    b.push(await baseline());
    s.push(await service());
  }
  const row = (label: string, rs: WrkResult[]) =>
    `  ${label.padEnd(9)} ${Math.round(median(rs.map((r) => r.rps)))} req/s  p50 ${median(rs.map((r) => r.p50)).toFixed(2)} ms  ` +
    `p99 ${median(rs.map((r) => r.p99)).toFixed(2)} ms  errors ${rs.reduce((n, r) => n + r.errors, 0)}  ` +
    `rounds ${rs.map((r) => Math.round(r.rps)).join('/')}`;
  const paired = s.map((r, i) => r.rps / (b[i]?.rps ?? NaN));
  console.log(`\n${name}`);
  console.log(row('baseline', b));
  console.log(row('service', s));
  console.log(
    `  ratio     ${median(paired).toFixed(2)}x (median of ${ROUNDS} paired rounds, ` +
      `${Math.min(...paired).toFixed(2)}–${Math.max(...paired).toFixed(2)}; target for the JWKS ≥ 0.8x)`,
  );
}

/** The value of one sample of the Prometheus text whose name and labels all match. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) {
      return Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return 0;
}

/** The create figures of the key store's operation histogram, and the route-caused query count. */
async function keyMetrics(port: number) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const h = 'keystore_operation_duration_seconds';
  return {
    queries: sample(text, 'keys_route_postgres_queries_total'),
    creates: sample(text, `${h}_count`, { operation: 'create' }),
    createSeconds: sample(text, `${h}_sum`, { operation: 'create' }),
    createsWithin50ms: sample(text, `${h}_bucket`, { operation: 'create', le: '0.05' }),
  };
}

function createRow(
  label: string,
  before: Awaited<ReturnType<typeof keyMetrics>>,
  after: typeof before,
): string {
  const n = after.creates - before.creates;
  const meanMs = n > 0 ? ((after.createSeconds - before.createSeconds) * 1000) / n : NaN;
  const within = after.createsWithin50ms - before.createsWithin50ms;
  return `  ${label.padEnd(9)} creates ${n}, mean ${meanMs.toFixed(2)} ms, within 50 ms ${within}/${n}`;
}

function build(): string {
  execFileSync(
    process.execPath,
    [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.bench.json'],
    {
      cwd: ROOT,
      stdio: 'inherit',
    },
  );
  return join(ROOT, '.bench/dist');
}

async function main(): Promise<void> {
  const dist = build();
  const dir = await mkdtemp(join(tmpdir(), 'bench-keys-'));
  scratch = dir;
  const schema = `bench_keys_${process.pid}`;
  const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
  const children: ChildProcess[] = [];
  const service = async (extra: Record<string, string>) => {
    const started = await spawnAndWait(
      [join(dist, 'src/main.js')],
      {
        TOKENS_PORT: '0',
        GRADES_SET_PORT: '0',
        GRADES_GET_PORT: '0',
        GRADES_PASSWORD: 'bench-password',
        DATABASE_URL,
        DATABASE_SCHEMA: schema,
        SIGNING_WORKERS: '0',
        LOG_LEVEL: 'info',
        ...extra,
      },
      'tokensPort',
    );
    children.push(started.proc);
    return started;
  };
  const bare = async (body: Buffer, contentType: string) => {
    const file = join(dir, `body-${children.length}`);
    await writeFile(file, body);
    const started = await spawnAndWait(
      [join(dist, 'scripts/lib/bare-body-server.js'), file, contentType],
      {},
      'port',
    );
    children.push(started.proc);
    return started;
  };
  try {
    console.log(
      `public keys over HTTP: ${ROUNDS} rounds × ${SECONDS}s, ${CONNECTIONS} connections, load by ${values.loader}; ` +
        'Postgres up; baseline and service alternate',
    );
    if (ONLY.has('jwks') || ONLY.has('kid')) {
      const subject = await service({});
      const jwksBody = Buffer.from(
        await (await fetch(`http://127.0.0.1:${subject.port}/.well-known/jwks.json`)).arrayBuffer(),
      );
      const kid = (JSON.parse(jwksBody.toString()) as { keys: { kid: string }[] }).keys[0]?.kid ?? '';
      if (ONLY.has('jwks')) {
        const baseline = await bare(jwksBody, 'application/jwk-set+json');
        console.log(`JWKS body: ${jwksBody.length} bytes`);
        await alternate(
          'GET /.well-known/jwks.json',
          () => load(baseline.port, '/.well-known/jwks.json'),
          () => load(subject.port, '/.well-known/jwks.json'),
        );
      }
      if (ONLY.has('kid')) {
        const keyBody = Buffer.from(
          await (await fetch(`http://127.0.0.1:${subject.port}/keys/${kid}`)).arrayBuffer(),
        );
        const baseline = await bare(keyBody, 'application/json');
        await alternate(
          'GET /keys/{kid} (a known kid)',
          () => load(baseline.port, `/keys/${kid}`),
          () => load(subject.port, `/keys/${kid}`),
        );
      }
    }

    if (ONLY.has('flood')) {
      // A replica that rotates every second, so that creates happen while the flood runs.
      const rotating = await service({ KEY_ROTATION_INTERVAL_S: '1', KEY_ACTIVATION_DELAY_S: '0' });
      await new Promise((r) => setTimeout(r, 1500));
      const rest0 = await keyMetrics(rotating.port);
      await new Promise((r) => setTimeout(r, FLOOD_SECONDS * 1000));
      const rest1 = await keyMetrics(rotating.port);
      const started = performance.now();
      const flood = await load(rotating.port, '/keys/x', FLOOD_SECONDS, true, FLOOD_CONNECTIONS);
      const seconds = (performance.now() - started) / 1000;
      const flood1 = await keyMetrics(rotating.port);
      console.log(
        `\nflood of random kids on GET /keys/{kid}, ${FLOOD_SECONDS}s, ${FLOOD_CONNECTIONS} connections, ` +
          'key rotation every second',
      );
      console.log(
        `  flood     ${Math.round(flood.rps)} req/s (all 404, each after up to a second's wait for the shared ` +
          `lookup)  p99 ${flood.p99.toFixed(2)} ms  errors ${flood.errors}`,
      );
      console.log(
        `  postgres  ${((flood1.queries - rest1.queries) / seconds).toFixed(2)} queries/s caused by the key routes ` +
          `(${flood1.queries - rest1.queries} in ${seconds.toFixed(1)} s; before this change: one per request)`,
      );
      console.log(createRow('at rest', rest0, rest1));
      console.log(createRow('flood', rest1, flood1));
    }
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
    await admin.end();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
