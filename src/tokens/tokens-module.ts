import type { Capability, SharedPieces } from '../capability.js';
import type { Config } from '../config.js';
import { createKeyLifecycle } from '../keys/key-lifecycle.js';
import type { KeyStore } from '../keys/key-store.js';
import { Counter } from 'prom-client';
import { BoundHistogram } from '../metrics.js';
import { undiciFetchJson, type FetchJson } from './http-fetch.js';
import { RemoteJwks } from './remote-jwks.js';
import { SigningPool } from './signing-pool.js';
import { tokenRoutes } from './token-routes.js';
import { TokenService, type Provider } from './token-service.js';
import { loadTokensConfig } from './tokens-config.js';
import { quickstartTokensConfig } from './quickstart.js';
import { fileAuditSink, TokenAudit } from './audit.js';

/** The settings the tokens capability reads. */
export type TokensModuleConfig = Pick<
  Config,
  'replicaId' | 'database' | 'nats' | 'keyStore' | 'signing' | 'tokenIssuer' | 'tokens'
>;

/** The tokens capability, and its KeyStore for callers that manage keys (operators' tooling, tests). */
export interface TokensCapability extends Capability {
  readonly keyStore: KeyStore;
}

/** What tests may replace. */
export interface TokensModuleDependencies {
  /** Fetches providers' JWKS and discovery documents (undici by default). */
  readonly fetchJson?: FetchJson;
}

/**
 * The tokens capability (T1–T6): our keys (KeyStore, announcements, rotation; see `keys/key-lifecycle.ts`), the
 * signing pool, the providers' key caches and the token service, served on the tokens port with the key routes,
 * the token endpoint and discovery. Ready when the KeyStore runs and a signing key is active.
 */
export async function createTokensModule(
  config: TokensModuleConfig,
  shared: SharedPieces,
  deps: TokensModuleDependencies = {},
): Promise<TokensCapability> {
  const { clock, log, metrics } = shared;
  const tokensConfig = config.tokenIssuer.configPath
    ? await loadTokensConfig(config.tokenIssuer.configPath, config.signing.tokenMaxTtlS)
    : quickstartTokensConfig(log);
  const keys = createKeyLifecycle(config, shared);

  const batchSize = new BoundHistogram({
    name: 'signing_batch_size',
    help: 'Tokens per signing task sent to the worker pool.',
    labelNames: [],
    buckets: [1, 2, 4, 8, 16, 32, 64, 128],
    registers: [metrics.registry],
  }).labels();
  const signer = new SigningPool({
    workers: config.signing.workers,
    maxBatch: config.signing.maxBatch,
    pipelineDepth: config.signing.pipelineDepth,
    onBatch: (size) => batchSize.observe(size),
  });

  const fetchJson = deps.fetchJson ?? undiciFetchJson;
  const providers: Provider[] = tokensConfig.providers.map((p) => ({
    config: p,
    jwks: new RemoteJwks({
      provider: p.name,
      source: p.jwksUri ? { jwksUri: p.jwksUri } : { discoveryIssuer: p.issuer },
      fetchJson,
      clock,
      cacheMaxAgeMs: p.jwksCacheS * 1000,
      refetchCooldownMs: p.jwksRefetchCooldownS * 1000,
      staleMaxMs: p.jwksStaleS * 1000,
      timeoutMs: p.jwksTimeoutMs,
      log,
    }),
  }));

  // Without TOKENS_ISSUER the issuer is this listener's own URL, known once it is bound.
  let issuerUrl = config.tokenIssuer.issuer?.replace(/\/$/, '');
  let port = 0;
  const issuer = () => issuerUrl ?? 'http://127.0.0.1';
  const service = new TokenService({
    issuer,
    providers,
    clients: tokensConfig.clients,
    signer,
    activeKey: () => keys.rotation.active,
    clock,
    skewS: config.signing.clockSkewS,
    defaultTtlS: config.tokenIssuer.defaultTtlS,
    // Actor tokens of ours (delegation) verify against every replica's unexpired keys.
    // From memory first, unknown kids looked up within the same bounds as the key routes'.
    ownKey: async (kid) => (await keys.reads.find(kid))?.key,
  });

  const auditLog = config.tokenIssuer.auditLog;
  const auditDropped = new Counter({
    name: 'tokens_audit_lines_dropped_total',
    help: 'Token audit lines lost: their destination refused them (a full disk, a write error, stdout not read).',
    registers: [metrics.registry],
  });
  let lost = 0;
  const audit =
    auditLog === 'off'
      ? undefined
      : new TokenAudit({
          sink: fileAuditSink(auditLog, (lines) => {
            auditDropped.inc(lines);
            // The first loss, then one warning per 10,000 lines lost: a dead destination must not flood the log.
            const before = lost;
            lost += lines;
            if (before === 0 || Math.floor(before / 10_000) < Math.floor(lost / 10_000))
              log.warn({ lines, lost }, 'token audit lines dropped: their destination refused them');
          }),
          replica: config.replicaId,
          clock,
        });

  return {
    name: 'tokens',
    keyStore: keys.keyStore,
    foundations: [
      ...keys.foundations,
      { name: 'signing-pool', start: () => Promise.resolve(), stop: () => signer.close() },
    ],
    // The audit log is a service so that it is closed only after the tokens listener stopped: the last requests'
    // lines are written.
    services: [
      ...keys.services,
      ...(audit ? [{ name: 'token-audit', start: () => Promise.resolve(), stop: () => audit.close() }] : []),
    ],
    listeners: [
      {
        name: 'tokens',
        port: config.tokens.port,
        maxBodyBytes: config.tokens.maxBodyBytes,
        routes: [
          ...keys.routes,
          ...tokenRoutes({
            service,
            issuer,
            alg: config.signing.alg,
            registry: metrics.registry,
            log,
            ...(audit ? { audit } : {}),
          }),
        ],
        readiness: keys.readiness,
        onListening: (bound) => {
          port = bound;
          issuerUrl ??= `http://127.0.0.1:${bound}`;
        },
      },
    ],
    summary: () => ({ tokensPort: port, issuer: issuer() }),
  };
}
