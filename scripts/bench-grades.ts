/**
 * Grades benchmark; every figure next to a baseline measured in the same run:
 *  1. GET /get requests/s and p99 vs a bare node:http server answering a fixed JSON (wrk, alternating rounds);
 *  2. POST /set requests/s with durable acknowledgement (each answer waits until the write is stored in the
 *     JetStream stream) vs the bare server parsing and echoing JSON;
 *  3. replication lag p50/p99, set on one replica to visible on another, at a steady rate, vs the raw JetStream
 *     publish-to-consume time of the same NATS;
 *  4. the outage path: POST /set requests/s on a replica with GRADES_OUTBOX_DIR whose NATS is unreachable (each
 *     write synced to the outbox log before its 202) vs a bare server that appends each body to a file and
 *     answers after fdatasync with the same group commit;
 *  5. with N records (default 1,000,000; `--records 10000000` for the ten-million case): a replica of its own
 *     stream loaded from a backup file of them at start; its memory per record over an idle replica; the backup's
 *     time, size and peak RSS growth vs gzipping the same rows in-process (chunks of 1,000, the backup's gzip
 *     level); then the time for a new replica to join from that backup, spawn to ready.
 *
 *   node --import tsx scripts/bench-grades.ts [--rounds 3] [--seconds 5] [--records 1000000] [--rate 1000]
 *                                             [--only get,set,lag,outbox,backup] [--against DIR]
 *
 * `--only filled` (not a default): GET and POST of random users among the N records held, next to the bare server.
 * With `--against DIR` (another checkout of this project, say `git worktree add DIR <commit>` with its
 * dependencies installed), a replica of that checkout, loaded with the same records into a stream of its own, joins
 * the same rounds (bare, this, that, in turn) and the paired ratio of this checkout to that one is printed: whether
 * a change made the filled paths faster or slower, spared the drift between runs.
 *
 * Uses wrk (Debian package `wrk`) when installed, autocannon otherwise, and NATS with JetStream (NATS_URL, default nats://127.0.0.1:4222); uses its
 * own stream names and deletes them afterwards.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { parseArgs } from 'node:util';
import { createGzip } from 'node:zlib';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import autocannon from 'autocannon';
import { Pool } from 'undici';
import { connect } from '@nats-io/transport-node';
import { BACKUP_COLUMNS, BACKUP_GZIP_LEVEL } from '../src/grades/backup.js';
import { startService, type RunningService } from '../tests/support/service.js';
import { TcpFaultProxy } from '../tests/support/tcp-proxy.js';
import { hasWrk, median, quantile, runWrk, type WrkResult } from './lib/load.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '32' },
    records: { type: 'string', default: '1000000' },
    rate: { type: 'string', default: '1000' },
    only: { type: 'string', default: 'get,set,lag,outbox,backup' },
    against: { type: 'string' },
  },
});
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const CONNECTIONS = Number(values.connections);
const RECORDS = Number(values.records);
const RATE = Number(values.rate);
const ONLY = new Set(values.only.split(','));
const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const PASSWORD = 'bench-password';
const AUTH = `Basic ${Buffer.from(`grades:${PASSWORD}`).toString('base64')}`;

const USE_WRK = hasWrk();

/**
 * One load round: wrk (one thread) when installed, autocannon otherwise (in-process and heavier, so its ratios
 * are not comparable with wrk's; the README figures are wrk's). `script` shapes /set requests for wrk; for
 * autocannon the same bodies are made by `setBody`.
 */
async function wrk(url: string, script?: string): Promise<WrkResult> {
  if (USE_WRK)
    return runWrk(url, { connections: CONNECTIONS, seconds: SECONDS, ...(script ? { script } : {}) });
  let n = 0;
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: SECONDS,
    ...(script
      ? {
          method: 'POST' as const,
          headers: { authorization: AUTH, 'content-type': 'application/json' },
          requests: [{ setupRequest: (req: object) => ({ ...req, body: setBody(++n) }) }],
        }
      : {}),
  });
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.non2xx + result.errors + result.timeouts,
  };
}

/** The body of the n-th /set request (the wrk script makes the same ones). */
function setBody(n: number): string {
  return JSON.stringify({ user_id: `u${n % 100000}`, spp: n });
}

async function alternate(
  name: string,
  baseline: () => Promise<WrkResult>,
  subject: () => Promise<WrkResult>,
  other?: () => Promise<WrkResult>,
) {
  const b: WrkResult[] = [];
  const s: WrkResult[] = [];
  const o: WrkResult[] = [];
  await baseline();
  await subject(); // warm-up
  await other?.();
  for (let i = 0; i < ROUNDS; i++) {
    b.push(await baseline());
    // With another checkout, the two take turns going first: what one leaves running (the stream storing its
    // writes) would otherwise always fall on the other's round.
    if (other && i % 2 === 1) o.push(await other());
    s.push(await subject());
    if (other && i % 2 === 0) o.push(await other());
  }
  const row = (label: string, rs: WrkResult[]) =>
    `  ${label.padEnd(9)} ${Math.round(median(rs.map((r) => r.rps)))} req/s  p99 ${median(rs.map((r) => r.p99)).toFixed(2)} ms  errors ${rs.reduce((n, r) => n + r.errors, 0)}  rounds ${rs.map((r) => Math.round(r.rps)).join('/')}`;
  const ratio = (rs: WrkResult[]) => (median(rs.map((r) => r.rps)) / median(b.map((r) => r.rps))).toFixed(2);
  console.log(`\n${name}`);
  console.log(row('baseline', b));
  console.log(row('service', s));
  console.log(`  ratio     ${ratio(s)}x`);
  if (!other) return;
  console.log(row('against', o));
  console.log(`  ratio     ${ratio(o)}x (${values.against})`);
  const paired = s.map((r, i) => r.rps / (o[i]?.rps ?? NaN));
  console.log(
    `  this/that ${median(paired).toFixed(2)}x requests/s (median of the ${ROUNDS} paired rounds, ` +
      `${Math.min(...paired).toFixed(2)}–${Math.max(...paired).toFixed(2)})`,
  );
}

function spawnBare(
  script = 'scripts/lib/bare-json-server.ts',
  args: string[] = [],
): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve) =>
    proc.stdout?.once('data', (d: Buffer) =>
      resolve({ proc, port: (JSON.parse(d.toString()) as { port: number }).port }),
    ),
  );
}

async function rssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

/** Waits until `service` reports ready on `port`; fails at once if it exits first. */
async function waitReady(service: RunningService, port: number, ms = 600_000): Promise<void> {
  const deadline = Date.now() + ms;
  let exited: number | string | undefined;
  void service.exited.then((code) => (exited = code));
  for (;;) {
    const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
    if (res?.status === 200) return;
    if (exited !== undefined)
      throw new Error(`replica exited (${exited}) before ready: ${service.stderr.join('')}`);
    if (Date.now() > deadline) throw new Error('replica not ready');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Writes a wrk script at `path` that POSTs `/set` with the grades credentials; `body` is a Lua expression of the
 * request counter `n` giving the JSON body.
 */
async function writeSetScript(path: string, body: string): Promise<void> {
  await writeFile(
    path,
    [
      'wrk.method = "POST"',
      'wrk.headers["Content-Type"] = "application/json"',
      `wrk.headers["Authorization"] = "${AUTH}"`,
      'local n = 0',
      'request = function()',
      '  n = n + 1',
      `  return wrk.format(nil, "/set", nil, ${body})`,
      'end',
    ].join('\n'),
  );
}

/** The n-th record's backup line: a 20-character user_id, two fields varying, sequence n + 1 for all four. */
function recordLine(i: number): string {
  return `user-${String(i).padStart(15, '0')},${i},${i % 100},300,150,${i + 1},${i + 1},${i + 1},${i + 1},,,\n`;
}

/** Gzips the header and RECORDS record lines, in chunks of 1,000 as the service does, into `sink`. */
async function gzipRows(head: string, sink: (chunk: Buffer) => void): Promise<void> {
  await new Promise<void>((resolve) => {
    const gz = createGzip({ level: BACKUP_GZIP_LEVEL });
    gz.on('data', sink);
    gz.on('end', resolve);
    gz.write(head);
    const writeChunk = (from: number) => {
      for (let i = from; i < RECORDS; i += 1000) {
        let lines = '';
        for (let j = i; j < Math.min(i + 1000, RECORDS); j++) lines += recordLine(j);
        if (!gz.write(lines)) {
          gz.once('drain', () => writeChunk(i + 1000));
          return;
        }
      }
      gz.end();
    };
    writeChunk(0);
  });
}

/** A replica's memory as its /metrics state it (no forced GC: the heap figure includes garbage not yet collected). */
async function memoryOf(port: number, pid: number): Promise<{ heap: number; external: number; rss: number }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? NaN);
  return {
    heap: metric('nodejs_heap_size_used_bytes'),
    external: metric('nodejs_external_memory_bytes'),
    rss: (await rssKb(pid)) * 1024,
  };
}

/**
 * A stream named `stream` made to stand at sequence RECORDS (purged up to it, so it holds no message) and a
 * backup file of RECORDS records that names it, for GRADES_RESTORE_FROM; `head` is the file's header lines.
 */
async function filledStream(
  jsm: JetStreamManager,
  dir: string,
  stream: string,
): Promise<{ stream: string; file: string; head: string }> {
  await jsm.streams.add({ name: stream, subjects: [`${stream}.set.>`] });
  await jsm.streams.purge(stream, { seq: RECORDS + 1 });
  // The backup names the stream it belongs to (a backup naming none is taken only at position 0).
  const created = (await jsm.streams.info(stream)).created;
  const meta = BACKUP_COLUMNS.map((_, i) =>
    i === BACKUP_COLUMNS.length - 1 ? String(RECORDS) : i === BACKUP_COLUMNS.length - 3 ? created : '',
  );
  const mark = BACKUP_COLUMNS.map((_, i) =>
    i === BACKUP_COLUMNS.length - 3 ? 'bench/1' : i === BACKUP_COLUMNS.length - 1 ? String(RECORDS) : '',
  );
  const head = `${BACKUP_COLUMNS.join(',')}\n${meta.join(',')}\n${mark.join(',')}\n`;
  const file = join(dir, `${stream}.csv.gz`);
  const out = createWriteStream(file);
  await gzipRows(head, (c) => out.write(c));
  await new Promise<void>((resolve, reject) =>
    out.end((err?: Error | null) => (err ? reject(err) : resolve())),
  );
  return { stream, file, head };
}

/**
 * 5. RECORDS records in a replica of their own stream: the records are written as a backup file (what a backup of
 * them holds, byte for byte but for the metadata row) and loaded at start with GRADES_RESTORE_FROM, which checks
 * it against the stream as a join does; the stream is made to stand at sequence RECORDS (purged up to it, so it
 * holds no message) so that the rows may carry real sequences. Then: memory per record, the backup next to
 * gzipping the same rows in-process, and a new replica joining from that backup.
 */
async function backupAndJoin(
  env: (name: string, extra?: Record<string, string>) => Record<string, string>,
  services: RunningService[],
  dir: string,
  jsm: JetStreamManager,
  tag: string,
  barePort: number,
): Promise<void> {
  const { stream: big, file, head } = await filledStream(jsm, dir, `${tag}_BIG`);
  const bigEnv = (name: string, extra: Record<string, string> = {}) =>
    env(name, { GRADES_STREAM: big, GRADES_SUBJECT: `${big}.set`, ...extra });

  // An idle replica of the same code, for the memory a replica holds without records.
  const idle = startService(bigEnv('idle'));
  services.push(idle);
  const idlePorts = (await idle.ready) as { gradesGetPort: number };
  await waitReady(idle, idlePorts.gradesGetPort);
  await new Promise((r) => setTimeout(r, 3000));
  const idleMem = await memoryOf(idlePorts.gradesGetPort, idle.proc.pid ?? 0);
  await idle.stop('SIGTERM');

  const tFill = Date.now();
  const f = startService(bigEnv('f', { GRADES_RESTORE_FROM: file }));
  services.push(f);
  const fPorts = (await f.ready) as { gradesGetPort: number };
  await waitReady(f, fPorts.gradesGetPort);
  const fillSeconds = (Date.now() - tFill) / 1000;
  await new Promise((r) => setTimeout(r, 3000));
  const pid = f.proc.pid ?? 0;
  const fMem = await memoryOf(fPorts.gradesGetPort, pid);
  const perRecord = (m: typeof fMem, key: keyof typeof fMem) =>
    ((m[key] - idleMem[key]) / RECORDS).toFixed(0);
  console.log(
    `\n${RECORDS} records, loaded from a backup file at start in ${fillSeconds.toFixed(1)} s (node's default heap limit)`,
  );
  console.log(
    `  memory    per record over an idle replica: heap ${perRecord(fMem, 'heap')} B + external ${perRecord(fMem, 'external')} B (no forced GC), RSS ${perRecord(fMem, 'rss')} B; idle: heap ${(idleMem.heap / 1e6).toFixed(0)} MB, RSS ${(idleMem.rss / 1e6).toFixed(0)} MB`,
  );

  if (ONLY.has('filled') && !USE_WRK) console.log('  (filled: needs wrk for random users; skipped)');
  if (ONLY.has('filled') && USE_WRK) {
    // Reads and writes of random users among the RECORDS held, next to the bare server.
    const getScript = join(dir, 'get-filled.lua');
    await writeFile(
      getScript,
      [
        'request = function()',
        `  return wrk.format(nil, string.format("/get?user_id=user-%015d", math.random(0, ${RECORDS - 1})))`,
        'end',
      ].join('\n'),
    );
    const setScript = join(dir, 'set-filled.lua');
    await writeSetScript(
      setScript,
      `string.format('{"user_id":"user-%015d","spp":%d}', math.random(0, ${RECORDS - 1}), n)`,
    );
    const filled = (fPorts as { gradesSetPort?: number }).gradesSetPort;
    // --against: the same records in a replica of the other checkout, on a stream of its own.
    let against: { service: RunningService; getPort: number; setPort: number } | undefined;
    if (values.against) {
      const that = await filledStream(jsm, dir, `${tag}_AGAINST`);
      const service = startService(
        env('against', {
          GRADES_STREAM: that.stream,
          GRADES_SUBJECT: `${that.stream}.set`,
          GRADES_RESTORE_FROM: that.file,
        }),
        resolvePath(values.against),
      );
      services.push(service);
      const ports = (await service.ready) as { gradesSetPort: number; gradesGetPort: number };
      await waitReady(service, ports.gradesGetPort);
      against = { service, getPort: ports.gradesGetPort, setPort: ports.gradesSetPort };
    }
    await alternate(
      `GET /get, random users of ${RECORDS} held`,
      () => wrk(`http://127.0.0.1:${barePort}/get?user_id=x`, getScript),
      () => wrk(`http://127.0.0.1:${fPorts.gradesGetPort}/get?user_id=x`, getScript),
      against && (() => wrk(`http://127.0.0.1:${against.getPort}/get?user_id=x`, getScript)),
    );
    await alternate(
      `POST /set, random users of ${RECORDS} held (answered once stored in the stream)`,
      () => wrk(`http://127.0.0.1:${barePort}/set`, setScript),
      () => wrk(`http://127.0.0.1:${filled}/set`, setScript),
      against && (() => wrk(`http://127.0.0.1:${against.setPort}/set`, setScript)),
    );
    if (against) {
      await against.service.stop('SIGTERM');
      await jsm.streams.delete(`${tag}_AGAINST`).catch(() => undefined);
    }
    if (!ONLY.has('backup')) {
      await f.stop('SIGTERM');
      await jsm.streams.delete(big).catch(() => undefined);
      return;
    }
  }

  // Baseline: the same rows, gzipped in-process in chunks of 1,000.
  const tb = performance.now();
  let baseSize = 0;
  await gzipRows(head, (c) => (baseSize += c.length));
  const baseSeconds = (performance.now() - tb) / 1000;

  const rssBefore = await rssKb(pid);
  let rssPeak = rssBefore;
  const sampler = setInterval(() => void rssKb(pid).then((kb) => (rssPeak = Math.max(rssPeak, kb))), 20);
  const tBackup = performance.now();
  const res = await fetch(`http://127.0.0.1:${fPorts.gradesGetPort}/backup`, {
    headers: { authorization: AUTH },
  });
  let size = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) size += chunk.length;
  const backupSeconds = (performance.now() - tBackup) / 1000;
  clearInterval(sampler);
  console.log(
    `  baseline  gzip (level ${BACKUP_GZIP_LEVEL}, as the backup) of the same rows in-process: ${baseSeconds.toFixed(2)} s, ${(baseSize / 1e6).toFixed(1)} MB`,
  );
  console.log(
    `  backup    GET /backup: ${backupSeconds.toFixed(2)} s (${(backupSeconds / baseSeconds).toFixed(2)}x), ${(size / 1e6).toFixed(1)} MB, peak RSS growth ${((rssPeak - rssBefore) / 1024).toFixed(1)} MB`,
  );

  const tJoin = Date.now();
  const c = startService(bigEnv('c', { GRADES_PEERS: `http://127.0.0.1:${fPorts.gradesGetPort}` }));
  services.push(c);
  const cPorts = (await c.ready) as { gradesGetPort: number };
  await waitReady(c, cPorts.gradesGetPort);
  const joinSeconds = (Date.now() - tJoin) / 1000;
  const loaded = c.logs.find((l) => l.msg === 'backup loaded') as { ms?: number; rows?: number } | undefined;
  console.log(
    `  join      new replica ready ${joinSeconds.toFixed(1)} s after spawn (backup download and load ${((loaded?.ms ?? NaN) / 1000).toFixed(1)} s, ${loaded?.rows} rows)`,
  );
  await new Promise((r) => setTimeout(r, 3000));
  const cMem = await memoryOf(cPorts.gradesGetPort, c.proc.pid ?? 0);
  console.log(
    `  joined    per record over an idle replica: heap ${perRecord(cMem, 'heap')} B + external ${perRecord(cMem, 'external')} B (no forced GC), RSS ${perRecord(cMem, 'rss')} B`,
  );
  await Promise.all([f.stop('SIGTERM'), c.stop('SIGTERM')]);
  await jsm.streams.delete(big).catch(() => undefined);
}

async function main(): Promise<void> {
  const tag = `BENCH_${process.pid}`;
  const dir = await mkdtemp(join(tmpdir(), 'bench-grades-'));
  const services: RunningService[] = [];
  const bare = await spawnBare();
  const nc = await connect({ servers: NATS_URL });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  try {
    const env = (name: string, extra: Record<string, string> = {}) => ({
      REPLICA_ID: name,
      GRADES_PASSWORD: PASSWORD,
      GRADES_STREAM: tag,
      GRADES_SUBJECT: `${tag}.set`,
      NATS_URL,
      NATS_KEYS_BUCKET: `${tag}_keys`,
      SIGNING_WORKERS: '0',
      LOG_LEVEL: 'info',
      ...extra,
    });
    const a = startService(env('a'));
    services.push(a);
    const aPorts = (await a.ready) as { gradesSetPort: number; gradesGetPort: number };
    await waitReady(a, aPorts.gradesGetPort);
    const b = startService(env('b', { GRADES_PEERS: `http://127.0.0.1:${aPorts.gradesGetPort}` }));
    services.push(b);
    const bPorts = (await b.ready) as { gradesSetPort: number; gradesGetPort: number };
    await waitReady(b, bPorts.gradesGetPort);

    await fetch(`http://127.0.0.1:${aPorts.gradesSetPort}/set`, {
      method: 'POST',
      headers: { authorization: AUTH, 'content-type': 'application/json' },
      body: JSON.stringify({
        user_id: 'bench-user',
        postpaid_limit: 1,
        spp: 2,
        shipping_fee: 3,
        return_fee: 4,
      }),
    });
    console.log(
      `grades: ${ROUNDS} rounds × ${SECONDS}s, ${CONNECTIONS} connections (${USE_WRK ? 'wrk' : 'autocannon'}), baseline and service alternate`,
    );
    if (ONLY.has('get'))
      await alternate(
        'GET /get',
        () => wrk(`http://127.0.0.1:${bare.port}/get?user_id=bench-user`),
        () => wrk(`http://127.0.0.1:${aPorts.gradesGetPort}/get?user_id=bench-user`),
      );

    const setScript = join(dir, 'set.lua');
    await writeSetScript(setScript, `string.format('{"user_id":"u%d","spp":%d}', n % 100000, n)`);
    if (ONLY.has('set'))
      await alternate(
        'POST /set (replication on; answered once stored in the stream)',
        () => wrk(`http://127.0.0.1:${bare.port}/set`, setScript),
        () => wrk(`http://127.0.0.1:${aPorts.gradesSetPort}/set`, setScript),
      );
    // Let b catch up before measuring lag.
    await new Promise((r) => setTimeout(r, 3000));

    if (ONLY.has('lag')) {
      // Replication lag at a steady rate: every 20th write is watched on b until visible.
      const setLatencies: number[] = [];
      const lags: number[] = [];
      const total = RATE * SECONDS;
      const watchers: Promise<void>[] = [];
      // Warm both replicas' set, replication and get paths first; the first seconds of a process are JIT time.
      for (let i = 0; i < 3000; i += 50) {
        await Promise.all(
          Array.from({ length: 50 }, (_, j) =>
            fetch(`http://127.0.0.1:${aPorts.gradesSetPort}/set`, {
              method: 'POST',
              headers: { authorization: AUTH, 'content-type': 'application/json' },
              body: JSON.stringify({ user_id: `warm-${i + j}`, spp: 1 }),
            }).then((r) => r.arrayBuffer()),
          ),
        );
        await fetch(`http://127.0.0.1:${bPorts.gradesGetPort}/get?user_id=warm-${i}`).then((r) =>
          r.arrayBuffer(),
        );
      }
      // The measuring client uses undici pools (much lighter than fetch): it shares the cores with both replicas.
      const setPool = new Pool(`http://127.0.0.1:${aPorts.gradesSetPort}`, { connections: 16 });
      const getPool = new Pool(`http://127.0.0.1:${bPorts.gradesGetPort}`, { connections: 16 });
      const started = Date.now();
      for (let i = 0; i < total; i++) {
        const due = started + (i * 1000) / RATE;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const userId = `lag-${i}`;
        const sentAt = performance.now();
        const set = setPool
          .request({
            method: 'POST',
            path: '/set',
            headers: { authorization: AUTH, 'content-type': 'application/json' },
            body: JSON.stringify({ user_id: userId, spp: i }),
          })
          .then(async (r) => {
            await r.body.dump();
            setLatencies.push(performance.now() - sentAt);
          });
        if (i % 20 === 0) {
          watchers.push(
            (async () => {
              await set;
              for (;;) {
                const res = await getPool.request({ method: 'GET', path: `/get?user_id=${userId}` });
                await res.body.dump();
                if (res.statusCode === 200) break;
                await new Promise((r) => setImmediate(r));
              }
              lags.push(performance.now() - sentAt);
            })(),
          );
        }
      }
      await Promise.all(watchers);
      await Promise.all([setPool.close(), getPool.close()]);
      // Floor: JetStream publish to ordered-consumer delivery on the same server.
      await jsm.streams.add({ name: `${tag}_FLOOR`, subjects: [`${tag}.floor`] });
      const floorConsumer = await js.consumers.get(`${tag}_FLOOR`);
      const floorMessages = await floorConsumer.consume();
      const floor: number[] = [];
      const sent = new Map<number, number>();
      const reading = (async () => {
        for await (const m of floorMessages) {
          floor.push(performance.now() - (sent.get(m.seq) ?? 0));
          if (floor.length >= 250) break;
        }
      })();
      for (let i = 0; i < 250; i++) {
        // A fresh stream numbers messages 1, 2, …: record the send time before the message can arrive.
        sent.set(i + 1, performance.now());
        await js.publish(`${tag}.floor`, 'x');
        await new Promise((r) => setTimeout(r, 4));
      }
      await reading;
      console.log(
        `\nreplication lag, set on a → visible on b, ${RATE} sets/s for ${SECONDS}s (${lags.length} samples)`,
      );
      console.log(
        `  baseline  JetStream publish → consume  p50 ${quantile(floor, 0.5).toFixed(2)} ms  p99 ${quantile(floor, 0.99).toFixed(2)} ms`,
      );
      console.log(
        `  service   set → get on another replica p50 ${quantile(lags, 0.5).toFixed(2)} ms  p99 ${quantile(lags, 0.99).toFixed(2)} ms`,
      );
      console.log(
        `  (the set request alone: p50 ${quantile(setLatencies, 0.5).toFixed(2)} ms  p99 ${quantile(setLatencies, 0.99).toFixed(2)} ms)`,
      );
    }

    if (ONLY.has('outbox')) {
      // A replica whose NATS is cut (through a fault proxy) and that keeps writes in its outbox log.
      const target = new URL(NATS_URL);
      const proxy = new TcpFaultProxy({ host: target.hostname, port: Number(target.port || 4222) });
      await proxy.start();
      const o = startService(
        env('o', { NATS_URL: `nats://127.0.0.1:${proxy.port}`, GRADES_OUTBOX_DIR: join(dir, 'outbox-o') }),
      );
      services.push(o);
      const oPorts = (await o.ready) as { gradesSetPort: number; gradesGetPort: number };
      await waitReady(o, oPorts.gradesGetPort);
      await proxy.setMode('refuse');
      const fsyncBare = await spawnBare('scripts/lib/bare-fsync-server.ts', [dir]);
      try {
        await alternate(
          'POST /set during a NATS outage (outbox log, fdatasync with group commit; answered 202)',
          () => wrk(`http://127.0.0.1:${fsyncBare.port}/set`, setScript),
          () => wrk(`http://127.0.0.1:${oPorts.gradesSetPort}/set`, setScript),
        );
      } finally {
        fsyncBare.proc.kill('SIGTERM');
        await o.stop('SIGKILL');
        await proxy.stop();
      }
    }

    if (ONLY.has('backup') || ONLY.has('filled'))
      await backupAndJoin(env, services, dir, jsm, tag, bare.port);
  } finally {
    await Promise.all(services.map((s) => s.stop('SIGTERM')));
    bare.proc.kill('SIGTERM');
    for (const name of [tag, `${tag}_FLOOR`, `${tag}_BIG`, `${tag}_AGAINST`, `KV_${tag}_keys`])
      await jsm.streams.delete(name).catch(() => undefined);
    await nc.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
