import type { LimiterActivity } from './console-types.js';
import type { RouteContext } from './route-context.js';

/** Limiter names kept; the least recently used is dropped past this many. */
const MAX_NAMES = 200;
/** Recent decisions kept per name. */
const RECENT = 20;

/**
 * The decisions `POST /v1/limits/:name/:key` made, per limiter name: counts and the last few, for
 * the console. In memory, per service process; bounded in names and in decisions per name.
 */
export class LimitDecisionLog {
  private readonly names = new Map<string, LimiterActivity>();

  /** Counts one decision of limiter `name` for `key` and keeps it among the recent ones. */
  record(name: string, key: string, allowed: boolean, remaining: number): void {
    let a = this.names.get(name);
    if (a) {
      // Most recently used last, so the first entry is the one to drop.
      this.names.delete(name);
    } else {
      a = { name, allowed: 0, denied: 0, recent: [] };
      if (this.names.size >= MAX_NAMES) this.names.delete(this.names.keys().next().value!);
    }
    this.names.set(name, a);
    if (allowed) a.allowed++;
    else a.denied++;
    a.recent.push({ at: new Date().toISOString(), key, allowed, remaining });
    if (a.recent.length > RECENT) a.recent.shift();
  }

  /** Every name's activity, by name (copies). */
  list(): LimiterActivity[] {
    return [...this.names.values()]
      .map((a) => ({ ...a, recent: [...a.recent] }))
      .sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  }
}

const logs = new WeakMap<RouteContext, LimitDecisionLog>();

/** The decision log of one service (one RouteContext): shared by the limit routes and the console. */
export function limitDecisionLog(ctx: RouteContext): LimitDecisionLog {
  let log = logs.get(ctx);
  if (!log) {
    log = new LimitDecisionLog();
    logs.set(ctx, log);
  }
  return log;
}
