import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { access, constants } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

/** The docker-compose binary on PATH (Debian's `docker-compose` package), or undefined. */
async function findDockerCompose(): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const candidate = join(dir, 'docker-compose');
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

describe('deployment files', () => {
  it('compose.yaml is valid (docker-compose config -q) and brings up Postgres, NATS and three replicas', async function () {
    const dockerCompose = await findDockerCompose();
    if (!dockerCompose) {
      // CI installs docker-compose (.ci/run), so there its absence is a failure, not a reason to skip.
      if (process.env.CI === 'true') {
        throw new Error('docker-compose is not installed, and CI=true: compose.yaml cannot be validated');
      }
      console.log(
        '      docker-compose is not installed (apt-get install docker-compose): compose.yaml not validated',
      );
      this.skip();
    }
    // Validation needs no Docker engine, and the secrets' placeholders keep it independent of the environment.
    const env = { PATH: process.env.PATH ?? '' };
    await run(dockerCompose, ['-f', 'compose.yaml', 'config', '-q'], { cwd: ROOT, env });
    const { stdout: resolved } = await run(dockerCompose, ['-f', 'compose.yaml', 'config'], {
      cwd: ROOT,
      env,
    });
    const services = /^services:\n((?: .*\n)*)/m.exec(resolved)?.[1] ?? '';
    expect([...services.matchAll(/^ {2}(\w+):$/gm)].map((m) => m[1]).sort()).to.deep.equal([
      'nats',
      'postgres',
      'replica1',
      'replica2',
      'replica3',
    ]);
    // Every replica publishes its three ports, knows its two peers, and shares the secrets.
    for (const [replica, ports] of [
      ['replica1', [8080, 8081, 8082]],
      ['replica2', [8090, 8091, 8092]],
      ['replica3', [8100, 8101, 8102]],
    ] as const) {
      ports.forEach((port, i) => expect(resolved).to.include(`127.0.0.1:${port}:${8080 + i}/tcp`));
      expect(resolved).to.include(`REPLICA_ID: ${replica}`);
      const peers = ['replica1', 'replica2', 'replica3'].filter((r) => r !== replica);
      expect(resolved).to.include(`GRADES_PEERS: ${peers.map((p) => `http://${p}:8082`).join(',')}`);
    }
    expect(resolved.match(/GRADES_PASSWORD: /g)).to.have.length(3);
    expect(resolved.match(/CLUSTER_SECRET: /g)).to.have.length(3);
    // Each replica keeps grades writes taken during a NATS outage on a volume of its own.
    expect(resolved.match(/GRADES_OUTBOX_DIR: \/data\/grades-outbox/g)).to.have.length(3);
    for (const n of [1, 2, 3]) expect(resolved).to.include(`grades-outbox-${n}:/data/grades-outbox`);
    expect(resolved).to.include('- -js');
  });

  it('the Dockerfile builds in stages, runs node as a non-root user, and checks /healthz without curl', async () => {
    const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile.match(/^FROM /gm)).to.have.length.greaterThan(1);
    expect(dockerfile).to.match(/npm ci --omit=dev/);
    expect(dockerfile).to.match(/^USER node$/m);
    const healthcheck = /^HEALTHCHECK (?:.*\\\n)*.*$/m.exec(dockerfile)?.[0] ?? '';
    expect(healthcheck).to.match(/CMD \["node", "-e", ".*\/healthz/);
    expect(healthcheck).not.to.match(/curl|wget/);
    expect(dockerfile).to.match(/^CMD \["node", "dist\/src\/main\.js"\]$/m);
  });
});
