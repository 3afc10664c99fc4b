/**
 * Runs the unit tests twice in one process, as an in-process mutation-test runner or a watch mode would, and
 * fails if the second run does not pass as the first did: a test file must do its set-up in `before`/`beforeEach`
 * and undo it in `after`/`afterEach`, not at `describe` scope (which runs once, when the file is loaded).
 *
 *   node --import tsx scripts/rerun-unit-tests.ts [--runs 2] [test files or directories...]
 */
import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import Mocha from 'mocha';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { runs: { type: 'string', default: '2' } },
});
const RUNS = Number(values.runs);
const targets = positionals.length > 0 ? positionals : ['tests/unit'];

const files: string[] = [];
for (const target of targets) {
  if ((await stat(target)).isDirectory()) {
    const entries = await readdir(target, { recursive: true });
    for (const entry of entries) if (entry.endsWith('.test.ts')) files.push(resolve(join(target, entry)));
  } else {
    files.push(resolve(target));
  }
}
files.sort();

const mocha = new Mocha({ timeout: 30_000, reporter: 'dot' });
// Keep the loaded suites after a run so that the next run executes the same tests again.
mocha.cleanReferencesAfterRun(false);
for (const file of files) mocha.addFile(file);
await mocha.loadFilesAsync();

const failures: number[] = [];
for (let run = 1; run <= RUNS; run++) {
  console.log(`\nrun ${run} of ${RUNS} (${files.length} files)`);
  failures.push(await new Promise<number>((done) => mocha.run(done)));
}
console.log(`\nfailures per run: ${failures.join(', ')}`);
if (failures.some((n) => n > 0)) process.exitCode = 1;
mocha.dispose();
