import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { MIN_SECRET_BYTES } from './cluster/message-auth.js';
import { ConfigError } from './errors.js';
import { SIGNING_ALGS } from './keys/public-key.js';

/** Treats an empty variable like an unset one, so `FOO=` falls back to the default. */
const unsetIfEmpty = (v: unknown) => (v === '' ? undefined : v);

const port = (fallback: number) =>
  z.preprocess(unsetIfEmpty, z.coerce.number().int().min(0).max(65535).default(fallback));
const millis = (fallback: number) =>
  z.preprocess(unsetIfEmpty, z.coerce.number().int().positive().default(fallback));
const seconds = millis;
const optionalUrl = (protocols: RegExp) =>
  z.preprocess(
    unsetIfEmpty,
    z
      .string()
      .url()
      .refine((u) => protocols.test(new URL(u).protocol), { message: `protocol must match ${protocols}` })
      .optional(),
  );

/** Default of `KEY_ACTIVATION_DELAY_S`: the `max-age` of the JWKS (`JWKS_MAX_AGE_S` in the key routes). */
const DEFAULT_ACTIVATION_DELAY_S = 300;
const optionalString = z.preprocess(unsetIfEmpty, z.string().min(1).max(4096).optional());
const optionalFile = z.preprocess(
  unsetIfEmpty,
  z
    .string()
    .min(1)
    .refine((path) => existsSync(path), { message: 'no such file' })
    .optional(),
);
const clusterSecret = z.preprocess(
  unsetIfEmpty,
  z
    .string()
    .refine((s) => Buffer.byteLength(s, 'utf8') >= MIN_SECRET_BYTES, {
      message: `at least ${MIN_SECRET_BYTES} bytes (e.g. openssl rand -base64 32)`,
    })
    .optional(),
);

/** Every setting, its default and its check. The README's configuration table mirrors this schema. */
const envSchema = z
  .object({
    LOG_LEVEL: z.preprocess(
      unsetIfEmpty,
      z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    ),
    HOST: z.preprocess(unsetIfEmpty, z.string().min(1).default('127.0.0.1')),
    TOKENS_PORT: port(8080),
    REPLICA_ID: z.preprocess(
      unsetIfEmpty,
      z
        .string()
        .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, "_", "." or "-", at most 64')
        .optional(),
    ),
    DATABASE_URL: optionalUrl(/^postgres(ql)?:$/),
    DATABASE_SCHEMA: z.preprocess(
      unsetIfEmpty,
      z
        .string()
        .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'a lower-case SQL identifier')
        .default('token_exchange'),
    ),
    DATABASE_POOL_MAX: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(1).max(100).default(10)),
    DATABASE_QUERY_TIMEOUT_MS: millis(2000),
    DATABASE_CONNECT_TIMEOUT_MS: millis(2000),
    NATS_URL: optionalUrl(/^(nats|tls):$/),
    NATS_CONNECT_WAIT_MS: millis(2000),
    NATS_USER: optionalString,
    NATS_PASSWORD: optionalString,
    NATS_TOKEN: optionalString,
    NATS_CREDS_FILE: optionalFile,
    NATS_TLS_CA_FILE: optionalFile,
    NATS_TLS_CERT_FILE: optionalFile,
    NATS_TLS_KEY_FILE: optionalFile,
    CLUSTER_SECRET: clusterSecret,
    CLUSTER_SECRET_PREVIOUS: clusterSecret,
    NATS_KEYS_BUCKET: z.preprocess(
      unsetIfEmpty,
      z
        .string()
        .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, "_" or "-"')
        .default('token_public_keys'),
    ),
    TOKENS_ISSUER: z.preprocess(unsetIfEmpty, z.string().url().optional()),
    TOKENS_CONFIG: z.preprocess(unsetIfEmpty, z.string().min(1).optional()),
    TOKEN_DEFAULT_TTL_S: seconds(900),
    TOKENS_AUDIT_LOG: z.preprocess(
      unsetIfEmpty,
      z
        .string()
        .min(1)
        .default('stdout')
        .transform((v): 'stdout' | 'off' | { path: string } =>
          v === 'stdout' || v === 'off' ? v : { path: v },
        ),
    ),
    KEY_PUBLISH_GRACE_S: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(0).default(600)),
    KEY_PUBLISH_RETRY_MS: millis(2000),
    // Unset: the JWKS max-age (300 s), or less when keys rotate more often (see loadConfig).
    KEY_ACTIVATION_DELAY_S: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(0).optional()),
    KEY_STARTUP_HOLD: z.preprocess(
      unsetIfEmpty,
      z
        .enum(['true', 'false', '1', '0'])
        .default('false')
        .transform((v) => v === 'true' || v === '1'),
    ),
    SIGNING_WORKERS: z.preprocess(
      unsetIfEmpty,
      z.coerce
        .number()
        .int()
        .min(0)
        .max(64)
        .default(Math.max(1, availableParallelism() - 1)),
    ),
    SIGNING_PIPELINE_DEPTH: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(1).max(64).default(4)),
    SIGNING_MAX_BATCH: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(1).max(4096).default(8)),
    KEYSTORE_PG_TIMEOUT_MS: millis(500),
    KEYSTORE_FLUSH_INTERVAL_MS: millis(5000),
    KEYSTORE_PROBE_INTERVAL_MS: millis(2000),
    KEYSTORE_CLEANUP_INTERVAL_MS: millis(60_000),
    KEYSTORE_RELOAD_INTERVAL_MS: millis(30_000),
    SIGNING_ALG: z.preprocess(unsetIfEmpty, z.enum(SIGNING_ALGS).default('ES256')),
    KEY_ACCEPT_ALGS: z.preprocess(
      unsetIfEmpty,
      z
        .string()
        .transform((s) =>
          s
            .split(',')
            .map((a) => a.trim())
            .filter(Boolean),
        )
        .pipe(z.array(z.enum(SIGNING_ALGS)).min(1))
        .optional(),
    ),
    KEY_ROTATION_INTERVAL_S: seconds(3600),
    TOKEN_MAX_TTL_S: seconds(3600),
    CLOCK_SKEW_S: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(0).max(3600).default(60)),
    HTTP_MAX_BODY_BYTES: z.preprocess(
      unsetIfEmpty,
      z.coerce
        .number()
        .int()
        .min(1024)
        .max(16 * 1024 * 1024)
        .default(64 * 1024),
    ),
    HTTP_HEADERS_TIMEOUT_MS: millis(5_000),
    HTTP_REQUEST_TIMEOUT_MS: millis(15_000),
    HTTP_KEEP_ALIVE_TIMEOUT_MS: millis(5_000),
    HTTP_MAX_CONNECTIONS: z.preprocess(
      unsetIfEmpty,
      z.coerce.number().int().min(1).max(1_000_000).default(1_000),
    ),
    SHUTDOWN_TIMEOUT_MS: millis(10_000),
    GRADES_SET_PORT: port(8081),
    GRADES_GET_PORT: port(8082),
    GRADES_USER: z.preprocess(unsetIfEmpty, z.string().min(1).max(128).default('grades')),
    GRADES_PASSWORD: z.preprocess(
      unsetIfEmpty,
      z.string().min(8, 'at least 8 characters').max(256).optional(),
    ),
    GRADES_PEERS: z.preprocess(
      unsetIfEmpty,
      z
        .string()
        .transform((s) =>
          s
            .split(',')
            .map((p) => p.trim())
            .filter(Boolean),
        )
        .pipe(z.array(z.string().url()))
        .default([]),
    ),
    GRADES_STREAM: z.preprocess(
      unsetIfEmpty,
      z
        .string()
        .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, "_" or "-"')
        .default('GRADES'),
    ),
    GRADES_SUBJECT: z.preprocess(
      unsetIfEmpty,
      z
        .string()
        .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'a NATS subject without wildcards')
        .default('grades.set'),
    ),
    GRADES_STREAM_MAX_AGE_S: z.preprocess(
      unsetIfEmpty,
      z.coerce
        .number()
        .int()
        .min(0)
        .default(7 * 24 * 3600),
    ),
    GRADES_STREAM_MAX_BYTES: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(-1).default(-1)),
    GRADES_DUPLICATE_WINDOW_S: z.preprocess(unsetIfEmpty, z.coerce.number().int().positive().default(120)),
    GRADES_MAX_BODY_BYTES: z.preprocess(
      unsetIfEmpty,
      z.coerce
        .number()
        .int()
        .min(256)
        .max(1024 * 1024)
        .default(16 * 1024),
    ),
    GRADES_PUBLISH_WINDOW: z.preprocess(
      unsetIfEmpty,
      z.coerce.number().int().min(1).max(10_000).default(256),
    ),
    GRADES_JOIN_ATTEMPTS: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(1).max(100).default(5)),
    GRADES_OUTBOX_DIR: z.preprocess(unsetIfEmpty, z.string().min(1).optional()),
    GRADES_RESTORE_FROM: z.preprocess(unsetIfEmpty, z.string().min(1).optional()),
    GRADES_WRITE_TIMEOUT_MS: z.preprocess(
      unsetIfEmpty,
      z.coerce.number().int().min(100).max(600_000).default(10_000),
    ),
  })
  .superRefine((env, ctx) => {
    if (env.TOKEN_DEFAULT_TTL_S > env.TOKEN_MAX_TTL_S) {
      ctx.addIssue({
        code: 'custom',
        path: ['TOKEN_DEFAULT_TTL_S'],
        message: 'must not exceed TOKEN_MAX_TTL_S',
      });
    }
    if (env.HTTP_HEADERS_TIMEOUT_MS > env.HTTP_REQUEST_TIMEOUT_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['HTTP_HEADERS_TIMEOUT_MS'],
        message: 'must not exceed HTTP_REQUEST_TIMEOUT_MS (the headers are part of the request)',
      });
    }
    if (
      env.KEY_ACTIVATION_DELAY_S !== undefined &&
      env.KEY_ACTIVATION_DELAY_S >= env.KEY_ROTATION_INTERVAL_S
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['KEY_ACTIVATION_DELAY_S'],
        message:
          'must be shorter than KEY_ROTATION_INTERVAL_S (a key is published, then signs, before the next)',
      });
    }
    if (env.KEY_ACCEPT_ALGS && !env.KEY_ACCEPT_ALGS.includes(env.SIGNING_ALG)) {
      ctx.addIssue({
        code: 'custom',
        path: ['KEY_ACCEPT_ALGS'],
        message: 'must include SIGNING_ALG (a replica must trust its own keys)',
      });
    }
    if ((env.NATS_USER === undefined) !== (env.NATS_PASSWORD === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['NATS_PASSWORD'],
        message: 'NATS_USER and NATS_PASSWORD go together',
      });
    }
    const natsAuths = [env.NATS_USER, env.NATS_TOKEN, env.NATS_CREDS_FILE].filter((v) => v !== undefined);
    if (natsAuths.length > 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['NATS_TOKEN'],
        message: 'one NATS authentication: NATS_USER/NATS_PASSWORD, NATS_TOKEN or NATS_CREDS_FILE',
      });
    }
    if ((env.NATS_TLS_CERT_FILE === undefined) !== (env.NATS_TLS_KEY_FILE === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['NATS_TLS_KEY_FILE'],
        message: 'NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE go together',
      });
    }
    if (env.CLUSTER_SECRET_PREVIOUS !== undefined && env.CLUSTER_SECRET === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['CLUSTER_SECRET_PREVIOUS'],
        message: 'needs CLUSTER_SECRET (the new secret) beside it',
      });
    }
    if (env.DATABASE_QUERY_TIMEOUT_MS <= env.KEYSTORE_PG_TIMEOUT_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['DATABASE_QUERY_TIMEOUT_MS'],
        message: 'must be longer than KEYSTORE_PG_TIMEOUT_MS (the key store gives up first)',
      });
    }
  });

/** The environment, validated and grouped: what {@link loadConfig} returns. */
const configSchema = envSchema.transform((e) => toConfig(e));

/** Every property of `T`, at every depth, read-only. */
type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/** The validated configuration, read once at start-up; inferred from the schema, so it is never typed twice. */
export type Config = DeepReadonly<z.output<typeof configSchema>>;

/** One way of authenticating to NATS. */
export type NatsAuth =
  | { readonly type: 'user'; readonly user: string; readonly password: string }
  | { readonly type: 'token'; readonly token: string }
  | { readonly type: 'creds'; readonly file: string };

/**
 * Credentials written into a NATS URL (`nats://user:password@host`, `nats://token@host`): the client does not
 * send them itself, so they are taken out as settings would be.
 */
/** The NATS authentication the settings name (at most one, checked above), else credentials in the URL. */
function natsAuth(e: z.output<typeof envSchema>): NatsAuth | undefined {
  if (e.NATS_USER !== undefined && e.NATS_PASSWORD !== undefined) {
    return { type: 'user', user: e.NATS_USER, password: e.NATS_PASSWORD };
  }
  if (e.NATS_TOKEN !== undefined) return { type: 'token', token: e.NATS_TOKEN };
  if (e.NATS_CREDS_FILE !== undefined) return { type: 'creds', file: e.NATS_CREDS_FILE };
  return e.NATS_URL === undefined ? undefined : urlAuth(e.NATS_URL);
}

function urlAuth(url: string): NatsAuth | undefined {
  const u = new URL(url);
  if (u.username === '') return undefined;
  const user = decodeURIComponent(u.username);
  return u.password === ''
    ? { type: 'token', token: user }
    : { type: 'user', user, password: decodeURIComponent(u.password) };
}

/**
 * Reads and validates the configuration from `env`. Throws a {@link ConfigError} naming every bad setting.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = configSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(env)'}: ${issue.message}`);
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  return parsed.data;
}

/** The settings grouped as the modules read them; the {@link Config} type is inferred from this. */
function toConfig(e: z.output<typeof envSchema>) {
  return {
    logLevel: e.LOG_LEVEL,
    host: e.HOST,
    replicaId: e.REPLICA_ID ?? `replica-${randomBytes(4).toString('hex')}`,
    tokens: { port: e.TOKENS_PORT, maxBodyBytes: e.HTTP_MAX_BODY_BYTES },
    http: {
      headersTimeoutMs: e.HTTP_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: e.HTTP_REQUEST_TIMEOUT_MS,
      keepAliveTimeoutMs: e.HTTP_KEEP_ALIVE_TIMEOUT_MS,
      maxConnections: e.HTTP_MAX_CONNECTIONS,
    },
    database: e.DATABASE_URL
      ? {
          url: e.DATABASE_URL,
          schema: e.DATABASE_SCHEMA,
          poolMax: e.DATABASE_POOL_MAX,
          queryTimeoutMs: e.DATABASE_QUERY_TIMEOUT_MS,
          connectTimeoutMs: e.DATABASE_CONNECT_TIMEOUT_MS,
        }
      : undefined,
    nats: e.NATS_URL
      ? {
          url: e.NATS_URL,
          connectWaitMs: e.NATS_CONNECT_WAIT_MS,
          keysBucket: e.NATS_KEYS_BUCKET,
          auth: natsAuth(e),
          tls:
            e.NATS_TLS_CA_FILE !== undefined || e.NATS_TLS_CERT_FILE !== undefined
              ? {
                  ...(e.NATS_TLS_CA_FILE !== undefined ? { caFile: e.NATS_TLS_CA_FILE } : {}),
                  ...(e.NATS_TLS_CERT_FILE !== undefined ? { certFile: e.NATS_TLS_CERT_FILE } : {}),
                  ...(e.NATS_TLS_KEY_FILE !== undefined ? { keyFile: e.NATS_TLS_KEY_FILE } : {}),
                }
              : undefined,
        }
      : undefined,
    clusterSecret: e.CLUSTER_SECRET
      ? { current: e.CLUSTER_SECRET, previous: e.CLUSTER_SECRET_PREVIOUS }
      : undefined,
    keyStore: {
      pgTimeoutMs: e.KEYSTORE_PG_TIMEOUT_MS,
      flushIntervalMs: e.KEYSTORE_FLUSH_INTERVAL_MS,
      probeIntervalMs: e.KEYSTORE_PROBE_INTERVAL_MS,
      cleanupIntervalMs: e.KEYSTORE_CLEANUP_INTERVAL_MS,
      reloadIntervalMs: e.KEYSTORE_RELOAD_INTERVAL_MS,
    },
    signing: {
      alg: e.SIGNING_ALG,
      acceptAlgs: e.KEY_ACCEPT_ALGS ?? [e.SIGNING_ALG],
      rotationIntervalS: e.KEY_ROTATION_INTERVAL_S,
      publishGraceS: e.KEY_PUBLISH_GRACE_S,
      publishRetryMs: e.KEY_PUBLISH_RETRY_MS,
      // The JWKS max-age by default: a verifier that honours Cache-Control and never refetches on an unknown kid
      // has then seen a key before any token signed with it exists. Shorter when keys rotate more often.
      activationDelayS:
        e.KEY_ACTIVATION_DELAY_S ?? Math.min(DEFAULT_ACTIVATION_DELAY_S, e.KEY_ROTATION_INTERVAL_S - 1),
      startupHold: e.KEY_STARTUP_HOLD,
      tokenMaxTtlS: e.TOKEN_MAX_TTL_S,
      clockSkewS: e.CLOCK_SKEW_S,
      workers: e.SIGNING_WORKERS,
      maxBatch: e.SIGNING_MAX_BATCH,
      pipelineDepth: e.SIGNING_PIPELINE_DEPTH,
    },
    tokenIssuer: {
      /** Fixed issuer URL; unset: `http://127.0.0.1:<bound port>`. */
      issuer: e.TOKENS_ISSUER,
      /** Path of the providers-and-clients JSON file; unset: a generated quick-start client, no providers. */
      configPath: e.TOKENS_CONFIG,
      defaultTtlS: e.TOKEN_DEFAULT_TTL_S,
      /** Where the token audit log goes: `stdout`, a file path, or `off`. */
      auditLog: e.TOKENS_AUDIT_LOG,
    },
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    grades: {
      setPort: e.GRADES_SET_PORT,
      getPort: e.GRADES_GET_PORT,
      user: e.GRADES_USER,
      /** Unset: a random password is generated at start and logged once. */
      password: e.GRADES_PASSWORD,
      peers: e.GRADES_PEERS,
      stream: {
        name: e.GRADES_STREAM,
        subject: e.GRADES_SUBJECT,
        maxAgeS: e.GRADES_STREAM_MAX_AGE_S,
        maxBytes: e.GRADES_STREAM_MAX_BYTES,
        duplicateWindowS: e.GRADES_DUPLICATE_WINDOW_S,
      },
      maxBodyBytes: e.GRADES_MAX_BODY_BYTES,
      publishWindow: e.GRADES_PUBLISH_WINDOW,
      joinAttempts: e.GRADES_JOIN_ATTEMPTS,
      outboxDir: e.GRADES_OUTBOX_DIR,
      restoreFrom: e.GRADES_RESTORE_FROM,
      writeTimeoutMs: e.GRADES_WRITE_TIMEOUT_MS,
    },
  };
}
