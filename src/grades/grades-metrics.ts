import { Counter, Gauge, Histogram } from 'prom-client';
import { readGauge, type Metrics } from '../metrics.js';
import type { GradesMetricsSink, GradesReplica } from './grades-replica.js';

/**
 * What an operator watches on a grades replica, defined beside the code that observes it: records, stream
 * position and how far behind the stream's last sequence it is (messages and time), the outbox (writes not yet
 * in the stream, and the age of the oldest), gaps detected and rejoins. `sink` goes to the replica's options;
 * `watch` reads the replica on each scrape.
 */
export function createGradesMetrics(metrics: Metrics): {
  sink: GradesMetricsSink;
  watch(replica: GradesReplica): void;
} {
  const registers = [metrics.registry];
  const delay = new Histogram({
    name: 'grades_replication_delay_seconds',
    help: 'Time from the stream storing a grades message to this replica applying it.',
    buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5, 30],
    registers,
  });
  const lag = new Gauge({
    name: 'grades_replication_lag_seconds',
    help: 'Delay of the last grades message applied (time from the stream storing it to this replica applying it).',
    registers,
  });
  const gaps = new Counter({
    name: 'grades_gaps_total',
    help: 'Gaps found in the replication stream (missing sequences, a recreated stream).',
    registers,
  });
  const refused = new Counter({
    name: 'grades_messages_refused_total',
    help: 'Replication messages refused as unauthenticated (CLUSTER_SECRET), by reason; skipped, never applied.',
    labelNames: ['reason'] as const,
    registers,
  });
  const replayed = new Counter({
    name: 'grades_messages_replayed_total',
    help: 'Replication messages skipped as replays (their origin had already written past them); never applied.',
    registers,
  });
  const rejoins = new Counter({
    name: 'grades_rejoins_total',
    help: 'Rejoins from a peer backup after a gap.',
    registers,
  });
  return {
    sink: {
      replicationDelay: (ms) => {
        delay.observe(ms / 1000);
        lag.set(ms / 1000);
      },
      gap: () => gaps.inc(),
      rejoin: () => rejoins.inc(),
      refused: (reason) => refused.inc({ reason }),
      replayed: () => replayed.inc(),
    },
    watch: (replica) => {
      readGauge(
        metrics,
        'grades_records',
        'UserGrade records held by this replica.',
        () => replica.stats.records,
      );
      readGauge(
        metrics,
        'grades_stream_position',
        'Highest replication stream sequence applied by this replica.',
        () => replica.stats.position,
      );
      readGauge(
        metrics,
        'grades_replication_lag_messages',
        'Sequences the replication stream holds beyond what this replica applied.',
        () => Math.max(0, replica.stats.streamLast - replica.stats.position),
      );
      readGauge(
        metrics,
        'grades_outbox',
        'Local grade writes not yet stored by the stream (in memory or in the outbox log).',
        () => replica.stats.outbox,
      );
      readGauge(
        metrics,
        'grades_outbox_oldest_age_seconds',
        'Age of the oldest local grade write not yet stored by the stream (0 when none).',
        () => replica.stats.outboxOldestMs / 1000,
      );
    },
  };
}
