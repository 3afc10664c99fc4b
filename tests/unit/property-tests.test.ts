import { expect } from 'chai';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

// CI does not run mutation testing, so this is the normal suite's guard on what the property tests cover: a run
// with a random seed, or with fewer runs than intended, would still pass while testing less. Every `fc.assert`
// in the tests must name a fixed `seed` and a `numRuns` of at least MIN_RUNS (each property test also asserts
// that all its runs ran, and what kinds of input they saw).

const MIN_RUNS = 100;
const TESTS = new URL('../', import.meta.url);

/** The text of the call that opens at `start` (its opening parenthesis), up to the matching close. */
function callText(source: string, start: number): string {
  let depth = 0;
  for (let i = start; i < source.length; i++) {
    if (source[i] === '(') depth++;
    else if (source[i] === ')' && --depth === 0) return source.slice(start, i + 1);
  }
  throw new Error('unbalanced call');
}

/** The number a `numRuns` option names: a literal, or a constant of the same file. */
function runCount(source: string, value: string): number {
  if (/^\d[\d_]*$/.test(value)) return Number(value.replaceAll('_', ''));
  const declared = new RegExp(`const ${value} = (\\d[\\d_]*)`).exec(source);
  return declared ? Number(declared[1]!.replaceAll('_', '')) : NaN;
}

describe('property tests – fixed seeds and run counts', () => {
  let files: { path: string; source: string }[];

  before(async () => {
    const root = TESTS.pathname;
    const paths = (await readdir(root, { recursive: true })).filter((p) => p.endsWith('.test.ts'));
    files = [];
    for (const path of paths) {
      const source = await readFile(join(root, path), 'utf8');
      if (/^import .* from 'fast-check';$/m.test(source)) files.push({ path, source });
    }
  });

  it('finds the property tests', () => {
    expect(files.map((f) => f.path)).to.include.members([
      'unit/tokens/subject-token.property.test.ts',
      'unit/grades/convergence.property.test.ts',
    ]);
  });

  it(`every fc.assert names a fixed seed and at least ${MIN_RUNS} runs`, () => {
    let calls = 0;
    for (const { path, source } of files) {
      for (const match of source.matchAll(/fc\.assert\(/g)) {
        calls++;
        const call = callText(source, match.index + 'fc.assert'.length);
        expect(call, `${path}: fc.assert without a seed`).to.match(/\bseed: /);
        const runs = /\bnumRuns: ([\w]+)/.exec(call)?.[1];
        expect(runs, `${path}: fc.assert without numRuns`).to.be.a('string');
        expect(runCount(source, runs!), `${path}: numRuns ${runs}`).to.be.at.least(MIN_RUNS);
      }
    }
    expect(calls).to.be.at.least(files.length);
  });
});
