import { Lifecycle } from '../core/index.js';
import type { ConsoleCollector } from './console-collect.js';
import type { ConsoleRouteRow, ConsoleSample, ConsoleSnapshot } from './console-types.js';
import type { LimitDecisionLog } from './limit-decisions.js';
import { LATENCY_BUCKETS_SECONDS, type Metrics } from './metrics.js';

/** Samples kept for the sparklines (at the default 1.5 s: the last 3 minutes). */
export const CONSOLE_HISTORY = 120;

/** A page's feed: the JSON of each snapshot (the same string for every page). */
type Subscriber = (snapshotJson: string) => void;

type Totals = ReturnType<Metrics['routeTotals']>;

/**
 * Computes the console's snapshot once per interval, whatever the number of open pages, and
 * hands the same serialized JSON to each: a hundred pages cost one round of queries. Runs only
 * while at least one page is open; keeps the last {@link CONSOLE_HISTORY} samples so a page that
 * opens gets the recent past at once.
 */
export class ConsoleSampler {
  private readonly subscribers = new Set<Subscriber>();
  private readonly history: ConsoleSample[] = [];
  private latest: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  /** Bumped by every start and stop: a tick of an earlier run does not schedule another. */
  private generation = 0;
  private previous:
    { at: number; totals: Totals; lists: Map<string, { total: number; dead: number }> } | undefined;

  private readonly lifecycle = new Lifecycle(
    { name: 'console sampler' },
    {
      start: () => {
        this.schedule(0, ++this.generation);
      },
      stop: async () => {
        this.generation++;
        clearTimeout(this.timer);
        this.timer = undefined;
        await this.inFlight;
      },
    },
  );

  constructor(
    private readonly collector: ConsoleCollector,
    private readonly metrics: Metrics,
    private readonly decisions: LimitDecisionLog,
    private readonly settings: { intervalMs: number; readOnly: boolean },
  ) {}

  /** The recent samples, oldest first. */
  samples(): ConsoleSample[] {
    return [...this.history];
  }

  /** The newest snapshot's JSON, if one was taken since the sampler started. */
  get latestJson(): string | undefined {
    return this.latest;
  }

  /** Adds a page; the sampler runs while it has one. Returns the unsubscribe function. */
  async subscribe(fn: Subscriber): Promise<() => void> {
    this.subscribers.add(fn);
    await this.lifecycle.start();
    return () => {
      this.subscribers.delete(fn);
      if (this.subscribers.size === 0) void this.lifecycle.stop();
    };
  }

  /**
   * Takes one snapshot now; resolves with it. Each tick records it (a sample in the history, the
   * base of the next rates); one asked for on demand (`record: false`) leaves both as they are.
   */
  async snapshot(options: { record?: boolean } = {}): Promise<ConsoleSnapshot> {
    const record = options.record ?? true;
    const collected = await this.collector.collect();
    const now = Date.now();
    const totals = this.metrics.routeTotals();
    const prev = this.previous;
    const seconds = prev ? Math.max((now - prev.at) / 1000, 0.001) : 0;
    const routes: ConsoleRouteRow[] = [];
    const all = { count: 0, errors: 0, buckets: LATENCY_BUCKETS_SECONDS.map(() => 0) };
    for (const t of totals) {
      // The console's own stream is open for as long as the page is: not traffic.
      if (t.route === '/v1/console/events') continue;
      const before = prev?.totals.find((p) => p.method === t.method && p.route === t.route);
      const count = t.count - (before?.count ?? 0);
      const errors = t.serverErrors - (before?.serverErrors ?? 0);
      const buckets = t.buckets.map((b, i) => b - (before?.buckets[i] ?? 0));
      all.count += count;
      all.errors += errors;
      buckets.forEach((b, i) => (all.buckets[i]! += b));
      if (prev && count > 0) {
        routes.push({
          method: t.method,
          route: t.route,
          perSecond: count / seconds,
          p95Ms: p95(buckets, count),
          serverErrorsPerSecond: errors / seconds,
        });
      }
    }
    routes.sort((a, b) => b.perSecond - a.perSecond);
    const listSample: ConsoleSample['lists'] = {};
    const listTotals = new Map<string, { total: number; dead: number }>();
    for (const l of collected.lists ?? []) {
      const before = prev?.lists.get(l.list);
      listTotals.set(l.list, { total: l.total, dead: l.dead });
      listSample[l.list] = {
        size: l.total,
        drainedPerSecond: prev ? Math.max(0, (before?.total ?? 0) - l.total) / seconds : 0,
        newDeadPerSecond: prev ? Math.max(0, l.dead - (before?.dead ?? 0)) / seconds : 0,
      };
    }
    const lag: ConsoleSample['lag'] = {};
    for (const g of collected.changes?.groups ?? []) lag[g.group] = (lag[g.group] ?? 0) + g.lag;
    const sample: ConsoleSample = {
      at: now,
      lists: listSample,
      lag,
      requestsPerSecond: prev ? all.count / seconds : 0,
      serverErrorsPerSecond: prev ? all.errors / seconds : 0,
      p95Ms: p95(all.buckets, all.count),
    };
    if (record) {
      this.previous = {
        at: now,
        totals,
        lists: collected.lists ? listTotals : (prev?.lists ?? listTotals),
      };
      this.history.push(sample);
      if (this.history.length > CONSOLE_HISTORY) this.history.shift();
    }
    return {
      at: new Date(now).toISOString(),
      intervalMs: this.settings.intervalMs,
      readOnly: this.settings.readOnly,
      lists: collected.lists,
      workers: collected.workers,
      changes: collected.changes,
      leases: collected.leases,
      limits: this.decisions.list(),
      cluster: collected.cluster,
      service: { routes: routes.slice(0, 20) },
      sample,
      problems: collected.problems,
    };
  }

  /** Stops the ticks (pages get nothing more). Idempotent. */
  stop(): Promise<void> {
    this.subscribers.clear();
    return this.lifecycle.stop();
  }

  private schedule(delayMs: number, generation: number): void {
    this.timer = setTimeout(() => {
      this.inFlight = this.tick().finally(() => {
        this.inFlight = undefined;
        if (generation === this.generation && this.subscribers.size > 0) {
          this.schedule(this.settings.intervalMs, generation);
        }
      });
    }, delayMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    let json: string;
    try {
      json = JSON.stringify(await this.snapshot());
    } catch {
      // collect() isolates its sections; what is left is a bug, and the next tick tries again.
      return;
    }
    this.latest = json;
    for (const fn of this.subscribers) fn(json);
  }
}

/** The upper bound, in ms, of the histogram bucket holding the 95th percentile; null when empty. */
function p95(buckets: number[], count: number): number | null {
  if (count <= 0) return null;
  const target = Math.ceil(count * 0.95);
  for (let i = 0; i < buckets.length; i++) {
    if (buckets[i]! >= target) return LATENCY_BUCKETS_SECONDS[i]! * 1000;
  }
  return LATENCY_BUCKETS_SECONDS[LATENCY_BUCKETS_SECONDS.length - 1]! * 1000;
}
