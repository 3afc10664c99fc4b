import { expect } from 'chai';
import {
  AppError,
  BadRequestError,
  MethodNotAllowedError,
  NotReadyError,
  PayloadTooLargeError,
  UnauthorizedError,
} from '../../../src/errors.js';
import { httpStatus, toErrorResponse } from '../../../src/http/errors.js';
import { OAuthError } from '../../../src/tokens/oauth-error.js';
import { ProviderUnavailableError, UnknownKeyError } from '../../../src/tokens/remote-jwks.js';

describe('error model – one union of codes, one table of statuses', () => {
  it('every error class is an AppError with a stable code, its class name and its cause', () => {
    const cause = new Error('socket hang up');
    const errors = [
      [new BadRequestError('x'), 'BAD_REQUEST', 'BadRequestError'],
      [new OAuthError('invalid_grant', 'x', { cause }), 'invalid_grant', 'OAuthError'],
      [new ProviderUnavailableError('idp', { cause }), 'PROVIDER_UNAVAILABLE', 'ProviderUnavailableError'],
      [new UnknownKeyError('idp', 'k1'), 'UNKNOWN_KEY', 'UnknownKeyError'],
    ] as const;
    for (const [err, code, name] of errors) {
      expect(err).to.be.instanceOf(AppError);
      expect(err.code).to.equal(code);
      expect(err.name).to.equal(name);
    }
    expect(errors[1][0].cause).to.equal(cause);
    expect(errors[2][0].cause).to.equal(cause);
  });

  it('maps service and OAuth codes through the same table', () => {
    expect(httpStatus('BAD_REQUEST')).to.equal(400);
    expect(httpStatus('NOT_READY')).to.equal(503);
    expect(httpStatus('invalid_client')).to.equal(401);
    expect(httpStatus('temporarily_unavailable')).to.equal(503);
    expect(toErrorResponse(new MethodNotAllowedError())).to.deep.equal({
      status: 405,
      headers: {},
      body: { error: 'method_not_allowed', message: 'method not allowed' },
    });
    expect(toErrorResponse(new PayloadTooLargeError(10)).status).to.equal(413);
  });

  it('a credentials error carries its challenge and a not-ready one its Retry-After', () => {
    expect(toErrorResponse(new UnauthorizedError('Basic realm="grades"'))).to.deep.include({
      status: 401,
      headers: { 'www-authenticate': 'Basic realm="grades"' },
    });
    expect(toErrorResponse(new NotReadyError('joining', 2))).to.deep.include({
      status: 503,
      headers: { 'retry-after': '2' },
    });
  });

  it('anything else is a 500 that shows nothing of itself', () => {
    const mapped = toErrorResponse(new Error('password=hunter2 at db.ts:12'));
    expect(mapped).to.deep.equal({
      status: 500,
      headers: {},
      body: { error: 'internal_error', message: 'internal error' },
    });
  });
});
