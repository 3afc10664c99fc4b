import { expect } from 'chai';
import sinon from 'sinon';
import { KeyAdmission } from '../../../src/keys/key-admission.js';
import type { PublicKey } from '../../../src/keys/public-key.js';
import { silentLogger } from '../../../src/log.js';
import { makeTrustedKey } from '../../support/keys.js';

const NOW = Date.UTC(2026, 0, 1, 12);
const LIFETIME = 3_600_000;

describe('key admission', () => {
  let now: number;
  let good: PublicKey;
  let forged: PublicKey;
  let onRefused: sinon.SinonSpy;
  let warn: sinon.SinonSpy;
  let gate: KeyAdmission;

  beforeEach(async () => {
    now = NOW;
    good = await makeTrustedKey('ES256', NOW, LIFETIME);
    forged = { ...good, expiresAt: Date.UTC(9999, 0, 1) };
    onRefused = sinon.spy();
    const log = silentLogger();
    warn = sinon.spy(log, 'warn');
    gate = new KeyAdmission({
      policy: { algorithms: ['ES256'], keyLifetimeMs: LIFETIME, skewMs: 0 },
      clock: { now: () => now },
      log,
      onRefused,
      recheckMs: 1000,
    });
  });

  it('admits a genuine key without logging or counting', async () => {
    expect(await gate.admit(good, 'nats')).to.be.true;
    expect(onRefused.called).to.be.false;
    expect(warn.called).to.be.false;
  });

  it('refuses a bad key, counts it by source and reason, and logs no key material', async () => {
    expect(await gate.admit(forged, 'postgres')).to.be.false;
    expect(onRefused.calledOnceWith('postgres', 'expiry_too_far')).to.be.true;
    const [fields] = warn.firstCall.args as [Record<string, unknown>];
    expect(fields).to.include({ source: 'postgres', reason: 'expiry_too_far', kid: good.kid });
    const logged = JSON.stringify(warn.firstCall.args);
    for (const member of [good.jwk.x, good.jwk.y]) expect(logged).not.to.include(member);
  });

  it('refuses the same record again silently until the recheck time, then checks it anew', async () => {
    await gate.admit(forged, 'postgres');
    expect(await gate.admit(forged, 'postgres')).to.be.false;
    expect(onRefused.callCount).to.equal(1);
    now += 1000;
    expect(await gate.admit(forged, 'postgres')).to.be.false;
    expect(onRefused.callCount).to.equal(2);
  });

  it('checks a different record under a refused kid at once', async () => {
    await gate.admit(forged, 'nats');
    expect(await gate.admit(good, 'nats')).to.be.true;
  });
});
