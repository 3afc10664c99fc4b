import { expect } from 'chai';
import fc from 'fast-check';
import { Form } from '../../../src/http/form.js';

/** Everything a form exposes, read the same way from ours and from URLSearchParams. */
function read(form: Form | URLSearchParams, names: readonly string[]) {
  return {
    keys: [...form.keys()],
    values: names.map((n) => ({ get: form.get(n), all: form.getAll(n), has: form.has(n) })),
  };
}

/** Fixed, so that every run of the suite checks the same bodies; `PROPERTY_SEED` explores others. */
const SEED = Number(process.env.PROPERTY_SEED ?? 20261123);
const RUNS = 5000;

describe('http – form bodies', () => {
  // Separators, escapes good and bad, multi-byte characters, and bytes that are not UTF-8 once decoded.
  const piece = fc.constantFrom(
    '&',
    '=',
    '+',
    '%',
    '%3A',
    '%3a',
    '%2B',
    '%26',
    '%3D',
    '%20',
    '%zz',
    '%4',
    '%E2%82%AC',
    '%E2%82',
    '%C0%AF',
    '%F0%9F%98%80',
    '%ED%A0%80',
    '%FF',
    '%00',
    'a',
    'grant_type',
    'audience',
    'eyJhbGciOi.J9-_',
    'é',
    '€',
    '😀',
    ' ',
    '\uFFFD',
  );
  const text = fc.array(piece, { maxLength: 24 }).map((pieces) => pieces.join(''));

  it('parses every body to exactly what URLSearchParams parses it to', () => {
    let runs = 0;
    let decoded = 0;
    fc.assert(
      fc.property(text, (body) => {
        runs++;
        if (body.includes('%') || body.includes('+')) decoded++;
        const reference = new URLSearchParams(body);
        const names = [...new Set([...reference.keys(), 'a', 'grant_type', 'missing', ''])];
        expect(read(new Form(body), names), body).to.deep.equal(read(reference, names));
      }),
      { numRuns: RUNS, seed: SEED },
    );
    // Every run ran, and most bodies needed decoding (the slow path), not only the plain fast path.
    expect(runs).to.equal(RUNS);
    expect(decoded).to.be.greaterThan(RUNS / 2);
  });

  it('reads a token exchange request', () => {
    const form = new Form(
      'grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=a.b.c' +
        '&audience=orders&audience=billing&scope=read+write&empty=&flag',
    );
    expect(form.get('grant_type')).to.equal('urn:ietf:params:oauth:grant-type:token-exchange');
    expect(form.get('subject_token')).to.equal('a.b.c');
    expect(form.getAll('audience')).to.deep.equal(['orders', 'billing']);
    expect(form.get('scope')).to.equal('read write');
    expect(form.get('empty')).to.equal('');
    expect(form.has('flag')).to.equal(true);
    expect(form.get('flag')).to.equal('');
    expect(form.get('nothing')).to.equal(null);
    expect([...form.keys()]).to.deep.equal([
      'grant_type',
      'subject_token',
      'audience',
      'audience',
      'scope',
      'empty',
      'flag',
    ]);
  });
});
