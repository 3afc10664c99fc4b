import { request } from 'undici';
import { AppError } from '../errors.js';

/** Fetches a JSON document; injected wherever this service calls out, so tests can replace it. */
export type FetchJson = (url: string, options: { timeoutMs: number; maxBytes: number }) => Promise<unknown>;

/** Raised for any failure to get a usable document: network, status, size, or JSON. */
export class FetchError extends AppError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FETCH_FAILED', message, options);
  }
}

/** The production {@link FetchJson}: undici with header and body timeouts and a size cap; no redirects. */
export const undiciFetchJson: FetchJson = async (url, { timeoutMs, maxBytes }) => {
  let response;
  try {
    response = await request(url, {
      method: 'GET',
      headers: { accept: 'application/json' },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new FetchError(`GET ${url} failed`, { cause: err });
  }
  const { statusCode, body } = response;
  try {
    if (statusCode !== 200) throw new FetchError(`GET ${url} answered ${statusCode}`);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBytes) throw new FetchError(`GET ${url}: body exceeds ${maxBytes} bytes`);
      chunks.push(chunk);
    }
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch (err) {
    // undici's body, destroyed before its end, emits an abort error; with no listener it would be uncaught and
    // end the process (a provider answering 500 did exactly that).
    body.on('error', () => undefined);
    body.destroy();
    if (err instanceof FetchError) throw err;
    throw new FetchError(`GET ${url}: unreadable body`, { cause: err });
  }
};
