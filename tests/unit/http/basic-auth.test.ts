import { expect } from 'chai';
import { parseBasic } from '../../../src/http/basic-auth.js';

const header = (raw: string) => `Basic ${Buffer.from(raw).toString('base64')}`;

describe('HTTP Basic parsing', () => {
  it('splits user and password at the first colon, keeping colons in the password', () => {
    expect(parseBasic(header('grades:pa:ss'))).to.deep.equal({ user: 'grades', password: 'pa:ss' });
    expect(parseBasic(` ${header('u:')} `)).to.deep.equal({ user: 'u', password: '' });
  });

  it('refuses a missing header, another scheme, bad base64 and a value without a colon', () => {
    expect(parseBasic(undefined)).to.be.undefined;
    expect(parseBasic('Bearer abc')).to.be.undefined;
    expect(parseBasic('Basic ***')).to.be.undefined;
    expect(parseBasic(header('nocolon'))).to.be.undefined;
  });
});
