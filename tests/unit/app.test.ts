import { expect } from 'chai';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';

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
    expect(start).to.deep.equal([
      'postgres-pool',
      'key-store',
      'signing-pool',
      'nats',
      'key-announcer',
      'grades',
      'key-rotation',
      'token-audit',
      'tokens-http',
      'grades-set-http',
      'grades-get-http',
    ]);
    // Stop: HTTP first, then rotation, grades (outbox flushed), announcements, NATS drained, the signing pool
    // closed, pending key writes flushed, and the Postgres pool ended last.
    const stop = [...start].reverse();
    expect(stop.indexOf('grades-get-http')).to.equal(0);
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
      'grades',
      'key-rotation',
      'token-audit',
      'tokens-http',
      'grades-set-http',
      'grades-get-http',
    ]);
  });
});
