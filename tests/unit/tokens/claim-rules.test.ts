import { expect } from 'chai';
import { compileClaimRules } from '../../../src/tokens/claim-rules.js';
import { ConfigError } from '../../../src/errors.js';
import { OAuthError } from '../../../src/tokens/oauth-error.js';

const claims = {
  sub: 'u1',
  iss: 'https://idp.example',
  exp: 1_900_000_000,
  email: 'u1@acme.example',
  email_verified: true,
  groups: ['admin', 'dev'],
  tenant: { id: 't-7', tier: 'gold' },
};

function rules(
  claimValidationRules: { expression: string; message: string }[],
  claimMappings: Record<string, string> = {},
) {
  return compileClaimRules({ name: 'acme', claimValidationRules, claimMappings });
}

/** The message a validation refuses with, or 'holds'. */
function validation(expression: string): string {
  try {
    rules([{ expression, message: 'rule broken' }]).validate(claims);
    return 'holds';
  } catch (err) {
    expect(err).to.be.instanceOf(OAuthError).with.property('code', 'invalid_request');
    return (err as OAuthError).message;
  }
}

describe('CEL claim rules', () => {
  it('a validation rule holds only when it yields true', () => {
    expect(validation('claims.email_verified')).to.equal('holds');
    expect(validation('claims.email.endsWith("@acme.example") && "admin" in claims.groups')).to.equal(
      'holds',
    );
    expect(validation('claims.exp > 1700000000')).to.equal('holds');
    expect(validation('claims.tenant.tier == "silver"')).to.equal('rule broken');
  });

  it('a rule that cannot be evaluated (a missing claim) refuses the token with its message', () => {
    expect(validation('claims.department == "x"')).to.equal('rule broken');
    expect(validation('has(claims.department)')).to.equal('rule broken');
  });

  it('a dyn rule that yields something other than a bool refuses', () => {
    expect(validation('claims.email')).to.equal('rule broken');
  });

  it('every rule must hold; the first broken one names the refusal', () => {
    const compiled = rules([
      { expression: 'claims.email_verified', message: 'email not verified' },
      { expression: '"ops" in claims.groups', message: 'not in ops' },
      { expression: 'false', message: 'never reached' },
    ]);
    expect(() => compiled.validate(claims)).to.throw(OAuthError, 'not in ops');
  });

  it('mappings compute JSON claims: integers as numbers, lists, maps; null leaves the claim out', () => {
    const compiled = rules([], {
      login: 'claims.email.split("@")[0]',
      roles: 'claims.groups.map(g, "acme:" + g)',
      tier: 'claims.tenant.tier',
      group_count: 'size(claims.groups)',
      unsigned: '3u',
      labels: '{"tenant": claims.tenant.id}',
      department: 'claims.?department.orValue(null)',
      nickname: 'claims.?email.orValue("none")',
    });
    const into: Record<string, unknown> = { sub: 'acme|u1' };
    compiled.map(claims, into);
    expect(into).to.deep.equal({
      sub: 'acme|u1',
      login: 'u1',
      roles: ['acme:admin', 'acme:dev'],
      tier: 'gold',
      group_count: 2,
      unsigned: 3,
      labels: { tenant: 't-7' },
      nickname: 'u1@acme.example',
    });
  });

  it('a mapping that cannot be computed refuses the token, naming the claim', () => {
    const compiled = rules([], { department: 'claims.department' });
    expect(() => compiled.map(claims, {}))
      .to.throw(OAuthError, 'claim mapping "department" cannot be computed')
      .with.property('code', 'invalid_request');
  });

  it('a mapping whose value JSON cannot carry refuses the token', () => {
    expect(() => rules([], { big: 'int(claims.exp) * 100000000' }).map(claims, {})).to.throw(OAuthError);
    expect(() => rules([], { when: 'dyn(timestamp("2024-01-01T00:00:00Z"))' }).map(claims, {})).to.throw(
      OAuthError,
    );
  });

  it('no rules and no mappings: empty, nothing to evaluate', () => {
    expect(rules([]).empty).to.equal(true);
    expect(rules([{ expression: 'true', message: 'm' }]).empty).to.equal(false);
  });

  const bad: [string, () => unknown, RegExp][] = [
    [
      'a rule that does not parse',
      () => rules([{ expression: 'claims.email ==', message: 'm' }]),
      /provider "acme": claimValidationRules\[0\]: CEL expression "claims.email ==" is invalid/,
    ],
    [
      'a rule over an unknown variable',
      () => rules([{ expression: 'user.email == "x"', message: 'm' }]),
      /claimValidationRules\[0\].*"user.email == \\"x\\"".*Unknown variable: user/,
    ],
    [
      'a rule that is not a bool',
      () => rules([{ expression: 'size(claims.groups)', message: 'm' }]),
      /yields int, not bool/,
    ],
    [
      'a rule that does not type-check',
      () => rules([{ expression: '1 + "a" == 2', message: 'm' }]),
      /no such overload/,
    ],
    [
      'a mapping that yields bytes',
      () => rules([], { raw: 'b"abc"' }),
      /claimMappings.raw: CEL expression "b\\"abc\\"" is invalid: it yields bytes/,
    ],
  ];
  for (const [what, compile, message] of bad) {
    it(`refuses at compile time ${what}, naming the provider and the expression`, () => {
      expect(compile).to.throw(ConfigError).with.property('message').that.matches(message);
    });
  }
});
