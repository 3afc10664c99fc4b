import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** The process's Prometheus registry and the instruments shared across modules. */
export interface Metrics {
  readonly registry: Registry;
  readonly httpDuration: Histogram<'server' | 'route' | 'method' | 'status'>;
}

/** A fresh registry (one per app, so tests can run several apps in one process) with Node's default metrics. */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by server, route pattern, method and status.',
    labelNames: ['server', 'route', 'method', 'status'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  return { registry, httpDuration };
}

/** A gauge whose value is read from its owner each time Prometheus scrapes. */
export function readGauge(metrics: Metrics, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [metrics.registry],
    collect() {
      this.set(read());
    },
  });
}
