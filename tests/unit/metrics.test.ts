import { expect } from 'chai';
import { Histogram, Registry } from 'prom-client';
import { BoundHistogram } from '../../src/metrics.js';

/** The samples of a Prometheus text exposition, as `name{label="value",…} value` with labels sorted. */
function samples(text: string): string[] {
  return text
    .split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const match = /^([a-z_]+)(?:\{(.*)\})? (.+)$/.exec(line);
      if (!match) throw new Error(`not a sample: ${line}`);
      const labels = (match[2] ?? '').split(',').filter(Boolean).sort().join(',');
      return `${match[1]}{${labels}} ${match[3]}`;
    })
    .sort();
}

describe('metrics – bound histogram', () => {
  const options = {
    help: 'durations',
    labelNames: ['route', 'status'] as const,
    buckets: [0.001, 0.01, 0.1, 1],
  };
  const observations: [string, string, number][] = [
    ['/a', '200', 0.0005],
    ['/a', '200', 0.001],
    ['/a', '200', 0.05],
    ['/a', '500', 3],
    ['/b', '200', 0.2],
    ['/a', '200', 1],
  ];

  it('renders exactly the samples prom-client’s own histogram renders for the same observations', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const bound = new BoundHistogram({ ...options, name: 'd_seconds', registers: [ours] });
    const reference = new Histogram({ ...options, name: 'd_seconds', registers: [theirs] });
    for (const [route, status, value] of observations) {
      bound.labels(route, status).observe(value);
      reference.labels(route, status).observe(value);
    }
    const text = await ours.metrics();
    expect(samples(text)).to.deep.equal(samples(await theirs.metrics()));
    expect(text).to.contain('# TYPE d_seconds histogram');
    expect(text).to.contain('d_seconds_count{route="/a",status="200"} 4');
    expect(text).to.contain('d_seconds_bucket{route="/a",status="200",le="0.001"} 2');
    expect(text).to.contain('d_seconds_bucket{route="/a",status="500",le="1"} 0');
    expect(text).to.contain('d_seconds_bucket{route="/a",status="500",le="+Inf"} 1');
  });

  it('hands out one child per label set, and a reset starts every child from zero', async () => {
    const registry = new Registry();
    const bound = new BoundHistogram({ ...options, name: 'r_seconds', registers: [registry] });
    const child = bound.labels('/a', '200');
    expect(bound.labels('/a', '200')).to.equal(child);
    child.observe(0.5);
    registry.resetMetrics();
    child.observe(0.002);
    const text = await registry.metrics();
    expect(text).to.contain('r_seconds_count{route="/a",status="200"} 1');
    expect(text).to.contain('r_seconds_sum{route="/a",status="200"} 0.002');
  });

  it('refuses label values that do not match its label names', () => {
    const bound = new BoundHistogram({ ...options, name: 'x_seconds', registers: [] });
    expect(() => bound.labels('/a')).to.throw(/takes 2 label values/);
  });
});
