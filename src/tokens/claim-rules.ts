import { Environment, type ParseResult } from '@marcbachmann/cel-js';
import { ConfigError } from '../errors.js';
import { OAuthError } from './oauth-error.js';

/** A claim validation rule as configured: a CEL expression over `claims` that must be true. */
export interface ClaimValidationRule {
  readonly expression: string;
  /** Said to the client (in `error_description`) when the expression is not true. */
  readonly message: string;
}

/** What {@link compileClaimRules} needs of a provider's configuration. */
export interface ClaimRulesConfig {
  readonly name: string;
  readonly claimValidationRules: readonly ClaimValidationRule[];
  /** Internal claim name → CEL expression over `claims` producing its value. */
  readonly claimMappings: Readonly<Record<string, string>>;
}

/**
 * One environment for every provider: the single variable `claims` (the subject token's claims set, a map), as
 * Kubernetes' structured authentication configuration names it, and optional chaining (`claims.?email`), which
 * mappings of claims that may be absent need. No function of ours is registered, so evaluation is synchronous.
 */
const environment = new Environment({ enableOptionalTypes: true }).registerVariable('claims', 'map');

/** Static result types a claim could not be written as in JSON. */
const UNREPRESENTABLE = new Set(['bytes', 'google.protobuf.Timestamp', 'google.protobuf.Duration', 'type']);

interface CompiledRule {
  readonly program: ParseResult;
  readonly message: string;
}

/**
 * A provider's CEL claim rules, compiled once at start-up (E5) and evaluated on each exchange's subject token
 * claims: every validation rule must yield `true`, and each mapping yields one internal claim.
 */
export class ClaimRules {
  readonly #rules: readonly CompiledRule[];
  readonly #mappings: readonly (readonly [string, ParseResult])[];

  /** Use {@link compileClaimRules}. */
  constructor(rules: readonly CompiledRule[], mappings: readonly (readonly [string, ParseResult])[]) {
    this.#rules = rules;
    this.#mappings = mappings;
  }

  /** Whether there is anything to evaluate (most providers have no rules; they skip the work entirely). */
  get empty(): boolean {
    return this.#rules.length === 0 && this.#mappings.length === 0;
  }

  /**
   * Checks every validation rule, in order, against `claims`; the first that is not `true` (false, not a bool,
   * or an evaluation error such as a missing claim) refuses the token with `invalid_request` and its message.
   */
  validate(claims: Readonly<Record<string, unknown>>): void {
    const context = { claims };
    for (const rule of this.#rules) {
      let holds: unknown;
      try {
        holds = rule.program(context);
      } catch {
        holds = false;
      }
      if (holds !== true) throw new OAuthError('invalid_request', rule.message);
    }
  }

  /**
   * Evaluates every mapping against `claims` and writes its result into `into` as JSON (CEL integers become
   * numbers). A `null` result leaves the claim out; an evaluation error, or a value JSON cannot carry, refuses the
   * token with `invalid_request` naming the claim.
   */
  map(claims: Readonly<Record<string, unknown>>, into: Record<string, unknown>): void {
    const context = { claims };
    for (const [target, program] of this.#mappings) {
      let value: unknown;
      try {
        value = toJson(program(context));
      } catch {
        throw new OAuthError(
          'invalid_request',
          `claim mapping "${target}" cannot be computed for this token`,
        );
      }
      if (value !== null) into[target] = value;
    }
  }
}

/**
 * Compiles (parses and type-checks) a provider's `claimValidationRules` and `claimMappings`. An expression that
 * does not parse, does not type-check, or whose type cannot be a rule's (bool) or a claim's (a JSON value) throws
 * a {@link ConfigError} naming the provider and the expression, which stops start-up.
 */
export function compileClaimRules(provider: ClaimRulesConfig): ClaimRules {
  const rules = provider.claimValidationRules.map((rule, i): CompiledRule => {
    const where = `claimValidationRules[${i}]`;
    const { program, type } = compile(provider.name, where, rule.expression);
    if (type !== 'bool' && type !== 'dyn') {
      throw bad(provider.name, where, rule.expression, `it yields ${type}, not bool`);
    }
    return { program, message: rule.message };
  });
  const mappings = Object.entries(provider.claimMappings).map(([target, expression]) => {
    const where = `claimMappings.${target}`;
    const { program, type } = compile(provider.name, where, expression);
    if (UNREPRESENTABLE.has(type)) {
      throw bad(provider.name, where, expression, `it yields ${type}, which a JSON claim cannot hold`);
    }
    return [target, program] as const;
  });
  return new ClaimRules(rules, mappings);
}

/**
 * Parses and type-checks one expression: the program, and its static type. The program returned is the one
 * checked: cel-js keeps the checked types on its syntax tree, so no evaluation type-checks it again (a program
 * parsed a second time would be checked at its first evaluation, on a request).
 */
function compile(
  provider: string,
  where: string,
  expression: string,
): { program: ParseResult; type: string } {
  let program: ParseResult;
  let checked;
  try {
    program = environment.parse(expression);
    checked = program.check();
  } catch (err) {
    throw bad(provider, where, expression, firstLine(err));
  }
  if (!checked.valid) throw bad(provider, where, expression, firstLine(checked.error));
  return { program, type: checked.type ?? 'dyn' };
}

function bad(provider: string, where: string, expression: string, why: string): ConfigError {
  return new ConfigError(
    `provider "${provider}": ${where}: CEL expression ${JSON.stringify(expression)} is invalid: ${why}`,
  );
}

/** The first line of a CEL error: the rest is a source excerpt with a caret. */
function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
}

/** A CEL value as a JSON value; throws for what JSON cannot carry. */
function toJson(value: unknown): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      if (!Number.isFinite(value)) throw new RangeError('not a finite number');
      return value;
    case 'bigint':
      return safeInteger(value);
    case 'object':
      if (value === null) return null;
      if (Array.isArray(value)) return value.map(toJson);
      if (value instanceof Map) {
        const out: Record<string, unknown> = {};
        for (const [k, v] of value as Map<unknown, unknown>) out[String(k)] = toJson(v);
        return out;
      }
      if (Object.getPrototypeOf(value) === Object.prototype) {
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(value)) out[k] = toJson(v);
        return out;
      }
      // cel-js's unsigned integers are objects whose primitive value is a bigint.
      if (typeof value.valueOf() === 'bigint') return safeInteger(value.valueOf() as bigint);
      throw new TypeError('not a JSON value');
    default:
      throw new TypeError('not a JSON value');
  }
}

function safeInteger(value: bigint): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError('integer out of range');
  return n;
}
