import { expect } from 'chai';
import type pg from 'pg';
import { createApp, type App } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import { makeKey } from '../support/keys.js';
import {
  databaseAddress,
  directPool,
  dropSchema,
  TEST_DATABASE_URL,
  uniqueSchema,
  urlVia,
} from '../support/postgres.js';
import { TcpFaultProxy } from '../support/tcp-proxy.js';

const HOUR = 3_600_000;

/** Polls `check` until it holds or `ms` pass. */
async function eventually(check: () => Promise<boolean>, ms: number): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > ms) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('tokens readiness while Postgres answers but refuses key writes (real Postgres)', () => {
  let admin: pg.Pool;
  let proxy: TcpFaultProxy;
  let schema: string;
  let app: App;

  before(async () => {
    admin = directPool();
    schema = uniqueSchema('ready');
    proxy = new TcpFaultProxy(databaseAddress(TEST_DATABASE_URL));
    await proxy.start();
    app = await createApp(
      loadConfig({
        DATABASE_URL: urlVia(proxy.port),
        DATABASE_SCHEMA: schema,
        DATABASE_QUERY_TIMEOUT_MS: '1000',
        KEYSTORE_PG_TIMEOUT_MS: '300',
        KEYSTORE_PROBE_INTERVAL_MS: '100',
        KEYSTORE_FLUSH_INTERVAL_MS: '200',
        TOKENS_PORT: '0',
        GRADES_SET_PORT: '0',
        GRADES_GET_PORT: '0',
        GRADES_PASSWORD: 'readiness-test-password',
        SIGNING_WORKERS: '0',
      }),
      { log: silentLogger() },
    );
    await app.start();
  });
  after(async () => {
    await app.stop();
    await proxy.stop();
    await dropSchema(admin, schema);
    await admin.end();
  });

  async function readiness(): Promise<{ status: number; keyStore: Record<string, unknown> }> {
    const res = await fetch(
      `http://127.0.0.1:${(app.summary() as { tokensPort: number }).tokensPort}/readyz`,
    );
    const body = (await res.json()) as { checks: { 'key-store': { detail: Record<string, unknown> } } };
    return { status: res.status, keyStore: body.checks['key-store'].detail };
  }

  it('an outage leaves the replica ready; a Postgres that answers yet refuses writes does not, until writes go through', async () => {
    await proxy.setMode('refuse');
    await app.tokens.keyStore.create(makeKey({ expiresAt: Date.now() + HOUR }));
    expect(await readiness()).to.deep.include({ status: 200 });
    expect((await readiness()).keyStore).to.include({
      postgresAvailable: false,
      pending: 1,
      writesStuck: false,
    });

    // The table is gone (a broken schema): pings answer, inserts fail with SQLSTATE 42P01, not a data error.
    await admin.query(`ALTER TABLE ${schema}.public_keys RENAME TO public_keys_away`);
    await proxy.setMode('pass');
    await eventually(async () => (await readiness()).status === 503, 3000);
    expect((await readiness()).keyStore).to.include({ writesStuck: true, pending: 1 });

    await admin.query(`ALTER TABLE ${schema}.public_keys_away RENAME TO public_keys`);
    // Ready again once the pending write went through. Checked in one answer: a probe that times out on a
    // loaded machine may mark Postgres unavailable for a moment, which by itself leaves the replica ready.
    let last: { status: number; keyStore: Record<string, unknown> } | undefined;
    await eventually(async () => {
      last = await readiness();
      return last.status === 200 && last.keyStore.pending === 0 && last.keyStore.postgresAvailable === true;
    }, 3000).catch((err: Error) => {
      throw new Error(`${err.message}: last answer ${JSON.stringify(last)}`);
    });
    expect(last?.keyStore).to.include({ writesStuck: false, pending: 0, postgresAvailable: true });
  });
});
