/**
 * Prometheus metrics (prom-client), one registry per process (never the global one, so tests
 * can build several apps). What an operator of a radiology deployment watches: request
 * latency by route, the job queue's depth and the age of its oldest waiting job, analysis
 * duration by model and outcome, refusals, webhook delivery failures. Labels never carry ids
 * or patient data: routes are patterns (`/api/scans/:id`), not URLs.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface QueueStat {
  queue: string;
  state: string;
  count: number;
  /** Seconds since the oldest job in this state was created. */
  oldestSeconds: number;
}

export interface Metrics {
  registry: Registry;
  httpDuration: Histogram<'method' | 'route' | 'status_code'>;
  analysisDuration: Histogram<'model' | 'outcome'>;
  analysisRefusals: Counter<'scan_type'>;
  webhookFailures: Counter<'reason'>;
  /** The text a scrape answers with. */
  render(): Promise<string>;
}

export interface MetricsOptions {
  /** Queue depth by state; read on each scrape (a GROUP BY over pg-boss's job table). */
  queueStats?: () => Promise<QueueStat[]>;
  /** process_* and nodejs_* metrics (event loop lag, heap, GC); off in tests. */
  defaultMetrics?: boolean;
}

export function createMetrics(opts: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });

  const httpDuration = new Histogram({
    name: 'imagemedix_http_request_duration_seconds',
    help: 'HTTP request latency by method, route pattern and status code',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const analysisDuration = new Histogram({
    name: 'imagemedix_analysis_duration_seconds',
    help: 'Time an analysis job took in the worker (load, model, heatmap, save), by model and outcome',
    labelNames: ['model', 'outcome'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const analysisRefusals = new Counter({
    name: 'imagemedix_analysis_refusals_total',
    help: 'Images a model refused to read (out of distribution, wrong kind of image), by scan type',
    labelNames: ['scan_type'] as const,
    registers: [registry],
  });
  const webhookFailures = new Counter({
    name: 'imagemedix_webhook_delivery_failures_total',
    help: 'Failed webhook delivery attempts, by reason (network, status, refused); retried or final',
    labelNames: ['reason'] as const,
    registers: [registry],
  });

  if (opts.queueStats) {
    const read = opts.queueStats;
    // Both gauges come from one query per scrape: a scrape collects every metric at once, so
    // the second collect finds the first one's query still in flight and shares it.
    let inFlight: Promise<QueueStat[]> | null = null;
    const stats = () => {
      inFlight ??= read()
        .catch(() => [])
        .finally(() => {
          inFlight = null;
        });
      return inFlight;
    };
    new Gauge({
      name: 'imagemedix_queue_jobs',
      help: 'Jobs in the queue by queue and state (created = waiting, retry = waiting to retry, active = running)',
      labelNames: ['queue', 'state'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const s of await stats()) this.set({ queue: s.queue, state: s.state }, s.count);
      },
    });
    new Gauge({
      name: 'imagemedix_queue_oldest_job_age_seconds',
      help: 'Age of the oldest job in each queue and state: a growing value means the workers do not keep up',
      labelNames: ['queue', 'state'] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const s of await stats()) this.set({ queue: s.queue, state: s.state }, s.oldestSeconds);
      },
    });
  }

  return {
    registry,
    httpDuration,
    analysisDuration,
    analysisRefusals,
    webhookFailures,
    render: () => registry.metrics(),
  };
}

/** Queue statistics from pg-boss's job table, through any SQL executor. */
export function pgBossQueueStats(executor: { executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }> }) {
  return async (): Promise<QueueStat[]> => {
    const { rows } = await executor.executeSql(
      `select name, state::text as state, count(*)::int as count,
              coalesce(extract(epoch from now() - min(created_on)), 0)::float8 as oldest
         from pgboss.job where state in ('created', 'retry', 'active') group by name, state`,
      [],
    );
    return (rows as { name: string; state: string; count: number; oldest: number }[]).map((r) => ({
      queue: r.name,
      state: r.state,
      count: Number(r.count),
      oldestSeconds: Number(r.oldest),
    }));
  };
}
