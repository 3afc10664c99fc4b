import { expect } from 'chai';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashSecret } from '../../src/tokens/client-auth.js';
import { getJson, startService, type RunningService } from '../support/service.js';
import { openSlowClient, type SlowClient, type SlowKind } from '../support/slow-clients.js';

const HEADERS_TIMEOUT_MS = 1000;
const REQUEST_TIMEOUT_MS = 2000;
const KEEP_ALIVE_TIMEOUT_MS = 1000;
/** How many of each kind of slow client are opened at once against the tokens port. */
const FLOOD: Record<SlowKind, number> = { silent: 100, trickle: 150, 'slow-body': 150, idle: 100 };
/** Scheduling slack on a shared two-core machine, on top of each deadline and the sweep that enforces it. */
const SLACK_MS = 1500;

describe('slow and idle clients cannot starve token issuance (end to end)', function () {
  this.timeout(60_000);
  let dir: string;
  let service: RunningService | undefined;
  const clients: SlowClient[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'slow-clients-e2e-'));
  });
  afterEach(async () => {
    clients.splice(0).forEach((c) => c.destroy());
    await service?.stop('SIGKILL');
    service = undefined;
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('keeps issuing tokens within a bound while hundreds of slow sockets are open, and closes every one', async () => {
    const configPath = join(dir, 'tokens.json');
    await writeFile(
      configPath,
      JSON.stringify({
        providers: [],
        clients: [{ id: 'svc-a', secretHash: hashSecret('secret-a'), audiences: ['orders'] }],
      }),
    );
    service = startService({
      TOKENS_CONFIG: configPath,
      SIGNING_WORKERS: '1',
      HTTP_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      HTTP_KEEP_ALIVE_TIMEOUT_MS: String(KEEP_ALIVE_TIMEOUT_MS),
    });
    const port = ((await service.ready) as { tokensPort: number }).tokensPort;
    const authorization = `Basic ${Buffer.from('svc-a:secret-a').toString('base64')}`;
    const issue = async (): Promise<number> => {
      const started = performance.now();
      const res = await fetch(`http://127.0.0.1:${port}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization },
        body: 'grant_type=client_credentials',
      });
      const body = (await res.json()) as { access_token?: string };
      expect(res.status, JSON.stringify(body)).to.equal(200);
      expect(body.access_token).to.be.a('string');
      return performance.now() - started;
    };
    await issue();

    // The slow clients arrive in waves of 50 (as a slowloris opens its sockets), all of them within a quarter
    // second; meanwhile and for as long as any is open, tokens keep being issued one after another.
    const kinds = (Object.entries(FLOOD) as [SlowKind, number][]).flatMap(([kind, count]) =>
      Array.from({ length: count }, () => kind),
    );
    const latencies: number[] = [];
    let flooding = true;
    const issuing = (async () => {
      while (flooding) latencies.push(await issue());
    })();
    for (let i = 0; i < kinds.length; i += 50) {
      for (const kind of kinds.slice(i, i + 50)) {
        clients.push(openSlowClient(port, kind, kind === 'idle' ? '/healthz' : '/token'));
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const closedAfter = await Promise.all(clients.map((c) => c.closed));
    flooding = false;
    await issuing;

    latencies.sort((a, b) => a - b);
    const median = latencies[Math.floor(latencies.length / 2)] ?? Infinity;
    const worst = latencies[latencies.length - 1] ?? Infinity;
    expect(latencies.length, 'tokens issued during the flood').to.be.greaterThan(20);
    expect(median, 'median token latency (ms)').to.be.below(100);
    expect(worst, 'slowest token (ms)').to.be.below(1000);

    // Every slow client was closed by the service, each after its own deadline, none before it.
    const deadline: Record<SlowKind, number> = {
      silent: HEADERS_TIMEOUT_MS,
      trickle: HEADERS_TIMEOUT_MS,
      'slow-body': REQUEST_TIMEOUT_MS,
      // node:http closes an idle keep-alive connection a second after the timeout it advertises.
      idle: KEEP_ALIVE_TIMEOUT_MS + 1000,
    };
    clients.forEach((client, i) => {
      const after = closedAfter[i] ?? Infinity;
      const expected = deadline[client.kind];
      expect(after, `${client.kind} #${i}`).to.be.within(
        client.kind === 'idle' ? KEEP_ALIVE_TIMEOUT_MS - 100 : expected - 100,
        expected + SLACK_MS,
      );
    });
    expect(clients.filter((c) => c.kind === 'idle').every((c) => c.answered())).to.equal(true);
    expect((await getJson(port, '/healthz')).status).to.equal(200);
    expect(service.proc.exitCode).to.equal(null);
  });
});
