import { expect } from 'chai';
import { silentLogger } from '../../src/log.js';
import { Supervisor, type Component } from '../../src/supervisor.js';

function recorder(log: string[], name: string, fail?: 'start' | 'stop'): Component {
  return {
    name,
    start: () => {
      log.push(`start ${name}`);
      return fail === 'start' ? Promise.reject(new Error(`${name} broke`)) : Promise.resolve();
    },
    stop: () => {
      log.push(`stop ${name}`);
      return fail === 'stop' ? Promise.reject(new Error(`${name} broke`)) : Promise.resolve();
    },
  };
}

describe('supervisor', () => {
  it('starts in dependency order and stops in reverse', async () => {
    const log: string[] = [];
    const supervisor = new Supervisor(
      ['db', 'store', 'http'].map((n) => recorder(log, n)),
      silentLogger(),
    );
    await supervisor.start();
    expect(supervisor.status).to.equal('running');
    await supervisor.stop();
    expect(log).to.deep.equal([
      'start db',
      'start store',
      'start http',
      'stop http',
      'stop store',
      'stop db',
    ]);
    expect(supervisor.status).to.equal('stopped');
  });

  it('when a component fails to start, stops those already started and rethrows', async () => {
    const log: string[] = [];
    const supervisor = new Supervisor(
      [recorder(log, 'db'), recorder(log, 'store', 'start'), recorder(log, 'http')],
      silentLogger(),
    );
    const err = await supervisor.start().catch((e: unknown) => e);
    expect((err as Error).message).to.equal('store broke');
    expect(log).to.deep.equal(['start db', 'start store', 'stop db']);
  });

  it('a component that fails to stop does not keep the others running; a second stop is the first', async () => {
    const log: string[] = [];
    const supervisor = new Supervisor(
      [recorder(log, 'db'), recorder(log, 'store', 'stop'), recorder(log, 'http')],
      silentLogger(),
    );
    await supervisor.start();
    const first = supervisor.stop();
    expect(supervisor.stop()).to.equal(first);
    await first;
    expect(log.slice(3)).to.deep.equal(['stop http', 'stop store', 'stop db']);
  });
});
