import { expect } from 'chai';
import { createGradesMetrics } from '../../../src/grades/grades-metrics.js';
import { GradesReplica } from '../../../src/grades/grades-replica.js';
import { silentLogger } from '../../../src/log.js';
import { createMetrics } from '../../../src/metrics.js';

describe('grades metrics', () => {
  it('exposes records, position, lag, outbox, gaps, rejoins and replays, read from the replica and its sink', async () => {
    const metrics = createMetrics();
    const gradesMetrics = createGradesMetrics(metrics);
    const replica = new GradesReplica({
      replicaId: 'm',
      stream: { name: 'S', subject: 's', maxAgeS: 1, maxBytes: -1, duplicateWindowS: 1 },
      peers: [],
      peerAuthorization: 'Basic x',
      publishWindow: 8,
      joinAttempts: 1,
      metrics: gradesMetrics.sink,
      log: silentLogger(),
      onFatal: () => undefined,
    });
    gradesMetrics.watch(replica);
    await replica.start();
    await replica.set({ user_id: 'a', spp: 1 });
    gradesMetrics.sink.replicationDelay(4);
    gradesMetrics.sink.gap();
    gradesMetrics.sink.rejoin();
    gradesMetrics.sink.replayed?.();
    gradesMetrics.sink.replayed?.();
    const text = await metrics.registry.metrics();
    expect(text).to.match(/^grades_records 1$/m);
    expect(text).to.match(/^grades_stream_position 0$/m);
    expect(text).to.match(/^grades_replication_lag_messages 0$/m);
    expect(text).to.match(/^grades_replication_lag_seconds 0\.004$/m);
    expect(text).to.match(/^grades_replication_delay_seconds_bucket\{le="0\.005"\} 1$/m);
    expect(text).to.match(/^grades_outbox 0$/m);
    expect(text).to.match(/^grades_outbox_oldest_age_seconds 0$/m);
    expect(text).to.match(/^grades_gaps_total 1$/m);
    expect(text).to.match(/^grades_rejoins_total 1$/m);
    expect(text).to.match(/^grades_messages_replayed_total 2$/m);
    await replica.stop();
  });
});
