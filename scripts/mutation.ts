/**
 * Mutation testing of the core logic with StrykerJS (`npm run test:mutation`, or name groups:
 * `npm run test:mutation -- keys tokens-form`). Prints Stryker's report per group, then one table of the
 * mutation score per file, and exits non-zero if a file scores under the threshold (`--threshold 85`).
 *
 * Each group mutates a few source files and runs only the unit test files that pin them, through Stryker's
 * command runner: @stryker-mutator/mocha-runner does not support mocha 12 (it requires mocha's CLI helpers by
 * `.js` paths that mocha 12 ships as `.cjs`), and Stryker 10 needs Node 22. So every mutant gets a fresh mocha
 * process (as `npm test` runs), a few seconds each; the TypeScript checker drops mutants that do not compile
 * before any test runs. One runner and one checker at a time (`concurrency: 1`): the machine is shared.
 */
import { relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Stryker } from '@stryker-mutator/core';
import type { MutantResult, PartialStrykerOptions } from '@stryker-mutator/api/core';

interface Group {
  /** Source files mutated. */
  mutate: string[];
  /** Unit test files run against each mutant (the ones that pin those sources). */
  tests: string[];
}

/** What is mutated, grouped by the tests that pin it. */
const GROUPS: Record<string, Group> = {
  keys: {
    mutate: [
      'src/keys/fault-tolerant-repository.ts',
      'src/keys/pending-writes.ts',
      'src/keys/memory-repository.ts',
    ],
    tests: [
      'tests/unit/keys/fault-tolerant-repository.test.ts',
      'tests/unit/keys/fault-tolerant-repository.pins.test.ts',
    ],
  },
  'grades-store': {
    mutate: ['src/grades/store.ts'],
    tests: [
      'tests/unit/grades/store.test.ts',
      'tests/unit/grades/store.pins.test.ts',
      'tests/unit/grades/store-layout.test.ts',
      'tests/unit/grades/convergence.property.test.ts',
      'tests/unit/grades/backup-equals-get.property.test.ts',
    ],
  },
  // The store's index of user ids, outside the V8 heap, held to a Map.
  'grades-index': {
    mutate: ['src/grades/key-index.ts'],
    tests: ['tests/unit/grades/key-index.property.test.ts', 'tests/unit/grades/key-index.pins.test.ts'],
  },
  // The ordered-retry policy the grades outbox and the key store's pending writes share.
  ordering: {
    mutate: ['src/actor/ordered-queue.ts'],
    tests: [
      'tests/unit/actor/ordered-queue.test.ts',
      'tests/unit/actor/ordered-queue.pins.test.ts',
      'tests/unit/grades/outbox.test.ts',
    ],
  },
  'grades-outbox': {
    mutate: ['src/grades/outbox.ts'],
    tests: ['tests/unit/grades/outbox.test.ts', 'tests/unit/grades/outbox.pins.test.ts'],
  },
  'key-reads': {
    mutate: ['src/keys/public-key-reads.ts'],
    tests: ['tests/unit/keys/public-key-reads.test.ts', 'tests/unit/keys/public-key-reads.pins.test.ts'],
  },
  'key-trust': {
    mutate: ['src/keys/verify-public-key.ts'],
    tests: ['tests/unit/keys/verify-public-key.test.ts', 'tests/unit/keys/verify-public-key.pins.test.ts'],
  },
  'subject-token': {
    mutate: ['src/tokens/subject-token.ts'],
    tests: ['tests/unit/tokens/subject-token.test.ts', 'tests/unit/tokens/subject-token.pins.test.ts'],
  },
  claims: {
    mutate: ['src/tokens/claims.ts'],
    tests: ['tests/unit/tokens/claims.test.ts', 'tests/unit/tokens/claims.pins.test.ts'],
  },
  'client-auth': {
    mutate: ['src/tokens/client-auth.ts'],
    tests: ['tests/unit/tokens/client-auth.test.ts', 'tests/unit/tokens/client-auth.pins.test.ts'],
  },
  form: {
    mutate: ['src/http/form.ts'],
    tests: ['tests/unit/http/form.test.ts'],
  },
};

// mocha by its absolute path: Stryker links `node_modules` into its sandbox only when it is a directory, and in a
// git worktree it is often a symlink to another checkout's (packages still resolve, from the sandbox's parents).
const MOCHA =
  `node --import tsx ${resolve('node_modules/mocha/bin/mocha.js')} ` +
  '--no-config --extension ts --timeout 30000 --reporter dot';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { threshold: { type: 'string', default: '85' } },
});
const THRESHOLD = Number(values.threshold);
const chosen = positionals.length > 0 ? positionals : Object.keys(GROUPS);
for (const name of chosen) {
  if (!(name in GROUPS)) throw new Error(`unknown group ${name}; groups: ${Object.keys(GROUPS).join(', ')}`);
}

/** Counts per file, as Stryker scores them: detected / (detected + undetected); compile errors left out. */
interface Tally {
  killed: number;
  timeout: number;
  survived: number;
  noCoverage: number;
  compileError: number;
}

const tallies = new Map<string, Tally>();
const started = Date.now();

function count(results: MutantResult[]): void {
  for (const result of results) {
    const tally = tallies.get(relative(process.cwd(), result.fileName)) ?? {
      killed: 0,
      timeout: 0,
      survived: 0,
      noCoverage: 0,
      compileError: 0,
    };
    switch (result.status) {
      case 'Killed':
        tally.killed++;
        break;
      case 'Timeout':
        tally.timeout++;
        break;
      case 'Survived':
        tally.survived++;
        break;
      case 'NoCoverage':
        tally.noCoverage++;
        break;
      case 'CompileError':
        tally.compileError++;
        break;
      default:
        // Ignored and RuntimeError mutants are not scored.
        break;
    }
    tallies.set(relative(process.cwd(), result.fileName), tally);
  }
}

for (const name of chosen) {
  const group = GROUPS[name]!;
  const options: PartialStrykerOptions = {
    testRunner: 'command',
    // mocha in this process (no `.mocharc.json`, whose node-option would make mocha spawn a second node).
    commandRunner: { command: `${MOCHA} ${group.tests.join(' ')}` },
    checkers: ['typescript'],
    tsconfigFile: 'tsconfig.json',
    mutate: group.mutate,
    concurrency: 1,
    reporters: ['clear-text', 'progress-append-only'],
    clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true },
    tempDirName: '.stryker-tmp',
    cleanTempDir: true,
  };
  console.log(`\n=== ${name}: ${group.mutate.join(', ')}`);
  count(await new Stryker(options).runMutationTest());
}

const rows = [...tallies.entries()].sort(([a], [b]) => a.localeCompare(b));
let failing = 0;
console.log(`\nMutation score per file (${Math.round((Date.now() - started) / 1000)} s):`);
console.log('score    killed timeout survived no-cov compile-err  file');
for (const [file, t] of rows) {
  const detected = t.killed + t.timeout;
  const scored = detected + t.survived + t.noCoverage;
  const score = scored === 0 ? 100 : (100 * detected) / scored;
  if (score < THRESHOLD) failing++;
  console.log(
    `${score.toFixed(2).padStart(6)}%  ${String(t.killed).padStart(6)} ${String(t.timeout).padStart(7)} ` +
      `${String(t.survived).padStart(8)} ${String(t.noCoverage).padStart(6)} ${String(t.compileError).padStart(11)}  ${file}`,
  );
}
if (failing > 0) {
  console.log(`${failing} file(s) under ${THRESHOLD}%`);
  process.exitCode = 1;
}
