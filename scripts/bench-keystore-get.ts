/**
 * Times `get` on the fault-tolerant key repository with Postgres up, refusing connections, and stalled (accepting,
 * never answering), next to the in-memory repository alone, in alternating rounds (baseline, subject, baseline,
 * subject, …) so that drift on a shared machine hits both alike. Prints medians over rounds and the ratio.
 *
 *   node --import tsx scripts/bench-keystore-get.ts [--rounds 7] [--ms 300]
 *
 * Needs the Postgres of DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test); uses its own schema and
 * drops it afterwards. Outages are made by a fault proxy on loopback; the real server is never touched.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { systemClock } from '../src/clock.js';
import { createFaultTolerantRepository } from '../src/keys/fault-tolerant-repository.js';
import { KeyStore } from '../src/keys/key-store.js';
import { MemoryPublicKeyRepository } from '../src/keys/memory-repository.js';
import { createPgPool } from '../src/postgres/pg-pool.js';
import { PostgresPublicKeyRepository } from '../src/keys/postgres-repository.js';
import type { PublicKey } from '../src/keys/public-key.js';
import { silentLogger } from '../src/log.js';
import { TcpFaultProxy, type ProxyMode } from '../tests/support/tcp-proxy.js';
import { median, quantile } from './lib/load.js';

const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '7' }, ms: { type: 'string', default: '300' } },
});
const ROUNDS = Number(values.rounds);
const RUN_MS = Number(values.ms);
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const TIMEOUT_MS = 500;

interface Run {
  opsPerSec: number;
  latenciesUs: number[];
}

/** Calls `get` back to back for `ms` milliseconds, one at a time, timing each call. */
async function run(get: () => Promise<unknown>, ms: number): Promise<Run> {
  const latenciesUs: number[] = [];
  const started = process.hrtime.bigint();
  const deadline = started + BigInt(ms) * 1_000_000n;
  let now = started;
  while (now < deadline) {
    const t0 = process.hrtime.bigint();
    await get();
    now = process.hrtime.bigint();
    latenciesUs.push(Number(now - t0) / 1000);
  }
  return { opsPerSec: latenciesUs.length / (Number(now - started) / 1e9), latenciesUs };
}

interface Row {
  mode: string;
  subject: string;
  opsPerSec: number;
  p50: number;
  p99: number;
  ratio?: number;
  note?: string;
}

/** Alternates baseline and subject for ROUNDS rounds; returns one row each. */
async function compare(
  mode: string,
  baseline: () => Promise<unknown>,
  subjects: [string, () => Promise<unknown>][],
): Promise<Row[]> {
  const runs = new Map<string, Run[]>([
    ['memory (baseline)', []],
    ...subjects.map(([n]) => [n, []] as [string, Run[]]),
  ]);
  for (let round = 0; round < ROUNDS; round++) {
    runs.get('memory (baseline)')?.push(await run(baseline, RUN_MS));
    for (const [name, get] of subjects) runs.get(name)?.push(await run(get, RUN_MS));
  }
  const rows: Row[] = [];
  let base = NaN;
  for (const [subject, rs] of runs) {
    const all = rs.flatMap((r) => r.latenciesUs);
    const opsPerSec = median(rs.map((r) => r.opsPerSec));
    if (Number.isNaN(base)) base = opsPerSec;
    rows.push({
      mode,
      subject,
      opsPerSec,
      p50: quantile(all, 0.5),
      p99: quantile(all, 0.99),
      ratio: opsPerSec / base,
    });
  }
  return rows;
}

async function main(): Promise<void> {
  const schema = `bench_keystore_${process.pid}`;
  const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
  const target = new URL(DATABASE_URL);
  const proxy = new TcpFaultProxy({ host: target.hostname, port: Number(target.port || 5432) });
  await proxy.start();
  const viaProxy = new URL(DATABASE_URL);
  viaProxy.hostname = '127.0.0.1';
  viaProxy.port = String(proxy.port);
  const log = silentLogger();
  const poolOptions = { poolMax: 10, queryTimeoutMs: 2000, connectTimeoutMs: 2000, applicationName: 'bench' };
  const directPool = createPgPool({ url: DATABASE_URL, ...poolOptions }, log);
  const proxiedPool = createPgPool({ url: viaProxy.toString(), ...poolOptions }, log);

  const key: PublicKey = {
    kid: 'bench-key',
    alg: 'ES256',
    jwk: { kty: 'EC', kid: 'bench-key', alg: 'ES256', use: 'sig', crv: 'P-256', x: 'x', y: 'y' },
    createdAt: Date.now(),
    expiresAt: Date.now() + 24 * 3_600_000,
    replicaId: 'bench',
  };
  const memory = new MemoryPublicKeyRepository(systemClock);
  await memory.create(key);
  const baseline = () => memory.get(key.kid);

  const build = (pool: pg.Pool) =>
    createFaultTolerantRepository({
      postgres: new PostgresPublicKeyRepository({ pool, schema, clock: systemClock }),
      clock: systemClock,
      timeoutMs: TIMEOUT_MS,
      log,
    });

  const rows: Row[] = [];
  try {
    // Postgres up, direct connection.
    const up = build(directPool);
    await up.loadAll();
    await up.create(key);
    const upStore = new KeyStore({
      backend: up,
      flushIntervalMs: 5000,
      probeIntervalMs: 2000,
      cleanupIntervalMs: 60_000,
      log,
    });
    await upStore.start();
    rows.push(
      ...(await compare('postgres up', baseline, [
        ['fault-tolerant', () => up.get(key.kid)],
        ['key store actor', () => upStore.get(key.kid)],
      ])),
    );
    await upStore.stop();

    for (const mode of ['refuse', 'stall'] as ProxyMode[]) {
      await proxy.setMode('pass');
      const repo = build(proxiedPool);
      await repo.loadAll();
      await repo.create(key);
      await proxy.setMode(mode);
      const t0 = process.hrtime.bigint();
      await repo.get(key.kid); // the one call that meets the fault
      const firstMs = Number(process.hrtime.bigint() - t0) / 1e6;
      const store = new KeyStore({
        backend: repo,
        flushIntervalMs: 5000,
        probeIntervalMs: 2000,
        cleanupIntervalMs: 60_000,
        log,
      });
      await store.start();
      const label = mode === 'refuse' ? 'postgres refusing' : 'postgres stalled';
      const result = await compare(label, baseline, [
        ['fault-tolerant', () => repo.get(key.kid)],
        ['key store actor', () => store.get(key.kid)],
      ]);
      const ft = result.find((r) => r.subject === 'fault-tolerant');
      if (ft)
        ft.note = `first call after the fault: ${firstMs.toFixed(1)} ms; available=${repo.postgresAvailable}`;
      rows.push(...result);
      await store.stop();
    }
  } finally {
    await proxy.stop();
    await Promise.allSettled([directPool.end(), proxiedPool.end()]);
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  }

  console.log(`key store get: ${ROUNDS} rounds of ${RUN_MS} ms each, baseline and subjects alternating`);
  console.log(
    [
      'mode'.padEnd(18),
      'subject'.padEnd(18),
      'ops/s'.padStart(10),
      'p50 µs'.padStart(9),
      'p99 µs'.padStart(9),
      'vs memory'.padStart(10),
      '  note',
    ].join(''),
  );
  for (const r of rows) {
    console.log(
      [
        r.mode.padEnd(18),
        r.subject.padEnd(18),
        Math.round(r.opsPerSec).toString().padStart(10),
        r.p50.toFixed(1).padStart(9),
        r.p99.toFixed(1).padStart(9),
        `${(r.ratio ?? 1).toFixed(3)}x`.padStart(10),
        r.note ? `  ${r.note}` : '',
      ].join(''),
    );
  }
}

await main();
