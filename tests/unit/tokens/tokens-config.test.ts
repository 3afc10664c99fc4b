import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../../../src/errors.js';
import { ClientRegistry, hashSecret } from '../../../src/tokens/client-auth.js';
import { parseTokensConfig } from '../../../src/tokens/tokens-config.js';

const minimalProvider = {
  name: 'acme',
  issuer: 'https://idp.example',
  jwksUri: 'https://idp.example/jwks',
  audiences: ['x'],
  targetAudiences: ['orders'],
};

describe('tokens config file', () => {
  it('the README’s worked example is valid, and its documented secret authenticates its client', () => {
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('### Providers and clients'));
    const json = /```json\n([\s\S]*?)\n```/.exec(section)?.[1];
    const config = parseTokensConfig(JSON.parse(json ?? ''), 3600);
    expect(config.providers[0]).to.include({ name: 'acme', discovery: true });
    const client = new ClientRegistry(config.clients).authenticate({
      clientId: 'orders-service',
      clientSecret: 'the-secret',
      method: 'client_secret_basic',
    });
    expect(client.audiences).to.deep.equal(['inventory', 'orders']);
  });

  const bad: [string, unknown, RegExp][] = [
    ['an unknown field', { providers: [{ ...minimalProvider, colour: 'red' }] }, /colour|unrecognized/i],
    [
      'both jwksUri and discovery',
      { providers: [{ ...minimalProvider, discovery: true }] },
      /exactly one of jwksUri and discovery/,
    ],
    [
      'a claim mapped from __proto__',
      { providers: [{ ...minimalProvider, claims: { email: '__proto__' } }] },
      /__proto__/,
    ],
    ['an HMAC algorithm', { providers: [{ ...minimalProvider, algorithms: ['HS256'] }] }, /algorithms/],
    [
      'a plain-text secret',
      { clients: [{ id: 'c', secretHash: 'hunter2', audiences: ['a'] }] },
      /secretHash/,
    ],
    [
      'two providers with one issuer',
      { providers: [minimalProvider, { ...minimalProvider, name: 'b' }] },
      /share an issuer/,
    ],
    [
      'a CEL claim validation rule that does not compile (with its provider and expression)',
      {
        providers: [
          { ...minimalProvider, claimValidationRules: [{ expression: 'claims.email ==', message: 'm' }] },
        ],
      },
      /providers\.0: provider "acme": claimValidationRules\[0\]: CEL expression "claims\.email ==" is invalid/,
    ],
    [
      'a CEL claim mapping onto a claim the service sets',
      { providers: [{ ...minimalProvider, claimMappings: { act: 'claims.sub' } }] },
      /claimMappings may not map onto/,
    ],
    [
      'a claim both copied and computed',
      {
        providers: [
          { ...minimalProvider, claims: { mail: 'email' }, claimMappings: { mail: 'claims.email' } },
        ],
      },
      /both claims and claimMappings/,
    ],
    [
      'a lifetime over TOKEN_MAX_TTL_S',
      { clients: [{ id: 'c', secretHash: hashSecret('s'), audiences: ['a'], tokenTtlS: 7200 }] },
      /exceeds TOKEN_MAX_TTL_S/,
    ],
  ];
  for (const [what, doc, message] of bad) {
    it(`refuses ${what}, naming the field`, () => {
      expect(() => parseTokensConfig(doc, 3600))
        .to.throw(ConfigError)
        .with.property('message')
        .that.matches(message);
    });
  }
});
