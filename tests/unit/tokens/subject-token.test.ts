import { expect } from 'chai';
import fc from 'fast-check';
import { UnsecuredJWT } from 'jose';
import { checkClaims, readCompactJwt, type ClaimChecks } from '../../../src/tokens/subject-token.js';

const ISSUER = 'https://idp.claims.test';
const NOW = Date.UTC(2026, 10, 22, 12, 0, 0);
const NOW_S = Math.floor(NOW / 1000);
const CHECKS: ClaimChecks = {
  issuer: ISSUER,
  audience: ['exchange', 'other-exchange'],
  clockTolerance: 30,
  requiredClaims: ['exp'],
  now: NOW,
};
const HEADER = Buffer.from('{"alg":"ES256","kid":"k1"}').toString('base64url');
const NONE = Buffer.from('{"alg":"none"}').toString('base64url');

type Outcome =
  | { ok: true; payload: unknown }
  | { ok: false; name: string; message: string; claim?: string; reason?: string };

function outcome(run: () => unknown): Outcome {
  try {
    return { ok: true, payload: run() };
  } catch (err) {
    const e = err as { name: string; message: string; claim?: string; reason?: string };
    return { ok: false, name: e.name, message: e.message, claim: e.claim, reason: e.reason };
  }
}

/** Our answer for a payload segment: read as the exchange reads it, then the claim checks. */
function ours(payloadSegment: string): Outcome | 'unreadable' {
  const jwt = readCompactJwt(`${HEADER}.${payloadSegment}.c2ln`);
  if (!jwt) return 'unreadable';
  return outcome(() => checkClaims(jwt, CHECKS));
}

/** jose's answer: its own decoding and claim-set validation with the same options. */
function jose(payloadSegment: string): Outcome {
  return outcome(
    () =>
      UnsecuredJWT.decode(`${NONE}.${payloadSegment}.`, {
        issuer: CHECKS.issuer,
        audience: [...CHECKS.audience],
        clockTolerance: CHECKS.clockTolerance,
        requiredClaims: [...CHECKS.requiredClaims],
        currentDate: new Date(CHECKS.now),
      }).payload,
  );
}

const b64 = (bytes: Buffer | string) => Buffer.from(bytes).toString('base64url');
/** Fixed, so that every run of the suite checks the same inputs; `PROPERTY_SEED` explores others. */
const SEED = Number(process.env.PROPERTY_SEED ?? 20261122);
const RUNS = 3000;

describe('subject token – claim checks', () => {
  const odd = fc.constantFrom<unknown>(null, true, 'text', [], {}, ['exchange', 7], '1795000000', 1.5);
  const time = (spread: number) =>
    fc.oneof(
      { arbitrary: fc.integer({ min: NOW_S - spread, max: NOW_S + spread }), weight: 6 },
      { arbitrary: odd, weight: 1 },
    );
  const claims = fc.record(
    {
      iss: fc.oneof(
        { arbitrary: fc.constant<unknown>(ISSUER), weight: 5 },
        { arbitrary: fc.constantFrom<unknown>('https://other.test', `${ISSUER}/`, [ISSUER]), weight: 1 },
        { arbitrary: odd, weight: 1 },
      ),
      aud: fc.oneof(
        { arbitrary: fc.constantFrom<unknown>('exchange', 'other-exchange', ['x', 'exchange']), weight: 5 },
        { arbitrary: fc.constantFrom<unknown>('nope', ['nope'], []), weight: 1 },
        { arbitrary: odd, weight: 1 },
      ),
      exp: time(90),
      nbf: time(60),
      iat: time(60),
      sub: fc.constant('user-1'),
    },
    { requiredKeys: [] },
  );
  const segment = fc.oneof(
    { arbitrary: claims.map((c) => b64(JSON.stringify(c))), weight: 12 },
    // Payloads that are not a claims set: a BOM before it, bytes that are not UTF-8, JSON that is not an object.
    {
      arbitrary: claims.map((c) =>
        b64(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(c))])),
      ),
      weight: 1,
    },
    {
      arbitrary: claims.map((c) =>
        b64(
          Buffer.concat([Buffer.from(JSON.stringify(c).slice(0, -1)), Buffer.from(',"x":"\xff"}', 'latin1')]),
        ),
      ),
      weight: 1,
    },
    { arbitrary: fc.constantFrom('[1]', '"text"', 'null', '{', '').map((t) => b64(t)), weight: 1 },
  );

  it('answer exactly as jose’s claim-set validation does: same outcome, error class, message, claim and reason', () => {
    let runs = 0;
    let accepted = 0;
    let refused = 0;
    fc.assert(
      fc.property(segment, (payloadSegment) => {
        runs++;
        const expected = jose(payloadSegment);
        const actual = ours(payloadSegment);
        if (actual === 'unreadable') {
          // The exchange refuses it earlier, as not a well-formed JWT; jose refuses it too.
          expect(expected.ok, Buffer.from(payloadSegment, 'base64url').toString('latin1')).to.equal(false);
          return;
        }
        expect(actual, Buffer.from(payloadSegment, 'base64url').toString('latin1')).to.deep.equal(expected);
        if (actual.ok) accepted++;
        else refused++;
      }),
      { numRuns: RUNS, seed: SEED },
    );
    expect(runs).to.equal(RUNS);
    expect(accepted).to.be.greaterThan(100);
    expect(refused).to.be.greaterThan(100);
  });

  it('refuses a claims set that is not UTF-8 as jose does, though it can be read for choosing a provider', () => {
    const segment = b64(
      Buffer.concat([Buffer.from(`{"iss":"${ISSUER}","x":"`), Buffer.from([0xff]), Buffer.from('"}')]),
    );
    const jwt = readCompactJwt(`${HEADER}.${segment}.c2ln`);
    expect(jwt?.claims.iss).to.equal(ISSUER);
    expect(ours(segment)).to.deep.include({ ok: false, name: 'JWTInvalid' });
  });

  it('refuses a protected header that is not UTF-8, where a claims set that is not can still be read', () => {
    const payload = b64(JSON.stringify({ iss: ISSUER, aud: 'exchange' }));
    const header = (bytes: number[]) =>
      b64(Buffer.concat([Buffer.from('{"alg":"ES256","x":"'), Buffer.from(bytes), Buffer.from('"}')]));
    for (const bytes of [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe9, 0x41]]) {
      expect(readCompactJwt(`${header(bytes)}.${payload}.c2ln`), bytes.join(' ')).to.equal(undefined);
    }
    expect(readCompactJwt(`${header([0xc3, 0xa9])}.${payload}.c2ln`)?.header.x).to.equal('é');
  });

  it('checks exp and nbf with the leeway at its exact edges', () => {
    const at = (claims: Record<string, unknown>) =>
      ours(b64(JSON.stringify({ iss: ISSUER, aud: 'exchange', ...claims })));
    expect(at({ exp: NOW_S - 29 })).to.deep.include({ ok: true });
    expect(at({ exp: NOW_S - 30 })).to.deep.include({ ok: false, name: 'JWTExpired', claim: 'exp' });
    expect(at({ exp: NOW_S + 60, nbf: NOW_S + 30 })).to.deep.include({ ok: true });
    expect(at({ exp: NOW_S + 60, nbf: NOW_S + 31 })).to.deep.include({ ok: false, claim: 'nbf' });
    expect(at({ nbf: NOW_S })).to.deep.include({ ok: false, claim: 'exp', reason: 'missing' });
  });
});
