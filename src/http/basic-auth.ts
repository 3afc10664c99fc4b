/** The user and password of an HTTP Basic `Authorization` header (RFC 7617). */
export interface BasicCredentials {
  readonly user: string;
  readonly password: string;
}

/**
 * Reads an HTTP Basic `Authorization` header: base64 of `user:password`, split at the first colon. Undefined
 * when the header is absent or not of that form. The values are returned as sent; OAuth clients, whose ids and
 * secrets are form-urlencoded inside (RFC 6749 §2.3.1), decode them on top.
 */
export function parseBasic(authorization: string | undefined): BasicCredentials | undefined {
  const match = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(authorization?.trim() ?? '');
  if (!match?.[1]) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
