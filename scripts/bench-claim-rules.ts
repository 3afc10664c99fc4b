/**
 * What CEL claim rules cost an exchange on the main thread, measured in process as CPU time (which drifts far less
 * than requests/s on a shared machine): the benchmark's rule and mapping evaluated alone, and the token service's
 * whole exchange logic (form, subject token read and checked, claims, rules, targets, payload serialised, audit
 * line) for the same exchange with and without them. The signer only serialises the payload, as the signing pool
 * does before a worker signs: the signatures, checked and made in the signing worker, are not part of this figure
 * (`bench-tokens` measures everything over HTTP). Plain and CEL alternate, and medians and ranges are printed.
 *
 *   node --import tsx scripts/bench-claim-rules.ts [--rounds 7] [--count 20000]
 *
 * Started under tsx it compiles itself and the service with tsc (`tsconfig.bench.json`, into `.bench/dist`) and
 * runs the JavaScript, as `bench-tokens` does: tsx's `keepNames` wrapper would add to every closure made per call.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { generateSigningKey } from '../src/keys/signing-key.js';
import { Form } from '../src/http/form.js';
import { silentLogger } from '../src/log.js';
import { RequestIds, TokenAudit, type TokenDecision } from '../src/tokens/audit.js';
import { compileClaimRules } from '../src/tokens/claim-rules.js';
import { RemoteJwks } from '../src/tokens/remote-jwks.js';
import { GRANT_TOKEN_EXCHANGE, TokenService } from '../src/tokens/token-service.js';
import { parseTokensConfig } from '../src/tokens/tokens-config.js';
import { TestIdp } from '../tests/support/idp.js';
import { median } from './lib/load.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '7' },
    count: { type: 'string', default: '20000' },
  },
});
const ROUNDS = Number(values.rounds);
const COUNT = Number(values.count);

/** The rule and mapping `bench-tokens` configures. */
const RULES = {
  claimValidationRules: [
    { expression: "claims.email.endsWith('@acme.example')", message: 'only acme.example accounts' },
  ],
  claimMappings: { login: "claims.email.split('@')[0]" },
};

/** CPU time (user + system, µs) per call of `f` over `n` calls. */
async function cpuPerCall(n: number, f: () => unknown): Promise<number> {
  const start = process.cpuUsage();
  for (let i = 0; i < n; i++) await f();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / n;
}

function summary(xs: number[]): string {
  return `${median(xs).toFixed(2)} µs (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
}

async function main(): Promise<void> {
  const idp = await new TestIdp('bench-idp').start();
  try {
    const celIssuer = `${idp.issuer}/cel`;
    const config = parseTokensConfig(
      {
        providers: [
          idp.providerConfig(),
          idp.providerConfig({ name: 'acme-cel', issuer: celIssuer, ...RULES }),
        ],
        clients: [],
      },
      3600,
    );
    const key = await generateSigningKey(
      'ES256',
      Date.now(),
      { activeMs: 3_600_000, tokenMaxTtlMs: 3_600_000, skewMs: 60_000 },
      'bench',
    );
    const clock = { now: () => Date.now() };
    const service = new TokenService({
      issuer: () => 'http://127.0.0.1:8080',
      providers: config.providers.map((provider) => ({
        config: provider,
        jwks: new RemoteJwks({
          provider: provider.name,
          source: { jwksUri: idp.jwksUri },
          fetchJson: () => Promise.resolve({ keys: [idp.publicJwk] }),
          clock,
          cacheMaxAgeMs: 300_000,
          refetchCooldownMs: 30_000,
          staleMaxMs: 0,
          timeoutMs: 1000,
          log: silentLogger(),
        }),
      })),
      clients: [],
      signer: {
        sign: (_key, payload) => Promise.resolve(JSON.stringify(payload)),
        check: () => Promise.resolve(true),
        close: () => Promise.resolve(),
      },
      activeKey: () => key,
      clock,
      skewS: 60,
      defaultTtlS: 900,
    });
    let audited = 0;
    const audit = new TokenAudit({
      sink: { write: (line) => void (audited += line.length), close: () => Promise.resolve() },
      replica: 'bench',
      clock,
    });
    const requestIds = new RequestIds();
    const body = (token: string) =>
      new URLSearchParams({
        grant_type: GRANT_TOKEN_EXCHANGE,
        subject_token: token,
        subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
      }).toString();
    // The subject tokens bench-tokens sends.
    const plain = body(await idp.sign({ sub: 'user-1', aud: 'token-exchange' }, { expiresIn: '2h' }));
    const withCel = body(
      await idp.sign(
        { sub: 'user-1', aud: 'token-exchange', iss: celIssuer, email: 'user-1@acme.example' },
        { expiresIn: '2h' },
      ),
    );
    const exchange = async (form: string) => {
      const decision: TokenDecision = {};
      const response = await service.handle(new Form(form), undefined, decision);
      audit.record(requestIds.of({}), decision);
      return response;
    };
    const celResponse = await exchange(withCel);
    const issued = JSON.parse(celResponse.access_token) as Record<string, unknown>;
    if (issued.login !== 'user-1') throw new Error('the CEL mapping did not run');

    const rules = compileClaimRules({ name: 'acme-cel', ...RULES });
    const claims = { sub: 'user-1', aud: 'token-exchange', iss: celIssuer, email: 'user-1@acme.example' };
    const into: Record<string, unknown> = {};

    // Warm up (JIT) both paths before measuring.
    for (let i = 0; i < COUNT; i++) {
      await exchange(plain);
      await exchange(withCel);
      rules.validate(claims);
      rules.map(claims, into);
    }
    const runs = {
      validate: [] as number[],
      map: [] as number[],
      plain: [] as number[],
      cel: [] as number[],
    };
    for (let round = 0; round < ROUNDS; round++) {
      runs.validate.push(await cpuPerCall(COUNT * 5, () => rules.validate(claims)));
      runs.map.push(await cpuPerCall(COUNT * 5, () => rules.map(claims, into)));
      runs.plain.push(await cpuPerCall(COUNT, () => exchange(plain)));
      runs.cel.push(await cpuPerCall(COUNT, () => exchange(withCel)));
    }
    const added = runs.cel.map((c, i) => c - (runs.plain[i] ?? NaN));
    console.log(`CEL claim rules, CPU per call on the main thread (median of ${ROUNDS} rounds, range):`);
    console.log(`  validation rule ${RULES.claimValidationRules[0]?.expression}: ${summary(runs.validate)}`);
    console.log(`  mapping login = ${RULES.claimMappings.login}: ${summary(runs.map)}`);
    console.log(`  exchange logic without rules: ${summary(runs.plain)}`);
    console.log(`  exchange logic with the rule and the mapping: ${summary(runs.cel)}`);
    console.log(`  difference (paired rounds; the CEL token also carries an email claim): ${summary(added)}`);
    if (audited === 0) throw new Error('no audit line was written');
  } finally {
    await idp.stop();
  }
}

if (import.meta.url.endsWith('.ts')) {
  const root = fileURLToPath(new URL('..', import.meta.url));
  execFileSync(process.execPath, [`${root}node_modules/typescript/bin/tsc`, '-p', 'tsconfig.bench.json'], {
    cwd: root,
    stdio: 'inherit',
  });
  execFileSync(
    process.execPath,
    [`${root}.bench/dist/scripts/bench-claim-rules.js`, ...process.argv.slice(2)],
    { cwd: root, stdio: 'inherit' },
  );
} else {
  await main();
}
