import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { ConfigError } from './errors.js';

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
    KEY_PUBLISH_GRACE_S: z.preprocess(unsetIfEmpty, z.coerce.number().int().min(0).default(600)),
    KEY_PUBLISH_RETRY_MS: millis(2000),
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
    SIGNING_ALG: z.preprocess(unsetIfEmpty, z.enum(['ES256', 'EdDSA', 'RS256']).default('ES256')),
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
    if (env.DATABASE_QUERY_TIMEOUT_MS <= env.KEYSTORE_PG_TIMEOUT_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['DATABASE_QUERY_TIMEOUT_MS'],
        message: 'must be longer than KEYSTORE_PG_TIMEOUT_MS (the key store gives up first)',
      });
    }
  });

/** The validated configuration, read once at start-up. */
export interface Config {
  readonly logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
  readonly host: string;
  readonly replicaId: string;
  readonly tokens: { readonly port: number; readonly maxBodyBytes: number };
  readonly database:
    | {
        readonly url: string;
        readonly schema: string;
        readonly poolMax: number;
        readonly queryTimeoutMs: number;
        readonly connectTimeoutMs: number;
      }
    | undefined;
  readonly nats:
    { readonly url: string; readonly connectWaitMs: number; readonly keysBucket: string } | undefined;
  readonly keyStore: {
    readonly pgTimeoutMs: number;
    readonly flushIntervalMs: number;
    readonly probeIntervalMs: number;
    readonly cleanupIntervalMs: number;
  };
  readonly signing: {
    readonly alg: 'ES256' | 'EdDSA' | 'RS256';
    readonly rotationIntervalS: number;
    readonly publishGraceS: number;
    readonly publishRetryMs: number;
    readonly tokenMaxTtlS: number;
    readonly clockSkewS: number;
    readonly workers: number;
    readonly maxBatch: number;
    readonly pipelineDepth: number;
  };
  readonly tokenIssuer: {
    /** Fixed issuer URL; unset: `http://127.0.0.1:<bound port>`. */
    readonly issuer: string | undefined;
    /** Path of the providers-and-clients JSON file; unset: no providers, no clients. */
    readonly configPath: string | undefined;
    readonly defaultTtlS: number;
  };
  readonly shutdownTimeoutMs: number;
  readonly grades: {
    readonly setPort: number;
    readonly getPort: number;
    readonly user: string;
    /** Unset: a random password is generated at start and logged once. */
    readonly password: string | undefined;
    readonly peers: readonly string[];
    readonly stream: {
      readonly name: string;
      readonly subject: string;
      readonly maxAgeS: number;
      readonly maxBytes: number;
      readonly duplicateWindowS: number;
    };
    readonly maxBodyBytes: number;
    readonly publishWindow: number;
    readonly joinAttempts: number;
    /** Durable outbox log directory; unset: writes during a NATS outage are refused (503). */
    readonly outboxDir: string | undefined;
    /** Backup (path or URL) loaded at start when no peer answers. */
    readonly restoreFrom: string | undefined;
    readonly writeTimeoutMs: number;
  };
}

/**
 * Reads and validates the configuration from `env`. Throws a {@link ConfigError} naming every bad setting.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(env)'}: ${issue.message}`);
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const e = parsed.data;
  return {
    logLevel: e.LOG_LEVEL,
    host: e.HOST,
    replicaId: e.REPLICA_ID ?? `replica-${randomBytes(4).toString('hex')}`,
    tokens: { port: e.TOKENS_PORT, maxBodyBytes: e.HTTP_MAX_BODY_BYTES },
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
      ? { url: e.NATS_URL, connectWaitMs: e.NATS_CONNECT_WAIT_MS, keysBucket: e.NATS_KEYS_BUCKET }
      : undefined,
    keyStore: {
      pgTimeoutMs: e.KEYSTORE_PG_TIMEOUT_MS,
      flushIntervalMs: e.KEYSTORE_FLUSH_INTERVAL_MS,
      probeIntervalMs: e.KEYSTORE_PROBE_INTERVAL_MS,
      cleanupIntervalMs: e.KEYSTORE_CLEANUP_INTERVAL_MS,
    },
    signing: {
      alg: e.SIGNING_ALG,
      rotationIntervalS: e.KEY_ROTATION_INTERVAL_S,
      publishGraceS: e.KEY_PUBLISH_GRACE_S,
      publishRetryMs: e.KEY_PUBLISH_RETRY_MS,
      tokenMaxTtlS: e.TOKEN_MAX_TTL_S,
      clockSkewS: e.CLOCK_SKEW_S,
      workers: e.SIGNING_WORKERS,
      maxBatch: e.SIGNING_MAX_BATCH,
      pipelineDepth: e.SIGNING_PIPELINE_DEPTH,
    },
    tokenIssuer: { issuer: e.TOKENS_ISSUER, configPath: e.TOKENS_CONFIG, defaultTtlS: e.TOKEN_DEFAULT_TTL_S },
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    grades: {
      setPort: e.GRADES_SET_PORT,
      getPort: e.GRADES_GET_PORT,
      user: e.GRADES_USER,
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
