import { collectDefaultMetrics, Gauge, type Metric, Registry } from 'prom-client';

/** The process's Prometheus registry and the instruments shared across modules. */
export interface Metrics {
  readonly registry: Registry;
  readonly httpDuration: BoundHistogram<'server' | 'route' | 'method' | 'status'>;
}

/** A fresh registry (one per app, so tests can run several apps in one process) with Node's default metrics. */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const httpDuration = new BoundHistogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by server, route pattern, method and status.',
    labelNames: ['server', 'route', 'method', 'status'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  return { registry, httpDuration };
}

/** One label set of a {@link BoundHistogram}. */
export interface HistogramChild {
  /** Counts `value`; a value that is not a finite number is ignored. */
  observe(value: number): void;
}

/** Settings of {@link BoundHistogram}, as for prom-client's `Histogram`. */
export interface BoundHistogramOptions<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  /** Upper bounds, ascending; `+Inf` is implied. */
  readonly buckets: readonly number[];
  readonly registers: readonly Registry[];
}

/** One sample of a metric as prom-client's registry renders it. */
interface Sample {
  readonly labels: Readonly<Record<string, string | number>>;
  readonly value: number;
  readonly metricName: string;
}

interface ChildState {
  readonly labels: Readonly<Record<string, string>>;
  /** Observations per bucket (not cumulative); the last slot counts those above every bound. */
  readonly counts: Float64Array;
  sum: number;
}

/**
 * A histogram for observations made on every request. prom-client's own `Histogram` validates and hashes the
 * labels again on each `observe`, even through a child from `labels()` (about 1–3 µs a request on the token
 * endpoint, measured); here a child is bound to its label values once, and an observation is a bucket search and
 * two additions. The registry renders it like prom-client's own histograms: cumulative `_bucket` series with
 * `le`, then `_sum` and `_count`.
 */
export class BoundHistogram<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #labelNames: readonly L[];
  readonly #bounds: readonly number[];
  readonly #children = new Map<string, { state: ChildState; child: HistogramChild }>();

  constructor(options: BoundHistogramOptions<L>) {
    this.name = options.name;
    this.help = options.help;
    this.#labelNames = options.labelNames;
    this.#bounds = [...options.buckets].sort((a, b) => a - b);
    // prom-client's registry reads any metric through `get()`; its type names only its own classes.
    for (const registry of options.registers) registry.registerMetric(this as unknown as Metric);
  }

  /** The child for these label values, in the order of `labelNames`; created once, then reused. */
  labels(...values: string[]): HistogramChild {
    if (values.length !== this.#labelNames.length) {
      throw new Error(`${this.name} takes ${this.#labelNames.length} label values, got ${values.length}`);
    }
    const key = values.join('\u0000');
    let entry = this.#children.get(key);
    if (!entry) {
      const labels: Record<string, string> = {};
      this.#labelNames.forEach((name, i) => (labels[name] = values[i] as string));
      const state: ChildState = { labels, counts: new Float64Array(this.#bounds.length + 1), sum: 0 };
      const bounds = this.#bounds;
      const child = {
        observe(value: number): void {
          if (!Number.isFinite(value)) return;
          let i = 0;
          while (i < bounds.length && value > (bounds[i] as number)) i++;
          state.counts[i] = (state.counts[i] as number) + 1;
          state.sum += value;
        },
      };
      this.#children.set(key, (entry = { state, child }));
    }
    return entry.child;
  }

  /** The samples, as prom-client's registry reads them. */
  get(): Promise<{ name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: Sample[] }> {
    const values: Sample[] = [];
    for (const { state } of this.#children.values()) {
      let cumulative = 0;
      this.#bounds.forEach((bound, i) => {
        cumulative += state.counts[i] as number;
        values.push({
          labels: { ...state.labels, le: bound },
          value: cumulative,
          metricName: `${this.name}_bucket`,
        });
      });
      cumulative += state.counts[this.#bounds.length] as number;
      values.push({
        labels: { ...state.labels, le: '+Inf' },
        value: cumulative,
        metricName: `${this.name}_bucket`,
      });
      values.push({ labels: { ...state.labels }, value: state.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...state.labels }, value: cumulative, metricName: `${this.name}_count` });
    }
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    });
  }

  /** Forgets every observation (the registry's `resetMetrics`); children stay bound and start again from zero. */
  reset(): void {
    for (const { state } of this.#children.values()) {
      state.counts.fill(0);
      state.sum = 0;
    }
  }
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
