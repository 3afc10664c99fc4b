import { createHash, timingSafeEqual } from 'node:crypto';
import {
  BadRequestError,
  NotFoundError,
  NotReadyError,
  UnauthorizedError,
  UnsupportedMediaTypeError,
} from '../errors.js';
import { parseBasic } from '../http/basic-auth.js';
import type { HttpResponse, Route } from '../http/server.js';
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

/** The challenge of a request to `/set` or `/backup` without valid credentials. */
const CHALLENGE = 'Basic realm="grades", charset="UTF-8"';

/** Refuses a request without the grades credentials (401 with the challenge, through the one status table). */
function authenticate(o: GradesRoutesOptions, authorization: string | undefined): void {
  if (!o.auth.accepts(authorization)) throw new UnauthorizedError(CHALLENGE);
}

/** Refuses a request while the replica joins, catches up or rejoins (503 with `Retry-After`). */
function requireReady(o: GradesRoutesOptions): void {
  if (!o.grades.ready) throw new NotReadyError('replica is still joining the cluster');
}

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
      handler: async (req): Promise<HttpResponse> => {
        authenticate(o, req.headers.authorization);
        requireReady(o);
        // No Content-Type is refused too: a browser may send such a body cross-site without a preflight.
        const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
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
        // A write that cannot be kept is refused with a coded error (503 `unavailable` or `unconfirmed`, with
        // `Retry-After`), mapped by the one status table.
        const outcome = await o.grades.set(parsed.data);
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
        requireReady(o);
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
        authenticate(o, req.headers.authorization);
        requireReady(o);
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
