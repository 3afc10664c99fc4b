import { createHmac } from 'node:crypto';
import { expect } from 'chai';
import { MessageAuth, MIN_SECRET_BYTES } from '../../../src/cluster/message-auth.js';

const SECRET = 'a'.repeat(MIN_SECRET_BYTES);
const OTHER = 'b'.repeat(MIN_SECRET_BYTES);
const PAYLOAD = '{"kid":"k1"}';

describe('cluster message authentication', () => {
  it('opens what it sealed, for the same purpose, origin and payload (string or bytes)', () => {
    const auth = new MessageAuth({ current: SECRET });
    const tag = auth.seal('keys:bucket', 'r1', PAYLOAD);
    expect(tag).to.match(/^v1\.[A-Za-z0-9_-]{43}$/);
    expect(auth.open('keys:bucket', 'r1', PAYLOAD, tag)).to.deep.equal({ ok: true, secret: 'current' });
    expect(auth.open('keys:bucket', 'r1', Buffer.from(PAYLOAD), tag).ok).to.be.true;
    // Another replica holding the same secret opens it too.
    expect(new MessageAuth({ current: Buffer.from(SECRET) }).open('keys:bucket', 'r1', PAYLOAD, tag).ok).to.be
      .true;
  });

  it('is an HMAC-SHA-256 under the secret of a domain label and the length-prefixed purpose and origin, then the payload', () => {
    const tag = new MessageAuth({ current: SECRET }).seal('p', 'o', 'x');
    const prefixed = (v: string) =>
      Buffer.concat([Buffer.from([0, 0, 0, Buffer.byteLength(v)]), Buffer.from(v)]);
    const expected = createHmac('sha256', SECRET)
      .update('token-grades/cluster-message/v1\n')
      .update(prefixed('p'))
      .update(prefixed('o'))
      .update('x')
      .digest('base64url');
    expect(tag).to.equal(`v1.${expected}`);
  });

  it('refuses a message sealed for another purpose: a key announcement is no grades message', () => {
    const auth = new MessageAuth({ current: SECRET });
    const tag = auth.seal('keys:bucket', 'r1', PAYLOAD);
    expect(auth.open('grades:grades.set', 'r1', PAYLOAD, tag)).to.deep.equal({
      ok: false,
      reason: 'mismatch',
    });
  });

  it('refuses a message whose origin or payload changed', () => {
    const auth = new MessageAuth({ current: SECRET });
    const tag = auth.seal('keys:bucket', 'r1', PAYLOAD);
    expect(auth.open('keys:bucket', 'r2', PAYLOAD, tag).ok).to.be.false;
    expect(auth.open('keys:bucket', 'r1', PAYLOAD.replace('k1', 'k2'), tag).ok).to.be.false;
  });

  it('keeps purpose, origin and payload apart: moving bytes between them changes the MAC', () => {
    const auth = new MessageAuth({ current: SECRET });
    const tag = auth.seal('keys', 'r1', 'payload');
    expect(auth.open('key', 'sr1', 'payload', tag).ok).to.be.false;
    expect(auth.open('keys', 'r1p', 'ayload', tag).ok).to.be.false;
  });

  it('refuses a message sealed under another secret, and a missing or malformed tag', () => {
    const auth = new MessageAuth({ current: SECRET });
    const foreign = new MessageAuth({ current: OTHER }).seal('p', 'r1', PAYLOAD);
    expect(auth.open('p', 'r1', PAYLOAD, foreign)).to.deep.equal({ ok: false, reason: 'mismatch' });
    for (const tag of [undefined, null, '']) {
      expect(auth.open('p', 'r1', PAYLOAD, tag)).to.deep.equal({ ok: false, reason: 'missing' });
    }
    const good = auth.seal('p', 'r1', PAYLOAD);
    for (const tag of [good.slice(0, -1), `v2${good.slice(2)}`, `v1.${'!'.repeat(43)}`, 'v1.short']) {
      expect(auth.open('p', 'r1', PAYLOAD, tag)).to.deep.equal({ ok: false, reason: 'malformed' });
    }
  });

  it('during a rollover opens messages sealed under the previous secret, and seals under the current one', () => {
    const old = new MessageAuth({ current: OTHER });
    const rolling = new MessageAuth({ current: SECRET, previous: OTHER });
    expect(rolling.open('p', 'r1', PAYLOAD, old.seal('p', 'r1', PAYLOAD))).to.deep.equal({
      ok: true,
      secret: 'previous',
    });
    const sealed = rolling.seal('p', 'r1', PAYLOAD);
    expect(new MessageAuth({ current: SECRET }).open('p', 'r1', PAYLOAD, sealed).ok).to.be.true;
    expect(old.open('p', 'r1', PAYLOAD, sealed).ok).to.be.false;
  });

  it('refuses a secret shorter than 32 bytes', () => {
    expect(() => new MessageAuth({ current: 'x'.repeat(MIN_SECRET_BYTES - 1) })).to.throw(RangeError);
    expect(() => new MessageAuth({ current: SECRET, previous: 'short' })).to.throw(RangeError);
  });
});
