import { expect } from 'chai';
import { spawn } from 'node:child_process';

/** Runs `script` (an ES module) in a child process; resolves with its stdout and how it ended. */
function run(script: string): Promise<{ stdout: string; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.once('error', reject);
    child.once('close', (_code, signal) => resolve({ stdout, signal }));
  });
}

const LOG = new URL('../../src/log.ts', import.meta.url).href;

describe('service log', () => {
  it('has written every line before the call returns: a SIGKILL right after loses none', async () => {
    const { stdout, signal } = await run(`
      const { createLogger } = await import(${JSON.stringify(LOG)});
      const log = createLogger('info');
      for (let i = 0; i < 500; i++) log.info({ n: i }, 'line');
      process.kill(process.pid, 'SIGKILL');
    `);
    expect(signal).to.equal('SIGKILL');
    const lines = stdout.split('\n').filter(Boolean);
    expect(lines.map((l) => (JSON.parse(l) as { n: number }).n)).to.deep.equal(
      Array.from({ length: 500 }, (_, i) => i),
    );
  });
});
