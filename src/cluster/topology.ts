import type pg from 'pg';

/**
 * What a topology source reports and what the cluster pool shows: the shared vocabulary of
 * `src/cluster/`. A source only discovers; the pool owns connections, health and routing.
 */

/** Where an instance listens. */
export interface HostPort {
  host: string;
  port: number;
}

/**
 * Role of an instance. `primary` accepts writes (several primaries are normal on multi-writer
 * engines such as Picodata and YugabyteDB); `standby` serves reads only; `unknown` was not
 * determined (for example the probe failed).
 */
export type InstanceRole = 'primary' | 'standby' | 'unknown';

/** One instance as a topology source reports it. */
export interface DiscoveredInstance extends HostPort {
  /** Role; default `primary`. */
  role?: InstanceRole;
  /** Whether the source believes it reachable and serving; default true. Down ones keep their pool but get no work. */
  up?: boolean;
  /** `default_transaction_read_only` is on: it refuses writes although it may be a primary. */
  readOnly?: boolean;
  /** Replication lag of a standby in bytes of WAL not yet replayed, when known. */
  lagBytes?: number;
  /** Replication lag of a standby in milliseconds, when known. */
  lagMs?: number;
  /** The source itself just connected to it (a probe answered): clears any failure back-off. */
  reachable?: boolean;
  /** Excluded from reads (Patroni `noloadbalance` tag) but still a failover target. */
  noLoadBalance?: boolean;
  /** Free-form facts from the source (zone, region, member name, state). */
  labels?: Record<string, string>;
}

/** What a source may use while discovering. Every connection it opens is the pool's to close. */
export interface DiscoveryContext {
  /** The configured seed instances (hosts of the URL or `hosts` option). */
  readonly seeds: readonly HostPort[];
  /** The instances of the last discovery (empty before the first). */
  readonly known: readonly HostPort[];
  /** How long one probe may take, in milliseconds. */
  readonly timeoutMs: number;
  /**
   * Runs a statement on one instance through the pool's service connection to it (one per
   * instance, outside the instance pools, reopened after a failure).
   */
  queryInstance<R extends pg.QueryResultRow = pg.QueryResultRow>(
    target: HostPort,
    text: string,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>>;
  /**
   * Runs a statement on the first instance that answers: known instances first, then the seeds.
   * Throws the last error when none answers.
   */
  queryAny<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>>;
}

/**
 * Reports the instances of a cluster. Called at `refreshIntervalMs` and after any connection
 * failure. An instance missing from the answer is removed: its pool is drained and closed.
 * A source that throws leaves the previous topology in place: the pool emits
 * `topology:error` and keeps serving.
 */
export interface TopologySource {
  /** Short name for logs and `topology()` (`static`, `patroni`, `picodata`, `yugabyte`, `function`). */
  readonly name: string;
  discover(ctx: DiscoveryContext): Promise<DiscoveredInstance[]>;
}

/** A user function that returns the instances; wrapped by the pool as a source named `function`. */
export type DiscoverFunction = (ctx: DiscoveryContext) => Promise<DiscoveredInstance[]>;

/** Health of an instance as the pool sees it. */
export type InstanceHealth = 'up' | 'down' | 'backoff';

/** The pool's current view of one instance (`pool.topology()`). */
export interface InstanceView extends HostPort {
  /** `host:port`, the instance's identity in events and in the pool. */
  key: string;
  role: InstanceRole;
  /** `up`: gets work; `down`: the source reports it unreachable; `backoff`: a recent failure, retried after `retryAtMs`. */
  health: InstanceHealth;
  readOnly: boolean;
  lagBytes: number | undefined;
  lagMs: number | undefined;
  noLoadBalance: boolean;
  labels: Record<string, string>;
  /** Connections of its pool: open, idle, in use, and callers waiting for one. */
  connections: { total: number; idle: number; inUse: number; waiting: number; max: number };
  /** Epoch milliseconds when an instance in back-off becomes eligible again. */
  retryAtMs: number | undefined;
  /** Consecutive failures since it last worked. */
  failures: number;
}

/** `host:port` (IPv6 hosts in brackets), the identity of an instance. */
export function instanceKey(target: HostPort): string {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  return `${host}:${target.port}`;
}

/** Parses `host:port` or `[v6]:port` (as Picodata and Patroni print addresses). */
export function parseAddress(address: string, defaultPort: number): HostPort {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(address);
  if (v6) return { host: v6[1]!, port: v6[2] ? Number(v6[2]) : defaultPort };
  const i = address.lastIndexOf(':');
  if (i > 0 && /^\d+$/.test(address.slice(i + 1)) && !address.slice(0, i).includes(':')) {
    return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
  }
  return { host: address, port: defaultPort };
}
