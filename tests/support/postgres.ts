import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The test Postgres: the machine's own on loopback unless TEST_DATABASE_URL says otherwise. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A schema name no other test run uses. */
export function uniqueSchema(prefix: string): string {
  return `t_${prefix}_${process.pid}_${randomBytes(3).toString('hex')}`;
}

/** The test database URL with its host and port replaced, to go through a proxy. */
export function urlVia(port: number, url = TEST_DATABASE_URL): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(port);
  return u.toString();
}

/** Where the test database listens. */
export function databaseAddress(url = TEST_DATABASE_URL): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 5432) };
}

/** A direct pool for a test's own checks and clean-up (never through a fault proxy). */
export function directPool(): pg.Pool {
  return new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 });
}

/** Kids stored in `schema`, sorted; [] if the table does not exist yet. */
export async function storedKids(pool: pg.Pool, schema: string): Promise<string[]> {
  const exists = await pool.query<{ t: string | null }>(`SELECT to_regclass($1) AS t`, [
    `${schema}.public_keys`,
  ]);
  if (!exists.rows[0]?.t) return [];
  const rows = await pool.query<{ kid: string }>(`SELECT kid FROM ${schema}.public_keys ORDER BY kid`);
  return rows.rows.map((r) => r.kid);
}

/** Drops a test schema and everything in it. */
export async function dropSchema(pool: pg.Pool, schema: string): Promise<void> {
  await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
}
