import { expect } from 'chai';
import { OAuthError } from '../../../src/tokens/oauth-error.js';
import {
  checkClaims,
  checkHeader,
  readCompactJwt,
  type ClaimChecks,
} from '../../../src/tokens/subject-token.js';

// Subject-token reading and header checks (T1/T2) that mutation testing found unpinned by the jose-parity
// tests, which mostly refuse the same tokens for more than one reason at once.

const b64 = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const HEADER = b64({ alg: 'ES256', kid: 'k1' });
const PAYLOAD = b64({ iss: 'https://idp.test', aud: 'exchange' });
const SIGNATURE = 'c2lnbmF0dXJl';
const NOW = Date.UTC(2026, 10, 22, 12);
const CHECKS: ClaimChecks = {
  issuer: 'https://idp.test',
  audience: ['exchange'],
  clockTolerance: 0,
  requiredClaims: [],
  now: NOW,
};

/** The OAuth error `run` throws (its code and description), or undefined if it returns. */
function refusal(run: () => unknown): { code: string; description: string } | undefined {
  try {
    run();
    return undefined;
  } catch (err) {
    expect(err).to.be.instanceOf(OAuthError);
    const e = err as OAuthError;
    return { code: e.code, description: e.message };
  }
}

describe('subject token – pinned requirements', () => {
  describe('T1 reading a compact JWS', () => {
    it('T1: reads header, claims, signing input and signature of a well-formed token', () => {
      const jwt = readCompactJwt(`${HEADER}.${PAYLOAD}.${SIGNATURE}`);
      expect(jwt).to.deep.equal({
        header: { alg: 'ES256', kid: 'k1' },
        claims: { iss: 'https://idp.test', aud: 'exchange' },
        payloadIsUtf8: true,
        signingInput: `${HEADER}.${PAYLOAD}`,
        signature: SIGNATURE,
      });
    });

    it('T1: a junk character before or after any segment refuses the token, as jose does', () => {
      const parts = [HEADER, PAYLOAD, SIGNATURE];
      for (const junk of ['!', '~', ' ', '=', '+', '/', '.']) {
        for (let i = 0; i < 3; i++) {
          for (const place of ['before', 'after'] as const) {
            const changed = [...parts];
            changed[i] = place === 'before' ? junk + parts[i]! : parts[i]! + junk;
            expect(readCompactJwt(changed.join('.')), `${junk} ${place} segment ${i}`).to.equal(undefined);
          }
        }
      }
    });

    it('T1: anything but exactly three non-empty segments is refused', () => {
      for (const token of [
        `${HEADER}.${PAYLOAD}`,
        `${HEADER}${PAYLOAD}${SIGNATURE}`,
        `${HEADER}.${PAYLOAD}.${SIGNATURE}.`,
        `${HEADER}.${PAYLOAD}.${SIGNATURE}.${SIGNATURE}`,
        `.${PAYLOAD}.${SIGNATURE}`,
        `${HEADER}..${SIGNATURE}`,
        `${HEADER}.${PAYLOAD}.`,
        '',
        '..',
      ]) {
        expect(readCompactJwt(token), token).to.equal(undefined);
      }
    });

    it('T1: a token without dots is refused, even one whose halves would decode as JSON objects', () => {
      // Read as if split at its last character, this would be a header, a payload and a signature.
      const token = `${b64({ a: 1 })}A`;
      expect(readCompactJwt(token)).to.equal(undefined);
    });

    it('T1: a header or payload of 1 modulo 4 characters is refused, though Buffer would decode it to JSON', () => {
      /** The base64url of a JSON object padded with spaces to a multiple of 3 bytes: no partial last group. */
      const whole = (value: object) => {
        let json = JSON.stringify(value);
        while (json.length % 3 !== 0) json += ' ';
        return b64(json);
      };
      const header = whole({ alg: 'ES256', kid: 'k1' });
      const payload = whole({ iss: 'https://idp.test', aud: 'exchange' });
      expect(readCompactJwt(`${header}.${payload}.${SIGNATURE}`)).to.not.equal(undefined);
      // One more character is dropped by Buffer's decoder (the same JSON), refused as jose refuses it.
      expect(readCompactJwt(`${header}A.${payload}.${SIGNATURE}`), 'header').to.equal(undefined);
      expect(readCompactJwt(`${header}.${payload}A.${SIGNATURE}`), 'payload').to.equal(undefined);
    });

    it('T1: a segment whose length is 1 modulo 4 is refused in every position', () => {
      const parts = [HEADER, PAYLOAD, SIGNATURE];
      for (let i = 0; i < 3; i++) {
        const changed = [...parts];
        // Grow the segment to a length of 1 modulo 4 with a character that decodes to nothing more.
        while (changed[i]!.length % 4 !== 1) changed[i] += 'A';
        expect(readCompactJwt(changed.join('.')), `segment ${i}`).to.equal(undefined);
        changed[i] += 'A';
        if (i === 2) expect(readCompactJwt(changed.join('.')), 'two more').to.not.equal(undefined);
      }
    });

    it('T1: a header or payload that is JSON but not an object is refused; a leading BOM is dropped', () => {
      for (const value of ['[]', 'null', '7', '"text"', '{']) {
        expect(readCompactJwt(`${b64(value)}.${PAYLOAD}.${SIGNATURE}`), `header ${value}`).to.equal(
          undefined,
        );
        expect(readCompactJwt(`${HEADER}.${b64(value)}.${SIGNATURE}`), `payload ${value}`).to.equal(
          undefined,
        );
      }
      const bom = b64(`\uFEFF${JSON.stringify({ alg: 'ES256' })}`);
      expect(readCompactJwt(`${bom}.${PAYLOAD}.${SIGNATURE}`)?.header).to.deep.equal({ alg: 'ES256' });
    });
  });

  describe('T1/T2 header checks', () => {
    it('T2: an algorithm outside the provider’s allow-list is refused, whatever else is right', () => {
      expect(refusal(() => checkHeader({ alg: 'RS256', kid: 'k1' }, ['ES256', 'PS256']))).to.deep.equal({
        code: 'invalid_request',
        description: 'subject_token algorithm is not allowed',
      });
      expect(refusal(() => checkHeader({ alg: 'ES256' }, []))?.description).to.equal(
        'subject_token algorithm is not allowed',
      );
      for (const alg of [undefined, 7, ['ES256'], null]) {
        expect(refusal(() => checkHeader({ alg }, ['ES256']))?.code, String(alg)).to.equal('invalid_request');
      }
      expect(checkHeader({ alg: 'PS256', kid: 'k1' }, ['ES256', 'PS256'])).to.deep.equal({
        alg: 'PS256',
        kid: 'k1',
      });
      expect(checkHeader({ alg: 'ES256' }, ['ES256'])).to.deep.equal({ alg: 'ES256', kid: undefined });
    });

    it('T1: crit is accepted only as ["b64"] (or repeated) with b64 true; any other name, even beside b64, is refused', () => {
      const unsupported = {
        code: 'invalid_request',
        description: 'subject_token has critical header parameters that are not supported',
      };
      for (const header of [
        { crit: ['b64', 'exp'], b64: true },
        { crit: ['exp', 'b64'], b64: true },
        { crit: ['exp'], b64: true },
        { crit: [], b64: true },
        { crit: ['b64'], b64: false },
        { crit: ['b64'] },
        { crit: 'b64', b64: true },
        { crit: null, b64: true },
      ]) {
        expect(
          refusal(() => checkHeader({ alg: 'ES256', ...header }, ['ES256'])),
          JSON.stringify(header),
        ).to.deep.equal(unsupported);
      }
      expect(checkHeader({ alg: 'ES256', crit: ['b64'], b64: true }, ['ES256']).alg).to.equal('ES256');
      expect(checkHeader({ alg: 'ES256', crit: ['b64', 'b64'], b64: true }, ['ES256']).alg).to.equal('ES256');
      expect(checkHeader({ alg: 'ES256', b64: false }, ['ES256']).alg).to.equal('ES256');
    });

    it('T1: a kid that is not a string is refused', () => {
      for (const kid of [7, null, ['k1'], { k: 1 }]) {
        expect(
          refusal(() => checkHeader({ alg: 'ES256', kid }, ['ES256'])),
          JSON.stringify(kid),
        ).to.deep.equal({
          code: 'invalid_request',
          description: 'subject_token "kid" is not a string',
        });
      }
    });
  });

  describe('T1 claim checks', () => {
    const check = (claims: Record<string, unknown>, checks: Partial<ClaimChecks> = {}) => {
      const jwt = readCompactJwt(`${HEADER}.${b64(claims)}.${SIGNATURE}`);
      expect(jwt).to.not.equal(undefined);
      try {
        checkClaims(jwt!, { ...CHECKS, ...checks });
        return 'ok';
      } catch (err) {
        const e = err as { code: string; claim: string; reason: string; message: string };
        return `${e.code} ${e.claim} ${e.reason}: ${e.message}`;
      }
    };
    const base = { iss: 'https://idp.test', aud: 'exchange' };

    it('T1: the audience matches as a string or as one member of an array, and nothing else', () => {
      expect(check(base)).to.equal('ok');
      expect(check({ ...base, aud: ['other', 'exchange'] })).to.equal('ok');
      const unexpectedAud = 'ERR_JWT_CLAIM_VALIDATION_FAILED aud check_failed: unexpected "aud" claim value';
      expect(check({ ...base, aud: ['other'] })).to.equal(unexpectedAud);
      expect(check({ ...base, aud: 'other' })).to.equal(unexpectedAud);
      expect(check({ ...base, aud: 7 })).to.equal(unexpectedAud);
      expect(check({ ...base, aud: { exchange: true } })).to.equal(unexpectedAud);
      expect(check({ ...base, aud: [] })).to.equal(unexpectedAud);
    });

    it('T1: the issuer must match exactly, and every required claim be present, the last named reported first', () => {
      expect(check({ ...base, iss: 'https://idp.test/' })).to.equal(
        'ERR_JWT_CLAIM_VALIDATION_FAILED iss check_failed: unexpected "iss" claim value',
      );
      expect(check({ aud: 'exchange' })).to.equal(
        'ERR_JWT_CLAIM_VALIDATION_FAILED iss missing: missing required "iss" claim',
      );
      expect(check({ iss: 'https://idp.test' })).to.equal(
        'ERR_JWT_CLAIM_VALIDATION_FAILED aud missing: missing required "aud" claim',
      );
      expect(check(base, { requiredClaims: ['sub', 'jti'] })).to.equal(
        'ERR_JWT_CLAIM_VALIDATION_FAILED jti missing: missing required "jti" claim',
      );
      expect(check({ ...base, jti: 'j' }, { requiredClaims: ['sub', 'jti'] })).to.equal(
        'ERR_JWT_CLAIM_VALIDATION_FAILED sub missing: missing required "sub" claim',
      );
      expect(check({ ...base, jti: 'j', sub: 's' }, { requiredClaims: ['sub', 'jti'] })).to.equal('ok');
    });

    it('T1: iat, nbf and exp must be numbers when present', () => {
      for (const claim of ['iat', 'nbf', 'exp']) {
        expect(check({ ...base, [claim]: '1' }), claim).to.equal(
          `ERR_JWT_CLAIM_VALIDATION_FAILED ${claim} invalid: "${claim}" claim must be a number`,
        );
      }
      const nowS = Math.floor(NOW / 1000);
      expect(check({ ...base, iat: nowS + 3600, nbf: nowS, exp: nowS + 1 })).to.equal('ok');
      expect(check({ ...base, exp: nowS })).to.equal(
        'ERR_JWT_EXPIRED exp check_failed: "exp" claim timestamp check failed',
      );
      expect(check({ ...base, nbf: nowS + 1 })).to.equal(
        'ERR_JWT_CLAIM_VALIDATION_FAILED nbf check_failed: "nbf" claim timestamp check failed',
      );
    });
  });
});
