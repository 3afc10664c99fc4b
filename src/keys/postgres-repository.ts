import type { Pool } from 'pg';
import type { Clock } from '../clock.js';
import { ConfigError, StorageDataError, StorageError } from '../errors.js';
import type { PublicJwk, PublicKey, SigningAlg } from './public-key.js';
import type { Pingable, PublicKeyRepository } from './repository.js';

/** Schema versions, applied in order, each once, under an advisory lock so replicas never race. */
const MIGRATIONS: readonly { version: number; sql: (schema: string) => string }[] = [
  {
    version: 1,
    sql: (s) => `
      CREATE TABLE IF NOT EXISTS ${s}.public_keys (
        kid         text PRIMARY KEY,
        alg         text NOT NULL,
        jwk         jsonb NOT NULL,
        replica_id  text NOT NULL,
        created_at  timestamptz NOT NULL,
        expires_at  timestamptz NOT NULL
      );
      CREATE INDEX IF NOT EXISTS public_keys_expires_at ON ${s}.public_keys (expires_at);`,
  },
];

interface KeyRow {
  kid: string;
  alg: string;
  jwk: PublicJwk;
  replica_id: string;
  created_at: Date;
  expires_at: Date;
}

const COLUMNS = 'kid, alg, jwk, replica_id, created_at, expires_at';

function fromRow(row: KeyRow): PublicKey {
  return {
    kid: row.kid,
    alg: row.alg as SigningAlg,
    jwk: row.jwk,
    replicaId: row.replica_id,
    createdAt: row.created_at.getTime(),
    expiresAt: row.expires_at.getTime(),
  };
}

/**
 * A pg error as ours: SQLSTATE classes 22 (data exception: a NUL byte, a date out of range) and 23 (integrity
 * constraint violation) refuse this record only, so they become a {@link StorageDataError}; anything else (no
 * connection, a timeout, a missing table) is the store's, a {@link StorageError}.
 */
export function toStorageError(operation: string, err: unknown): StorageError | StorageDataError {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code)) {
    return new StorageDataError(`postgres ${operation} refused the record (SQLSTATE ${code})`, code, {
      cause: err,
    });
  }
  return new StorageError(`postgres ${operation} failed`, { cause: err });
}

/** Options of {@link PostgresPublicKeyRepository}. */
export interface PostgresRepositoryOptions {
  /** A pool configured with its own connect and query timeouts (see `createPgPool`). */
  readonly pool: Pool;
  /** The SQL schema that holds this service's tables; validated as a plain identifier by the config. */
  readonly schema: string;
  readonly clock: Clock;
}

/**
 * Public keys in Postgres. The schema is created or migrated before the first query, and again after a failed
 * attempt, so a replica that started while Postgres was down migrates once it is back. Every pg error is
 * rethrown as ours with the original as `cause` ({@link toStorageError}): a {@link StorageDataError} when
 * Postgres refused the record for its data, a {@link StorageError} otherwise.
 */
export class PostgresPublicKeyRepository implements PublicKeyRepository, Pingable {
  readonly #pool: Pool;
  readonly #schema: string;
  readonly #clock: Clock;
  #migrated: Promise<void> | undefined;

  constructor(options: PostgresRepositoryOptions) {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(options.schema))
      throw new ConfigError(`bad schema name ${options.schema}`);
    this.#pool = options.pool;
    this.#schema = options.schema;
    this.#clock = options.clock;
  }

  /** Creates or migrates the schema; runs once per process unless it fails. */
  migrate(): Promise<void> {
    this.#migrated ??= this.#runMigrations().catch((err: unknown) => {
      this.#migrated = undefined;
      throw err;
    });
    return this.#migrated;
  }

  /** A round trip that touches no data. */
  async ping(): Promise<void> {
    await this.#query('ping', 'SELECT 1');
  }

  /** Inserts `key`; a `kid` already stored is left as it is (idempotent). */
  async create(key: PublicKey): Promise<void> {
    await this.migrate();
    await this.#query(
      'create',
      `INSERT INTO ${this.#schema}.public_keys (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (kid) DO NOTHING`,
      [
        key.kid,
        key.alg,
        JSON.stringify(key.jwk),
        key.replicaId,
        new Date(key.createdAt),
        new Date(key.expiresAt),
      ],
    );
  }

  /** The unexpired key with `kid`, judged by the injected clock. */
  async get(kid: string): Promise<PublicKey | undefined> {
    await this.migrate();
    const rows = await this.#query<KeyRow>(
      'get',
      `SELECT ${COLUMNS} FROM ${this.#schema}.public_keys WHERE kid = $1 AND expires_at > $2`,
      [kid, new Date(this.#clock.now())],
    );
    return rows[0] ? fromRow(rows[0]) : undefined;
  }

  /** Every unexpired key, oldest first. */
  async list(): Promise<PublicKey[]> {
    await this.migrate();
    const rows = await this.#query<KeyRow>(
      'list',
      `SELECT ${COLUMNS} FROM ${this.#schema}.public_keys WHERE expires_at > $1 ORDER BY created_at`,
      [new Date(this.#clock.now())],
    );
    return rows.map(fromRow);
  }

  /** Deletes expired keys. */
  async deleteExpired(): Promise<number> {
    await this.migrate();
    const result = await this.#pool
      .query(`DELETE FROM ${this.#schema}.public_keys WHERE expires_at <= $1`, [new Date(this.#clock.now())])
      .catch((err: unknown) => {
        throw toStorageError('deleteExpired', err);
      });
    return result.rowCount ?? 0;
  }

  async #query<Row>(what: string, sql: string, params: unknown[] = []): Promise<Row[]> {
    try {
      const result = await this.#pool.query(sql, params);
      return result.rows as Row[];
    } catch (err) {
      throw toStorageError(what, err);
    }
  }

  async #runMigrations(): Promise<void> {
    const s = this.#schema;
    let client;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      throw new StorageError('postgres migrate failed to connect', { cause: err });
    }
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${s}.migrations`]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${s}.schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const applied = await client.query<{ version: number }>(`SELECT version FROM ${s}.schema_migrations`);
      const done = new Set(applied.rows.map((r) => r.version));
      for (const migration of MIGRATIONS) {
        if (done.has(migration.version)) continue;
        await client.query(migration.sql(s));
        await client.query(`INSERT INTO ${s}.schema_migrations (version) VALUES ($1)`, [migration.version]);
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw new StorageError('postgres migrate failed', { cause: err });
    } finally {
      client.release();
    }
  }
}
