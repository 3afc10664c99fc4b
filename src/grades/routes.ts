import { createHash, timingSafeEqual } from 'node:crypto';
import { BadRequestError, NotFoundError, UnsupportedMediaTypeError } from '../errors.js';
import { parseBasic } from '../http/basic-auth.js';
import type { HttpResponse, Route } from '../http/server.js';
import { GradesUnavailableError, GradesWriteUnconfirmedError } from './errors.js';
import { gradeUpdateSchema } from './model.js';
import type { GradesPort } from './port.js';

/** HTTP Basic credentials compared as SHA-256 digests in constant time (G4). */
export class BasicAuth {
  readonly #user: Buffer;
  readonly #password: Buffer;

  constructor(user: string, password: string) {
    this.#user = digest(user);
    this.#password = digest(password);
  }

  /** The `Authorization` value these credentials make (for joining peers). */
  static header(user: string, password: string): string {
    return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  }

  /** True when `authorization` carries these credentials. Both parts are always compared. */
  accepts(authorization: string | undefined): boolean {
    const basic = parseBasic(authorization);
    const userOk = timingSafeEqual(digest(basic?.user ?? ''), this.#user);
    const passwordOk = timingSafeEqual(digest(basic?.password ?? ''), this.#password);
    return basic !== undefined && userOk && passwordOk;
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

const UNAUTHORIZED: HttpResponse = {
  status: 401,
  headers: { 'www-authenticate': 'Basic realm="grades", charset="UTF-8"' },
  json: { error: 'unauthorized', message: 'valid credentials are required' },
};
const NOT_READY: HttpResponse = {
  status: 503,
  headers: { 'retry-after': '1' },
  json: { error: 'not_ready', message: 'replica is still joining the cluster' },
};

/** The response header that carries the stream sequence a write was stored at (a 200 with replication). */
export const STREAM_SEQUENCE_HEADER = 'x-stream-sequence';
/** The response header of a 202: the write is kept locally and waits to be replicated. */
export const REPLICATION_HEADER = 'x-replication';

/** What the grades routes need. */
export interface GradesRoutesOptions {
  readonly grades: GradesPort;
  readonly auth: BasicAuth;
  readonly replicaId: string;
}

/** The set port (G1): `POST /set`, behind basic auth. */
export function setRoutes(o: GradesRoutesOptions): Route[] {
  return [
    {
      method: 'POST',
      path: '/set',
      handler: async (req) => {
        if (!o.auth.accepts(req.headers.authorization)) return UNAUTHORIZED;
        if (!o.grades.ready) return NOT_READY;
        const type = (req.headers['content-type'] ?? 'application/json').split(';')[0]?.trim().toLowerCase();
        if (type !== 'application/json')
          throw new UnsupportedMediaTypeError('content type must be application/json');
        const text = (await req.body()).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          throw new BadRequestError('body is not valid JSON');
        }
        const parsed = gradeUpdateSchema.safeParse(json);
        if (!parsed.success) {
          const issue = parsed.error.issues[0];
          const where = issue?.path.join('.') || 'body';
          throw new BadRequestError(`${where}: ${issue?.message ?? 'invalid'}`);
        }
        let outcome;
        try {
          outcome = await o.grades.set(parsed.data);
        } catch (err) {
          if (err instanceof GradesUnavailableError || err instanceof GradesWriteUnconfirmedError) {
            return {
              status: 503,
              headers: { 'retry-after': '1' },
              json: {
                error: err instanceof GradesUnavailableError ? 'unavailable' : 'unconfirmed',
                message: err.message,
              },
            };
          }
          throw err;
        }
        switch (outcome.status) {
          case 'stored':
            return {
              status: 200,
              headers: { [STREAM_SEQUENCE_HEADER]: String(outcome.seq) },
              json: outcome.record,
            };
          case 'logged':
            return { status: 202, headers: { [REPLICATION_HEADER]: 'pending' }, json: outcome.record };
          case 'local':
            return { status: 200, json: outcome.record };
          default: {
            const unknown: never = outcome;
            throw new Error(`unknown outcome ${JSON.stringify(unknown)}`);
          }
        }
      },
    },
  ];
}

/** The get port (G1): `GET /get?user_id=…`, and `GET /backup` behind basic auth (G4, G7). */
export function getRoutes(o: GradesRoutesOptions): Route[] {
  return [
    {
      method: 'GET',
      path: '/get',
      handler: (req) => {
        if (!o.grades.ready) return NOT_READY;
        const userId = req.query.get('user_id');
        if (!userId) throw new BadRequestError('user_id is required');
        const record = o.grades.get(userId);
        if (!record) throw new NotFoundError('no such user_id');
        return { status: 200, json: record };
      },
    },
    {
      method: 'GET',
      path: '/backup',
      handler: async (req) => {
        if (!o.auth.accepts(req.headers.authorization)) return UNAUTHORIZED;
        if (!o.grades.ready) return NOT_READY;
        const backup = await o.grades.backup();
        const stamp = backup.generatedAt
          .toISOString()
          .replace(/[-:]/g, '')
          .replace(/\.\d+Z$/, 'Z');
        return {
          status: 200,
          headers: {
            'content-type': 'application/gzip',
            'content-disposition': `attachment; filename="grades-${o.replicaId}-${stamp}-seq${backup.position}.csv.gz"`,
            [STREAM_SEQUENCE_HEADER]: String(backup.position),
            'x-generated-at': backup.generatedAt.toISOString(),
            'cache-control': 'no-store',
          },
          stream: backup.body,
        };
      },
    },
  ];
}
