import { expect } from 'chai';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import { recordingLogger } from '../support/logs.js';

/** The components the supervisor reported as `msg` ('started' or 'stopped'), in the order it did. */
function sequence(lines: readonly Record<string, unknown>[], msg: string): unknown[] {
  return lines.filter((l) => l.msg === msg && typeof l.component === 'string').map((l) => l.component);
}

describe('service wiring', () => {
  it('starts dependencies first, and stops in the documented shutdown order', async () => {
    // Nothing is started here: the pool and the NATS client connect only on start.
    const app = await createApp(
      loadConfig({
        DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test',
        NATS_URL: 'nats://127.0.0.1:4222',
        GRADES_PASSWORD: 'wiring-test-password',
        SIGNING_WORKERS: '0',
      }),
      { log: silentLogger() },
    );
    const start = app.supervisor.order;
    // Shared connections around the capabilities: Postgres first, then what needs no bus (the KeyStore, the
    // signing pool), NATS, what needs the bus (announcements, rotation, the grades replica), HTTP last.
    expect(start).to.deep.equal([
      'postgres-pool',
      'key-store',
      'signing-pool',
      'nats',
      'key-announcer',
      'key-rotation',
      'token-audit',
      'grades',
      'tokens-http',
      'grades-set-http',
      'grades-get-http',
    ]);
    // Stop: HTTP first, then grades (outbox flushed), rotation, announcements, NATS drained, the signing pool
    // closed, pending key writes flushed, and the Postgres pool ended last.
    const stop = [...start].reverse();
    expect(stop.indexOf('grades-get-http')).to.equal(0);
    expect(stop.indexOf('grades')).to.be.below(stop.indexOf('nats'));
    expect(stop.indexOf('nats')).to.be.below(stop.indexOf('signing-pool'));
    expect(stop.indexOf('signing-pool')).to.be.below(stop.indexOf('key-store'));
    expect(stop.at(-1)).to.equal('postgres-pool');
    // The audit log is closed only once no token request is left to record.
    expect(stop.indexOf('tokens-http')).to.be.below(stop.indexOf('token-audit'));
  });

  it('without Postgres and NATS wires a self-contained replica', async () => {
    const app = await createApp(
      loadConfig({ GRADES_PASSWORD: 'wiring-test-password', SIGNING_WORKERS: '0' }),
      {
        log: silentLogger(),
      },
    );
    expect(app.supervisor.order).to.deep.equal([
      'key-store',
      'signing-pool',
      'key-rotation',
      'token-audit',
      'grades',
      'tokens-http',
      'grades-set-http',
      'grades-get-http',
    ]);
  });

  it('a started replica starts and stops its components in that real sequence, and reports its ports', async () => {
    const { log, lines } = recordingLogger('debug');
    const app = await createApp(
      loadConfig({
        GRADES_PASSWORD: 'wiring-test-password',
        SIGNING_WORKERS: '0',
        TOKENS_PORT: '0',
        GRADES_SET_PORT: '0',
        GRADES_GET_PORT: '0',
      }),
      { log },
    );
    await app.start();
    try {
      expect(sequence(lines, 'started')).to.deep.equal(app.supervisor.order);
      const summary = app.summary() as { tokensPort: number; gradesSetPort: number; gradesGetPort: number };
      for (const port of [summary.tokensPort, summary.gradesSetPort, summary.gradesGetPort]) {
        expect(port).to.be.above(0);
      }
      expect(summary).to.have.property('issuer', `http://127.0.0.1:${summary.tokensPort}`);
      const ready = await fetch(`http://127.0.0.1:${summary.tokensPort}/readyz`);
      expect(ready.status).to.equal(200);
    } finally {
      await app.stop();
    }
    expect(sequence(lines, 'stopped')).to.deep.equal([...app.supervisor.order].reverse());
    expect(app.supervisor.status).to.equal('stopped');
  });
});
