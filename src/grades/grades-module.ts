import { randomBytes } from 'node:crypto';
import type { Capability, SharedPieces } from '../capability.js';
import type { Config } from '../config.js';
import { createGradesMetrics } from './grades-metrics.js';
import { GradesReplica } from './grades-replica.js';
import { BasicAuth, getRoutes, setRoutes } from './routes.js';

/** The settings the grades capability reads. */
export type GradesModuleConfig = Pick<Config, 'replicaId' | 'grades'>;

/**
 * The grades capability (G1–G9): one replica (the Grades actor, its outbox to the stream, the consumer of
 * everyone else's writes, joining from a peer's backup), `POST /set` on the set port, `GET /get` and `GET /backup`
 * on the get port. Ready once the replica has joined and caught up with the stream.
 */
export function createGradesModule(config: GradesModuleConfig, shared: SharedPieces): Capability {
  const { log, metrics } = shared;
  let password = config.grades.password;
  if (!password) {
    password = randomBytes(18).toString('base64url');
    // Logged once, on purpose: there is no built-in default, and an operator who set none needs this one.
    log.warn(
      { user: config.grades.user, generatedPassword: password },
      'GRADES_PASSWORD is not set; generated one for this run',
    );
  }
  const gradesMetrics = createGradesMetrics(metrics);
  const grades = new GradesReplica({
    replicaId: config.replicaId,
    ...(shared.nats ? { nats: shared.nats } : {}),
    stream: config.grades.stream,
    peers: config.grades.peers,
    peerAuthorization: BasicAuth.header(config.grades.user, password),
    publishWindow: config.grades.publishWindow,
    joinAttempts: config.grades.joinAttempts,
    ...(config.grades.outboxDir ? { outboxDir: config.grades.outboxDir } : {}),
    ...(config.grades.restoreFrom ? { restoreFrom: config.grades.restoreFrom } : {}),
    writeTimeoutMs: config.grades.writeTimeoutMs,
    metrics: gradesMetrics.sink,
    ...(shared.clusterAuth ? { auth: shared.clusterAuth } : {}),
    log,
    onFatal: shared.onFatal,
  });
  gradesMetrics.watch(grades);

  // The routes see the replica only through its port (reads, writes, backups), never the actor behind it.
  const routes = { grades, auth: new BasicAuth(config.grades.user, password), replicaId: config.replicaId };
  const ports = { set: 0, get: 0 };
  return {
    name: 'grades',
    foundations: [],
    services: [grades],
    listeners: [
      {
        name: 'grades-set',
        port: config.grades.setPort,
        maxBodyBytes: config.grades.maxBodyBytes,
        routes: setRoutes(routes),
        onListening: (port) => (ports.set = port),
      },
      {
        name: 'grades-get',
        port: config.grades.getPort,
        maxBodyBytes: 1024,
        routes: getRoutes(routes),
        readiness: [{ name: 'grades', check: () => ({ ready: grades.ready, detail: grades.stats }) }],
        onListening: (port) => (ports.get = port),
      },
    ],
    summary: () => ({ gradesSetPort: ports.set, gradesGetPort: ports.get }),
  };
}
