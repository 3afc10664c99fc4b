import type { Metrics } from '../metrics.js';
import type { Route } from './server.js';

/** One readiness condition; `detail` is shown in `/readyz` whether it holds or not. */
export interface ReadinessCheck {
  readonly name: string;
  check(): { ready: boolean; detail?: unknown };
}

/**
 * `GET /healthz` (the process answers), `GET /readyz` (every readiness check holds; 503 with the failing ones
 * otherwise) and `GET /metrics` (Prometheus text).
 */
export function healthRoutes(checks: readonly ReadinessCheck[], metrics: Metrics): Route[] {
  return [
    { method: 'GET', path: '/healthz', handler: () => ({ status: 200, json: { status: 'ok' } }) },
    {
      method: 'GET',
      path: '/readyz',
      handler: () => {
        const results = Object.fromEntries(checks.map((c) => [c.name, c.check()]));
        const ready = Object.values(results).every((r) => r.ready);
        return {
          status: ready ? 200 : 503,
          headers: { 'cache-control': 'no-store' },
          json: { status: ready ? 'ready' : 'not_ready', checks: results },
        };
      },
    },
    {
      method: 'GET',
      path: '/metrics',
      handler: async () => ({
        status: 200,
        headers: { 'content-type': metrics.registry.contentType },
        body: await metrics.registry.metrics(),
      }),
    },
  ];
}
