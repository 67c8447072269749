import { ChangeCapture } from '../changes/index.js';
import { LeaseManager } from '../coordination/index.js';
import { AttemptList, type StoredListLimits } from '../lists/index.js';
import type {
  ConsoleChanges,
  ConsoleInstanceRow,
  ConsoleLeaseRow,
  ConsoleListRow,
  ConsoleWorkerRow,
} from './console-types.js';
import type { ServicePool } from './route-context.js';

/** Lists shown (by name): counting is O(rows), so the console bounds it. */
export const CONSOLE_MAX_LISTS = 50;
/** Most keys per list in a snapshot (the biggest). */
export const CONSOLE_MAX_KEYS = 20;
/** Groups whose dead letters are read, and dead letters read per group. */
const MAX_DEAD_GROUPS = 20;
const DEAD_PER_GROUP = 20;
/** Stats queries in flight at once: leaves the rest of the pool to the service's traffic. */
const STATS_CONCURRENCY = 4;

/** A GET the service answers to itself (through its own routes, auth and all). */
export type InternalGet = (url: string) => Promise<{ status: number; body: unknown }>;

/** The parts of a snapshot that come from the database and the pool. */
export interface CollectedState {
  lists: ConsoleListRow[] | null;
  workers: ConsoleWorkerRow[] | null;
  changes: ConsoleChanges | null;
  leases: ConsoleLeaseRow[] | null;
  cluster: ConsoleInstanceRow[] | null;
  problems: Record<string, string>;
}

/**
 * Reads what the console shows, each section on its own: a section that fails is null with its
 * reason in `problems`, the others still arrive. Runs once per interval for every open page.
 */
export class ConsoleCollector {
  private readonly lists: AttemptList;
  private readonly capture: ChangeCapture;
  private readonly leases: LeaseManager;

  constructor(
    private readonly pool: ServicePool,
    schema: string,
    private readonly internalGet: InternalGet,
  ) {
    this.lists = new AttemptList(pool, { schema });
    this.capture = new ChangeCapture(pool, { schema });
    this.leases = new LeaseManager(pool, { schema });
  }

  async collect(): Promise<CollectedState> {
    const problems: Record<string, string> = {};
    const section = async <T>(name: string, read: () => Promise<T>): Promise<T | null> => {
      try {
        return await read();
      } catch (err) {
        problems[name] = err instanceof Error ? err.message : String(err);
        return null;
      }
    };
    const [lists, workers, changes, leases] = await Promise.all([
      section('lists', () => this.readLists()),
      section('workers', () => this.readWorkers()),
      section('changes', () => this.readChanges()),
      section('leases', () => this.readLeases()),
    ]);
    return { lists, workers, changes, leases, cluster: this.readCluster(), problems };
  }

  private async readLists(): Promise<ConsoleListRow[]> {
    const names = (await this.lists.lists()).slice(0, CONSOLE_MAX_LISTS).map((l) => l.list);
    const rows: ConsoleListRow[] = new Array(names.length);
    let next = 0;
    const lane = async () => {
      while (next < names.length) {
        const i = next++;
        const list = names[i]!;
        const [stats, limits, keys] = await Promise.all([
          this.lists.stats(list),
          this.lists.limits(list),
          this.lists.keyStats(list, { count: CONSOLE_MAX_KEYS }),
        ]);
        rows[i] = { list, ...stats };
        // The page renders the key table only for rows that have keys.
        if (keys.length > 0) {
          const limit = describeKeyLimit(limits);
          rows[i]!.keys = keys.map((k) => (limit === undefined ? k : { ...k, limit }));
        }
      }
    };
    await Promise.all(Array.from({ length: STATS_CONCURRENCY }, lane));
    return rows;
  }

  /** From the worker registry's route; null when this service has none (404). */
  private async readWorkers(): Promise<ConsoleWorkerRow[] | null> {
    const r = await this.internalGet('/v1/workers');
    if (r.status === 404) return null;
    if (r.status !== 200) throw new Error(`GET /v1/workers answered ${r.status}`);
    const workers = (r.body as { workers?: ConsoleWorkerRow[] }).workers;
    return Array.isArray(workers) ? workers : [];
  }

  private async readChanges(): Promise<ConsoleChanges> {
    const [tables, groups] = await Promise.all([this.capture.tracked(), this.capture.groups()]);
    const deadLetters: ConsoleChanges['deadLetters'] = {};
    const names = [...new Set(groups.map((g) => g.group))].slice(0, MAX_DEAD_GROUPS);
    await Promise.all(
      names.map(async (group) => {
        const dead = await this.capture.deadLetters(group, { limit: DEAD_PER_GROUP });
        if (dead.length === 0) return;
        deadLetters[group] = dead.map((d) => ({
          id: d.id,
          changeId: d.changeId,
          summary: summarize(d.change),
          attempts: d.attempts,
          lastError: d.lastError,
          state: d.state,
          failedAt: new Date(d.failedAt).toISOString(),
        }));
      }),
    );
    return {
      tables: tables.map((t) => ({ schema: t.schema, name: t.name, operations: t.operations })),
      groups: groups.map((g) => ({
        group: g.group,
        mode: g.mode,
        partition: g.partition,
        partitions: g.partitions,
        lowWater: g.lowWater,
        lag: g.lag,
        owner: g.owner,
        leaseExpiresAt: g.leaseExpiresAt ? new Date(g.leaseExpiresAt).toISOString() : null,
        deliveredCount: g.deliveredCount,
        overrunCount: g.overrunCount,
        attempts: g.attempts,
        lastError: g.lastError,
      })),
      deadLetters,
    };
  }

  private async readLeases(): Promise<ConsoleLeaseRow[]> {
    return (await this.leases.list()).map((l) => ({
      name: l.name,
      owner: l.owner,
      token: l.token.toString(),
      expiresAt: l.expiresAt.toISOString(),
      remainingMs: l.remainingMs,
    }));
  }

  /** A ClusterPool's instances as it sees them now (no query); null for a plain pool. */
  private readCluster(): ConsoleInstanceRow[] | null {
    const cluster = this.pool as Partial<{
      topology(): Array<{
        key: string;
        role: string;
        health: string;
        readOnly: boolean;
        lagBytes: number | undefined;
        lagMs: number | undefined;
        failures: number;
        connections: ConsoleInstanceRow['connections'];
      }>;
    }>;
    if (typeof cluster.topology !== 'function') return null;
    return cluster.topology().map((i) => ({
      key: i.key,
      role: i.role,
      health: i.health,
      readOnly: i.readOnly,
      lagBytes: i.lagBytes ?? null,
      lagMs: i.lagMs ?? null,
      failures: i.failures,
      connections: i.connections,
    }));
  }
}

function summarize(change: Record<string, unknown>): string {
  const { schema, table, op } = change as { schema?: unknown; table?: unknown; op?: unknown };
  return [schema, table].filter((p) => typeof p === 'string').join('.') + ` ${String(op ?? '')}`;
}

/** A list's per-key limit as the console shows it, e.g. "2 in flight, 10 per 1000 ms". */
function describeKeyLimit(limits: StoredListLimits): string | undefined {
  const parts: string[] = [];
  if (limits.perKey?.concurrency !== undefined)
    parts.push(`${limits.perKey.concurrency} in flight`);
  const rate = limits.perKey?.rate;
  if (rate !== undefined) parts.push(`${rate.limit} per ${rate.periodMs} ms`);
  return parts.length > 0 ? parts.join(', ') : undefined;
}
