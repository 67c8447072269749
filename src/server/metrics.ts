/**
 * Prometheus text exposition, written by hand (no client library): request counts and latency per
 * route, plus gauges that collectors (the pool, the blocks) fill in at scrape time.
 */

/** One sample of a gauge or counter a collector reports at scrape time. */
export interface MetricSample {
  /** Metric name, `pgcoord_` prefixed by convention. */
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  value: number;
  labels?: Record<string, string>;
}

/** Returns the current samples; may be async (e.g. a query). Errors skip that collector. */
export type MetricCollector = () => MetricSample[] | Promise<MetricSample[]>;

/** Latency buckets in seconds (upper bounds of the histogram). */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
const BUCKETS = LATENCY_BUCKETS_SECONDS;

interface RouteStats {
  method: string;
  route: string;
  byStatus: Map<string, number>;
  buckets: number[];
  sum: number;
  count: number;
}

export class Metrics {
  private readonly routes = new Map<string, RouteStats>();
  private readonly collectors: MetricCollector[] = [];

  /** Records one finished request; `route` is the route pattern, never the raw URL. */
  observe(method: string, route: string, status: number, seconds: number): void {
    const key = `${method} ${route}`;
    let s = this.routes.get(key);
    if (!s) {
      s = { method, route, byStatus: new Map(), buckets: BUCKETS.map(() => 0), sum: 0, count: 0 };
      this.routes.set(key, s);
    }
    const code = String(status);
    s.byStatus.set(code, (s.byStatus.get(code) ?? 0) + 1);
    s.sum += seconds;
    s.count++;
    for (let i = 0; i < BUCKETS.length; i++) if (seconds <= BUCKETS[i]!) s.buckets[i]!++;
  }

  /**
   * Totals since start per route: requests, those answered 5xx, and the cumulative latency
   * histogram (counts at or below each of {@link LATENCY_BUCKETS_SECONDS}). Differences between
   * two calls give rates and latencies over that span (the console does this).
   */
  routeTotals(): Array<{
    method: string;
    route: string;
    count: number;
    serverErrors: number;
    buckets: number[];
  }> {
    return [...this.routes.values()].map((s) => {
      let serverErrors = 0;
      for (const [status, n] of s.byStatus) if (status.startsWith('5')) serverErrors += n;
      return {
        method: s.method,
        route: s.route,
        count: s.count,
        serverErrors,
        buckets: [...s.buckets],
      };
    });
  }

  /** Adds a collector called at every scrape. */
  addCollector(collector: MetricCollector): void {
    this.collectors.push(collector);
  }

  /** The whole exposition, Prometheus text format 0.0.4. */
  async render(): Promise<string> {
    const out: string[] = [];
    out.push('# HELP pgcoord_http_requests_total HTTP requests served, by route and status.');
    out.push('# TYPE pgcoord_http_requests_total counter');
    for (const s of this.routes.values()) {
      for (const [status, n] of s.byStatus) {
        out.push(
          `pgcoord_http_requests_total${labels({ method: s.method, route: s.route, status })} ${n}`,
        );
      }
    }
    out.push('# HELP pgcoord_http_request_duration_seconds HTTP request latency, by route.');
    out.push('# TYPE pgcoord_http_request_duration_seconds histogram');
    for (const s of this.routes.values()) {
      const base = { method: s.method, route: s.route };
      BUCKETS.forEach((le, i) => {
        out.push(
          `pgcoord_http_request_duration_seconds_bucket${labels({ ...base, le: String(le) })} ${s.buckets[i]}`,
        );
      });
      out.push(
        `pgcoord_http_request_duration_seconds_bucket${labels({ ...base, le: '+Inf' })} ${s.count}`,
      );
      out.push(`pgcoord_http_request_duration_seconds_sum${labels(base)} ${s.sum}`);
      out.push(`pgcoord_http_request_duration_seconds_count${labels(base)} ${s.count}`);
    }
    const seen = new Set<string>();
    const results = await Promise.allSettled(this.collectors.map(async (c) => c()));
    const samples = results.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
    // Group by name so each metric gets one HELP/TYPE header.
    samples.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const m of samples) {
      if (!seen.has(m.name)) {
        seen.add(m.name);
        out.push(`# HELP ${m.name} ${m.help.replaceAll('\\', '\\\\').replaceAll('\n', '\\n')}`);
        out.push(`# TYPE ${m.name} ${m.type}`);
      }
      out.push(`${m.name}${labels(m.labels ?? {})} ${formatValue(m.value)}`);
    }
    return out.join('\n') + '\n';
  }
}

function labels(values: Record<string, string>): string {
  const parts = Object.entries(values).map(
    ([k, v]) =>
      `${k}="${v.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')}"`,
  );
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}
