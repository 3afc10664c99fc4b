/**
 * Loads the running service over HTTP on loopback and prints requests/s and p50/p99 for service tokens and for
 * exchanges (ES256), the latter also from a provider with one CEL claim validation rule and one CEL claim mapping,
 * next to a baseline measured in the same run: one `node:http` process that verifies with jose `jwtVerify` and
 * signs with jose `SignJWT` on its main thread (for the CEL scenario it does the plain exchange). Baseline and
 * subject alternate (A B A B …) and medians are reported with the ratio. The service runs with its token audit log
 * on, into a file (`--audit file`, the default) or on stdout (`--audit stdout`, which this script reads and drops:
 * the reading then costs CPU on the same cores as the servers, as any log collector would), and a second instance
 * with it off is measured in the same rounds (A B C A B C …) to show what the audit log costs.
 *
 * Besides requests/s it prints each server's CPU time per request (from /proc, per thread) and the paired ratio of
 * those, which drift far less than requests/s on a shared machine, and the load generator's own CPU per request:
 * it shares the cores, so the requests/s ratio lies between 1 and the CPU ratio.
 *
 *   node --import tsx scripts/bench-tokens.ts [--rounds 7] [--seconds 4] [--connections 32] [--workers 1]
 *                                             [--loader wrk|autocannon] [--only NAME,…] [--cpu-prof DIR]
 *                                             [--audit file|stdout]
 *
 * `--only` runs the named scenarios (`service`, `exchange`, `cel`); `--cpu-prof DIR` writes a V8 CPU profile of
 * the audited service's main thread into DIR when the run ends (open it in Chrome's DevTools), to see where a
 * request's time goes.
 *
 * The load generator shares the machine's cores with the servers, so a light one matters: `wrk` (Debian package
 * `wrk`, one thread) is used when installed, autocannon (in-process, heavier) otherwise.
 *
 * Both servers run as JavaScript compiled by tsc (`tsconfig.bench.json`, into `.bench/dist`), as `npm start` runs
 * the service: under tsx every closure created per request would also pay for esbuild's `keepNames` wrapper.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { hashSecret } from '../src/tokens/client-auth.js';
import { TestIdp } from '../tests/support/idp.js';
import { hasWrk, loaderCpuMs, median, processCpu, runWrk } from './lib/load.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '7' },
    seconds: { type: 'string', default: '4' },
    connections: { type: 'string', default: '32' },
    workers: { type: 'string', default: '1' },
    loader: { type: 'string', default: hasWrk() ? 'wrk' : 'autocannon' },
    only: { type: 'string', default: 'service,exchange,cel' },
    audit: { type: 'string', default: 'file' },
    'cpu-prof': { type: 'string' },
  },
});

const SCENARIOS = ['service', 'exchange', 'cel'];
for (const name of values.only.split(',')) {
  if (!SCENARIOS.includes(name))
    throw new Error(`--only: unknown scenario ${name} (${SCENARIOS.join(', ')})`);
}
if (values.audit !== 'file' && values.audit !== 'stdout') throw new Error('--audit: file or stdout');
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const CONNECTIONS = Number(values.connections);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECRET = 'bench-secret';
const CEL_SCENARIO = 'exchange, 1 CEL rule + 1 CEL mapping';

/** Starts a node process and resolves with it and the first JSON line it prints that has `field`. */
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
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString();
      for (const line of buffer.split('\n')) {
        try {
          const parsed = JSON.parse(line) as Record<string, unknown>;
          if (typeof parsed[field] === 'number') {
            // From here on stdout (the audit log among it) is read and dropped, not parsed on this process's CPU.
            proc.stdout?.off('data', onData).resume();
            resolve({ proc, port: parsed[field] });
            return;
          }
        } catch {
          // partial or non-JSON line
        }
      }
      buffer = buffer.slice(buffer.lastIndexOf('\n') + 1);
    };
    proc.stdout?.on('data', onData);
    proc.once('exit', (code) => reject(new Error(`process exited early (${code})`)));
  });
}

interface Result {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** The server's CPU time per request in µs: main thread, and its other threads (workers, libuv pool, GC). */
  mainUs: number;
  otherUs: number;
  /**
   * This process's CPU time per request in µs: the load generator's cost (and wrk's parsing, when wrk runs). It
   * shares the machine's cores with the servers, so it narrows the requests/s ratio towards 1 by the same amount
   * for both; the CPU ratio does not include it.
   */
  loaderUs: number;
}

type LoadResult = Omit<Result, 'mainUs' | 'otherUs' | 'loaderUs'>;

async function load(
  server: { proc: ChildProcess; port: number },
  body: string,
  headers: Record<string, string>,
): Promise<Result> {
  const pid = server.proc.pid ?? 0;
  const before = processCpu(pid);
  const loaderBefore = loaderCpuMs();
  const result = await (values.loader === 'wrk'
    ? loadWrk(server.port, body, headers)
    : loadAutocannon(server.port, body, headers));
  const loaderAfter = loaderCpuMs();
  const after = processCpu(pid);
  const requests = result.rps * SECONDS;
  const perRequest = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || requests === 0 ? NaN : ((b - a) * 1000) / requests;
  return {
    ...result,
    mainUs: perRequest(before?.mainMs, after?.mainMs),
    otherUs: perRequest(before?.otherMs, after?.otherMs),
    loaderUs: perRequest(loaderBefore, loaderAfter),
  };
}

/** One wrk run; its Lua script sets the method, headers and body. */
async function loadWrk(port: number, body: string, headers: Record<string, string>): Promise<LoadResult> {
  const script = join(scratch, 'post.lua');
  const allHeaders = { 'Content-Type': 'application/x-www-form-urlencoded', ...headers };
  await writeFile(
    script,
    [
      'wrk.method = "POST"',
      `wrk.body = ${JSON.stringify(body)}`,
      ...Object.entries(allHeaders).map(
        ([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`,
      ),
    ].join('\n'),
  );
  return runWrk(`http://127.0.0.1:${port}/token`, { connections: CONNECTIONS, seconds: SECONDS, script });
}

async function loadAutocannon(
  port: number,
  body: string,
  headers: Record<string, string>,
): Promise<LoadResult> {
  const result = await autocannon({
    url: `http://127.0.0.1:${port}/token`,
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body,
    connections: CONNECTIONS,
    duration: SECONDS,
  });
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.non2xx + result.errors + result.timeouts,
  };
}

let scratch = tmpdir();

/** Compiles the service and the baseline server into `.bench/dist`; returns that directory. */
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
  const idp = await new TestIdp('bench-idp').start();
  const dir = await mkdtemp(join(tmpdir(), 'bench-tokens-'));
  scratch = dir;
  const children: ChildProcess[] = [];
  try {
    const configPath = join(dir, 'tokens.json');
    const celIssuer = `${idp.issuer}/cel`;
    await writeFile(
      configPath,
      JSON.stringify({
        providers: [
          idp.providerConfig(),
          // The same provider's keys under a second issuer, with one CEL validation rule and one CEL mapping, so
          // an exchange with rules runs next to the same exchange without them.
          idp.providerConfig({
            name: 'acme-cel',
            issuer: celIssuer,
            claimValidationRules: [
              { expression: "claims.email.endsWith('@acme.example')", message: 'only acme.example accounts' },
            ],
            claimMappings: { login: "claims.email.split('@')[0]" },
          }),
        ],
        clients: [{ id: 'svc-a', secretHash: hashSecret(SECRET), audiences: ['orders'] }],
      }),
    );
    const baseline = await spawnAndWait(
      [
        join(dist, 'scripts/lib/baseline-token-server.js'),
        idp.issuer,
        JSON.stringify({ keys: [idp.publicJwk] }),
        'svc-a',
        SECRET,
      ],
      {},
      'port',
    );
    children.push(baseline.proc);
    const profile = values['cpu-prof'];
    const subject = await spawnAndWait(
      [...(profile ? ['--cpu-prof', '--cpu-prof-dir', profile] : []), join(dist, 'src/main.js')],
      {
        TOKENS_PORT: '0',
        GRADES_SET_PORT: '0',
        GRADES_GET_PORT: '0',
        TOKENS_CONFIG: configPath,
        SIGNING_WORKERS: values.workers,
        LOG_LEVEL: 'info',
        TOKENS_AUDIT_LOG: values.audit === 'stdout' ? 'stdout' : join(dir, 'audit.log'),
      },
      'tokensPort',
    );
    children.push(subject.proc);
    const unaudited = await spawnAndWait(
      [join(dist, 'src/main.js')],
      {
        TOKENS_PORT: '0',
        GRADES_SET_PORT: '0',
        GRADES_GET_PORT: '0',
        TOKENS_CONFIG: configPath,
        SIGNING_WORKERS: values.workers,
        LOG_LEVEL: 'info',
        TOKENS_AUDIT_LOG: 'off',
      },
      'tokensPort',
    );
    children.push(unaudited.proc);

    const subjectToken = await idp.sign({ sub: 'user-1', aud: 'token-exchange' }, { expiresIn: '2h' });
    const celSubjectToken = await idp.sign(
      { sub: 'user-1', aud: 'token-exchange', iss: celIssuer, email: 'user-1@acme.example' },
      { expiresIn: '2h' },
    );
    const exchangeBody = (token: string) =>
      new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        subject_token: token,
        subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
      }).toString();
    const auth = { authorization: `Basic ${Buffer.from(`svc-a:${SECRET}`).toString('base64')}` };
    /** `baselineBody`: what the baseline is sent instead (it has no CEL rules: it does the plain exchange). */
    const allScenarios: {
      key: string;
      name: string;
      body: string;
      baselineBody?: string;
      headers: Record<string, string>;
    }[] = [
      { key: 'service', name: 'service token', body: 'grant_type=client_credentials', headers: auth },
      { key: 'exchange', name: 'exchange', body: exchangeBody(subjectToken), headers: {} },
      {
        key: 'cel',
        name: CEL_SCENARIO,
        body: exchangeBody(celSubjectToken),
        baselineBody: exchangeBody(subjectToken),
        headers: {},
      },
    ];
    const only = new Set(values.only.split(','));
    const scenarios = allScenarios.filter((s) => only.has(s.key));
    // Warm both servers (JIT, provider key cache, worker start-up).
    for (const s of scenarios) {
      await load(baseline, s.baselineBody ?? s.body, s.headers);
      await load(subject, s.body, s.headers);
      await load(unaudited, s.body, s.headers);
    }
    console.log(
      `tokens over HTTP: ${ROUNDS} rounds × ${SECONDS}s per server and scenario, ${CONNECTIONS} connections, ` +
        `signing workers ${values.workers}, load by ${values.loader}, audit log into ` +
        `${values.audit === 'stdout' ? 'stdout (read and dropped by this script)' : 'a file'}; baseline and service alternate`,
    );
    /** Each scenario's service CPU per request (µs, audit on), per round. */
    const serviceCpu = new Map<string, number[]>();
    for (const s of scenarios) {
      const runs = { baseline: [] as Result[], service: [] as Result[], unaudited: [] as Result[] };
      for (let round = 0; round < ROUNDS; round++) {
        runs.baseline.push(await load(baseline, s.baselineBody ?? s.body, s.headers));
        runs.service.push(await load(subject, s.body, s.headers));
        runs.unaudited.push(await load(unaudited, s.body, s.headers));
      }
      const summary = (rs: Result[]) => ({
        rps: median(rs.map((r) => r.rps)),
        p50: median(rs.map((r) => r.p50)),
        p99: median(rs.map((r) => r.p99)),
        errors: rs.reduce((n, r) => n + r.errors, 0),
        mainUs: median(rs.map((r) => r.mainUs)),
        otherUs: median(rs.map((r) => r.otherUs)),
        loaderUs: median(rs.map((r) => r.loaderUs)),
        each: rs.map((r) => Math.round(r.rps)).join('/'),
      });
      const b = summary(runs.baseline);
      const v = summary(runs.service);
      console.log(`\n${s.name} (ES256)`);
      const row = (name: string, r: typeof b) =>
        console.log(
          `  ${name.padEnd(9)} ${Math.round(r.rps)} req/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  ` +
            `errors ${r.errors}  rounds ${r.each}  CPU/req main ${r.mainUs.toFixed(0)} µs + other ${r.otherUs.toFixed(0)} µs ` +
            `(load generator ${r.loaderUs.toFixed(0)} µs)`,
        );
      row('baseline', b);
      row('service', v);
      row('no audit', summary(runs.unaudited));
      const cpu = (r: { mainUs: number; otherUs: number }) => r.mainUs + r.otherUs;
      const range = (xs: number[], digits: number) =>
        `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;
      // Each round's service run follows its baseline run within seconds, so the ratio of a pair is spared most of
      // the machine's drift between rounds (seen here: the same server 30% apart from one round to the next).
      const paired = runs.service.map((r, i) => r.rps / (runs.baseline[i]?.rps ?? NaN));
      console.log(
        `  ratio     ${median(paired).toFixed(2)}x requests/s (median of the ${ROUNDS} paired rounds, ` +
          `${range(paired, 2)}; ratio of medians ${(v.rps / b.rps).toFixed(2)}x)`,
      );
      // CPU per request drifts far less than requests/s on a shared machine; paired the same way.
      const pairedCpu = runs.service.map((r, i) => cpu(runs.baseline[i] ?? r) / cpu(r));
      console.log(
        `  CPU       ${median(pairedCpu).toFixed(2)}x less CPU per request than the baseline (median of the ` +
          `${ROUNDS} paired rounds, ${range(pairedCpu, 2)})`,
      );
      const audited = runs.service.map((r, i) => r.rps / (runs.unaudited[i]?.rps ?? NaN));
      const auditUs = runs.service.map((r, i) => cpu(r) - cpu(runs.unaudited[i] ?? r));
      console.log(
        `  audit     audit log on / off ${median(audited).toFixed(2)}x requests/s (median of the ${ROUNDS} ` +
          `paired rounds, ${range(audited, 2)}); it costs ${median(auditUs).toFixed(0)} µs CPU per request ` +
          `(${range(auditUs, 0)})`,
      );
      serviceCpu.set(s.name, runs.service.map(cpu));
    }
    // What the CEL rule and mapping cost: the same exchange with and without them (scenarios run one after the
    // other, so this compares medians, not pairs).
    const plain = serviceCpu.get('exchange');
    const withCel = serviceCpu.get(CEL_SCENARIO);
    if (plain && withCel) {
      console.log(
        `\nCEL rule + mapping: service CPU per request ${median(withCel).toFixed(0)} µs against ` +
          `${median(plain).toFixed(0)} µs for the same exchange without them (medians of ${ROUNDS} rounds each)`,
      );
    }
  } finally {
    const exited = children
      .filter((c) => c.exitCode === null && c.signalCode === null)
      .map((c) => once(c, 'exit'));
    for (const child of children) child.kill('SIGTERM');
    // A CPU profile is written as its process exits.
    await Promise.all(exited);
    await idp.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
