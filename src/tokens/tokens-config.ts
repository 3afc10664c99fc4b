import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { compileClaimRules, type ClaimRules } from './claim-rules.js';
import { VERIFY_ALGORITHMS } from './jws.js';

const claimName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$/, 'a claim name')
  // Reading "__proto__" off a token's payload yields Object.prototype when the token lacks that claim. (As a
  // mapping's target, zod's record already drops the key.)
  .refine((name) => name !== '__proto__', 'a claim name other than __proto__');
/**
 * Claims this service sets itself; a mapping may not overwrite them. `act` and `may_act` carry delegation
 * (RFC 8693 §4.1, §4.4), which only the delegation rules may set.
 */
const RESERVED = new Set([
  'iss',
  'sub',
  'aud',
  'exp',
  'nbf',
  'iat',
  'jti',
  'client_id',
  'scope',
  'idp',
  'act',
  'may_act',
]);

/** A CEL expression as configured (compiled after validation, see `compileClaimRules`). */
const celExpression = z.string().min(1).max(4096);

const providerSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, 'lower-case letters, digits, "-" or "_"'),
    issuer: z.string().min(1),
    jwksUri: z.string().url().optional(),
    discovery: z.boolean().default(false),
    audiences: z.array(z.string().min(1)).min(1),
    // Asymmetric only (see VERIFY_ALGORITHMS), so a public key can never act as an HMAC key.
    algorithms: z.array(z.enum(VERIFY_ALGORITHMS)).min(1).default(['RS256', 'ES256']),
    subjectClaim: claimName.default('sub'),
    subjectPrefix: z.string().max(64).default(''),
    claims: z.record(claimName, claimName).default({}),
    // CEL over the subject token's claims (variable `claims`), as Kubernetes' structured authentication has it.
    claimValidationRules: z
      .array(z.object({ expression: celExpression, message: z.string().min(1).max(200) }).strict())
      .default([]),
    claimMappings: z.record(claimName, celExpression).default({}),
    targetAudiences: z.array(z.string().min(1)).min(1),
    scopes: z.array(z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/)).default([]),
    tokenTtlS: z.number().int().positive().optional(),
    // RFC 8693 delegation (default false): its tokens may be exchanged on behalf of an actor, and be actor tokens.
    allowDelegation: z.boolean().optional(),
    // Exchanges of this provider's tokens need an authenticated client, so every token names a real client.
    requireClientAuthentication: z.boolean().default(false),
    jwksCacheS: z.number().int().positive().default(300),
    jwksRefetchCooldownS: z.number().int().nonnegative().default(30),
    jwksStaleS: z.number().int().nonnegative().default(3600),
    jwksTimeoutMs: z.number().int().positive().default(2000),
  })
  .strict()
  .refine((p) => (p.jwksUri === undefined) !== !p.discovery, {
    message: 'set exactly one of jwksUri and discovery',
  })
  .refine((p) => Object.keys(p.claims).every((target) => !RESERVED.has(target)), {
    message: `claims may not map onto ${[...RESERVED].join(', ')}`,
  })
  .refine((p) => Object.keys(p.claimMappings).every((target) => !RESERVED.has(target)), {
    message: `claimMappings may not map onto ${[...RESERVED].join(', ')}`,
  })
  .refine((p) => Object.keys(p.claimMappings).every((target) => !Object.hasOwn(p.claims, target)), {
    message: 'a claim is named in both claims and claimMappings',
  });

const clientSchema = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9._~-]{1,128}$/, 'letters, digits, ".", "_", "~" or "-"'),
    secretHash: z.string().regex(/^sha256:[0-9a-f]{64}$/, '"sha256:" and 64 lower-case hex digits'),
    grants: z
      .array(z.enum(['client_credentials', 'token_exchange']))
      .min(1)
      .default(['client_credentials']),
    audiences: z.array(z.string().min(1)).min(1),
    scopes: z.array(z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/)).default([]),
    tokenTtlS: z.number().int().positive().optional(),
    // RFC 8693 delegation (default false): this client may present an actor_token in a token exchange.
    mayDelegate: z.boolean().optional(),
  })
  .strict();

const fileSchema = z
  .object({
    providers: z.array(providerSchema).default([]),
    clients: z.array(clientSchema).default([]),
  })
  .strict()
  .refine((c) => new Set(c.providers.map((p) => p.issuer)).size === c.providers.length, {
    message: 'two providers share an issuer',
  })
  .refine((c) => new Set(c.clients.map((p) => p.id)).size === c.clients.length, {
    message: 'two clients share an id',
  });

/** One external identity provider whose tokens can be exchanged, with its CEL claim rules compiled. */
export type ProviderConfig = z.infer<typeof providerSchema> & { readonly rules: ClaimRules };
/** One internal client that may ask for tokens. */
export type ClientConfig = z.infer<typeof clientSchema>;
/** The providers and clients file. */
export type TokensConfig = Omit<z.infer<typeof fileSchema>, 'providers'> & {
  readonly providers: ProviderConfig[];
};

/**
 * Validates a parsed providers-and-clients document; throws a ConfigError naming each bad field. Token lifetimes
 * may not exceed `maxTtlS`, because every key's expiry is computed from that bound. Each provider's CEL claim
 * rules are compiled here, once: a bad expression is a ConfigError naming the provider and the expression.
 */
export function parseTokensConfig(doc: unknown, maxTtlS: number, source = 'tokens config'): TokensConfig {
  const parsed = fileSchema.safeParse(doc);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new ConfigError(`invalid ${source}:\n  ${lines.join('\n  ')}`);
  }
  for (const [kind, list] of [
    ['providers', parsed.data.providers],
    ['clients', parsed.data.clients],
  ] as const) {
    list.forEach((entry, i) => {
      if (entry.tokenTtlS !== undefined && entry.tokenTtlS > maxTtlS) {
        throw new ConfigError(
          `invalid ${source}:\n  ${kind}.${i}.tokenTtlS: exceeds TOKEN_MAX_TTL_S (${maxTtlS})`,
        );
      }
    });
  }
  const providers = parsed.data.providers.map((p, i) => {
    try {
      return Object.assign(p, { rules: compileClaimRules(p) });
    } catch (err) {
      throw new ConfigError(`invalid ${source}:\n  providers.${i}: ${(err as Error).message}`);
    }
  });
  return Object.assign({}, parsed.data, { providers });
}

/** Reads and validates the file at `path` (JSON). */
export async function loadTokensConfig(path: string, maxTtlS: number): Promise<TokensConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`TOKENS_CONFIG: cannot read ${path}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`TOKENS_CONFIG: ${path} is not JSON: ${(err as Error).message}`);
  }
  return parseTokensConfig(doc, maxTtlS, path);
}
