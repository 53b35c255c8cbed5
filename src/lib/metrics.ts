import { Registry, Histogram, collectDefaultMetrics } from 'prom-client';

/** One Prometheus registry per app instance, so several apps can live in one process (tests, `opsdb demo`). */
export interface AppMetrics {
  registry: Registry;
  httpDuration: Histogram<'method' | 'route' | 'status'>;
}

export function createMetrics(defaults = true): AppMetrics {
  const registry = new Registry();
  if (defaults) collectDefaultMetrics({ register: registry, prefix: 'opsdb_process_' });
  const httpDuration = new Histogram({
    name: 'opsdb_http_request_duration_seconds',
    help: 'HTTP request duration in seconds, by method, route template and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [registry],
  });
  return { registry, httpDuration };
}
