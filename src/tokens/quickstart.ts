import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { hashSecret } from './client-auth.js';
import type { TokensConfig } from './tokens-config.js';

/** The id of the client generated when no tokens configuration is given. */
export const QUICKSTART_CLIENT_ID = 'quickstart';
/** The audience its service tokens are issued for. */
export const QUICKSTART_AUDIENCE = 'quickstart';

/**
 * The tokens configuration of a replica started without `TOKENS_CONFIG`: no providers and one client that may
 * ask for service tokens, with a random secret logged once (as the generated grades password is), so that a
 * first `npm start` can issue a token at once. Only the secret's digest is kept; a restart makes a new one.
 */
export function quickstartTokensConfig(log: Logger): TokensConfig {
  const secret = randomBytes(24).toString('base64url');
  log.warn(
    { generatedClientId: QUICKSTART_CLIENT_ID, generatedClientSecret: secret },
    'TOKENS_CONFIG is not set; generated one client for this run',
  );
  return {
    providers: [],
    clients: [
      {
        id: QUICKSTART_CLIENT_ID,
        secretHash: hashSecret(secret),
        grants: ['client_credentials'],
        audiences: [QUICKSTART_AUDIENCE],
        scopes: [],
      },
    ],
  };
}
