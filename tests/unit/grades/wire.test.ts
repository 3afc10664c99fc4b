import { expect } from 'chai';
import { MessageAuth } from '../../../src/cluster/message-auth.js';
import type { ReplicationMessage } from '../../../src/grades/model.js';
import {
  MalformedReplicationMessageError,
  originSubject,
  ReplicationCodec,
  UnauthenticatedReplicationMessageError,
} from '../../../src/grades/wire.js';

const SECRET = 'grades-wire-test-secret-of-enough-bytes-0001';
const msg: ReplicationMessage = { origin: 'r1/abcd', n: 3, updates: [{ user_id: 'u1', spp: 5 }] };

describe('grades wire – replication messages authenticated with CLUSTER_SECRET (X7)', () => {
  const sealed = new ReplicationCodec({ auth: new MessageAuth({ current: SECRET }), subject: 'grades.set' });

  it('without a secret: no MAC is written, and messages are only validated', () => {
    const open = new ReplicationCodec({ subject: 'grades.set' });
    const { data, mac } = open.encode(msg);
    expect(mac).to.equal(undefined);
    expect(open.decode(data, undefined)).to.deep.equal(msg);
    expect(() => open.decode(Buffer.from('{"origin":1}'), undefined)).to.throw(
      MalformedReplicationMessageError,
    );
  });

  it('with a secret: a sealed message opens, and one without a MAC is refused as missing', () => {
    const { data, mac } = sealed.encode(msg);
    expect(mac).to.match(/^v1\./);
    expect(sealed.decode(data, mac)).to.deep.equal(msg);
    expect(() => sealed.decode(data, undefined))
      .to.throw(UnauthenticatedReplicationMessageError)
      .with.property('reason', 'missing');
  });

  it('refuses a changed payload, another origin, another secret, and a MAC sealed for another stream', () => {
    const { data, mac } = sealed.encode(msg);
    const changed = Buffer.from(JSON.stringify({ ...msg, updates: [{ user_id: 'u1', spp: 6 }] }));
    const otherOrigin = Buffer.from(JSON.stringify({ ...msg, origin: 'r2/ffff' }));
    const refusals = [
      () => sealed.decode(changed, mac),
      () => sealed.decode(otherOrigin, mac),
      () =>
        sealed.decode(
          data,
          new ReplicationCodec({
            auth: new MessageAuth({ current: `${SECRET}-other` }),
            subject: 'grades.set',
          }).encode(msg).mac,
        ),
      () =>
        sealed.decode(
          data,
          new ReplicationCodec({ auth: new MessageAuth({ current: SECRET }), subject: 'other.set' }).encode(
            msg,
          ).mac,
        ),
    ];
    for (const refuse of refusals) {
      expect(refuse).to.throw(UnauthenticatedReplicationMessageError).with.property('reason', 'mismatch');
    }
  });

  it("refuses a genuine message copied onto another writer's subject", () => {
    const { data, mac } = sealed.encode(msg);
    expect(sealed.decode(data, mac, originSubject('grades.set', msg.origin))).to.deep.equal(msg);
    expect(() => sealed.decode(data, mac, originSubject('grades.set', 'r2/ffff')))
      .to.throw(UnauthenticatedReplicationMessageError)
      .with.property('reason', 'subject');
  });

  it('during a rollover a message sealed with the previous secret still opens', () => {
    const old = new ReplicationCodec({ auth: new MessageAuth({ current: SECRET }), subject: 'grades.set' });
    const rolled = new ReplicationCodec({
      auth: new MessageAuth({ current: `${SECRET}-next`, previous: SECRET }),
      subject: 'grades.set',
    });
    const { data, mac } = old.encode(msg);
    expect(rolled.decode(data, mac)).to.deep.equal(msg);
  });
});
