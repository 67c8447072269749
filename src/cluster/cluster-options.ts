import type pg from 'pg';
import { resolveConnectionConfig } from '../core/index.js';
import { ValidationError } from '../core/index.js';
import { checkOptions, describe, optionalInt } from '../core/index.js';
import { resolveLogger, type Logger } from '../core/index.js';
import { createBalancer, type Balancer, type StrategyName } from './balancer.js';
import {
  parseMultiHostUrl,
  TARGET_SESSION_ATTRS,
  type TargetSessionAttrs,
} from './multi-host-url.js';
import { staticSource } from './static-source.js';
import {
  parseAddress,
  type DiscoverFunction,
  type HostPort,
  type TopologySource,
} from './topology.js';

/** A log line from the cluster pool, as a function `logger` receives it. */
export interface ClusterLogEntry {
  level: 'debug' | 'info' | 'warn';
  message: string;
  /** `host:port` of the instance concerned, when one is. */
  instance?: string;
  err?: unknown;
}

/** Options of {@link ClusterPool}. Give `connectionString` or `hosts` (or a `source` that needs neither). */
export interface ClusterPoolOptions {
  /**
   * A libpq URL with one or more hosts:
   * `postgres://user:pw@h1:5432,h2:5432/db?target_session_attrs=read-write&load_balance_hosts=random`.
   * Its hosts are the seeds; `target_session_attrs` sets the writer's attributes and
   * `load_balance_hosts` the strategy (random, or in-order for `disable`) unless the options say.
   */
  connectionString?: string;
  /** Seed instances as `host:port` strings or objects (port default 5432). */
  hosts?: Array<string | HostPort>;
  /** Connection settings shared by every instance (user, password, database, ssl, application_name ...); host and port come from the topology. */
  connection?: pg.ClientConfig;
  /** Where the topology comes from. Default: the seeds, probed with `pg_is_in_recovery()`. */
  source?: TopologySource | DiscoverFunction;
  /** Which instances `query`/`connect` use (libpq's `target_session_attrs`). Default: the URL's, else `read-write`. */
  targetSessionAttrs?: TargetSessionAttrs;
  /** Which instances `pool.reader` uses. Default `prefer-standby`. */
  readerSessionAttrs?: TargetSessionAttrs;
  /**
   * How a candidate is picked: `round-robin`, `random`, `least-busy` (fewest connections in use
   * plus waiting), `in-order` (first in configuration order), or your own {@link Balancer}.
   * Default: `random`/`in-order` when the URL sets `load_balance_hosts`, else `round-robin`.
   */
  strategy?: StrategyName | Balancer;
  /** Largest number of connections to one instance. Default 10. */
  maxConnectionsPerInstance?: number;
  /** How often the topology is re-read, in milliseconds. It is also re-read after any connection failure. Default 1000. */
  refreshIntervalMs?: number;
  /** Limit on opening one connection or one discovery probe, in milliseconds. Default 5000. */
  connectTimeoutMs?: number;
  /**
   * How long a call waits for an eligible instance (for example for a new primary during a
   * failover) before it fails with a TimeoutError, in milliseconds. Default 30000.
   */
  failoverTimeoutMs?: number;
  /** First back-off after an instance fails, in milliseconds; doubles per failure up to `maxRetryBackoffMs`, and each wait is drawn between half of that and all of it. Default 500. */
  retryBackoffMs?: number;
  /** Cap of that back-off, in milliseconds. Default 10000. */
  maxRetryBackoffMs?: number;
  /** Readers skip standbys whose replay lags more than this many bytes of WAL. Default: no limit. */
  maxLagBytes?: number;
  /** An idle connection is closed after this many milliseconds. Default 10000. */
  idleTimeoutMs?: number;
  /**
   * Receives what the pool does (instances down/up, failovers, discovery errors): a pino-style
   * {@link Logger} (`logger.warn({ instance, err }, message)`; missing methods are skipped), or a
   * function of a {@link ClusterLogEntry}. Default: nothing.
   */
  logger?: Partial<Logger> | ((entry: ClusterLogEntry) => void);
}

/** {@link ClusterPoolOptions} with every default applied and every value checked. */
export interface ResolvedClusterOptions {
  seeds: HostPort[];
  /** Connection settings of one instance; `overrides` are extra connection parameters. */
  clientConfig(target: HostPort, overrides?: Record<string, string>): pg.ClientConfig;
  source: TopologySource;
  writerAttrs: TargetSessionAttrs;
  readerAttrs: TargetSessionAttrs;
  balancer: Balancer;
  maxConnectionsPerInstance: number;
  refreshIntervalMs: number;
  connectTimeoutMs: number;
  failoverTimeoutMs: number;
  retryBackoffMs: number;
  maxRetryBackoffMs: number;
  maxLagBytes: number;
  idleTimeoutMs: number;
  logger: Logger;
}

const STRATEGIES: readonly StrategyName[] = ['round-robin', 'random', 'least-busy', 'in-order'];
const DAY_MS = 86_400_000;

function checkAttrs(argument: string, value: unknown, fallback: TargetSessionAttrs) {
  if (value === undefined) return fallback;
  if (!(TARGET_SESSION_ATTRS as readonly unknown[]).includes(value)) {
    throw new ValidationError(
      argument,
      `must be one of ${TARGET_SESSION_ATTRS.join(', ')}, got ${describe(value)}`,
    );
  }
  return value as TargetSessionAttrs;
}

function checkHost(argument: string, value: unknown): HostPort {
  if (typeof value === 'string') {
    if (value.length === 0) throw new ValidationError(argument, 'must not be empty');
    return checkHost(argument, parseAddress(value, 5432));
  }
  if (typeof value !== 'object' || value === null) {
    throw new ValidationError(
      argument,
      `must be "host:port" or { host, port }, got ${describe(value)}`,
    );
  }
  const { host, port } = value as Partial<HostPort>;
  if (typeof host !== 'string' || host.length === 0 || host.includes('\u0000')) {
    throw new ValidationError(
      `${argument}.host`,
      `must be a non-empty string, got ${describe(host)}`,
    );
  }
  return { host, port: optionalInt(`${argument}.port`, port, { min: 1, max: 65535 }, 5432) };
}

/** Defaults and validation for {@link ClusterPoolOptions}; throws ValidationError naming the option. */
export function resolveClusterOptions(
  input: ClusterPoolOptions | undefined,
): ResolvedClusterOptions {
  const o = checkOptions('options', input);
  const url =
    o.connectionString !== undefined
      ? parseMultiHostUrl(o.connectionString, 'options.connectionString')
      : undefined;
  if (o.hosts !== undefined && !Array.isArray(o.hosts)) {
    throw new ValidationError('options.hosts', `must be an array, got ${describe(o.hosts)}`);
  }
  const seeds: HostPort[] = o.hosts
    ? o.hosts.map((h, i) => checkHost(`options.hosts[${i}]`, h))
    : (url?.hosts ?? []);
  if (seeds.length === 0 && o.source === undefined) {
    throw new ValidationError('options', 'give connectionString, hosts, or a source');
  }
  const connection =
    o.connection === undefined ? {} : checkOptions('options.connection', o.connection);
  // Explicit user and database defaults: CI has no USER or PG* variables.
  const defaults = resolveConnectionConfig({ ...connection });
  const base = { user: defaults.user, database: defaults.database };
  const clientConfig = url
    ? (target: HostPort, overrides?: Record<string, string>): pg.ClientConfig => ({
        ...connection,
        connectionString: url.urlFor(target, base, overrides),
      })
    : (target: HostPort, overrides?: Record<string, string>): pg.ClientConfig => ({
        ...connection,
        ...base,
        ...overrides,
        host: target.host,
        port: target.port,
      });

  let source: TopologySource;
  if (o.source === undefined) source = staticSource();
  else if (typeof o.source === 'function') {
    const fn = o.source;
    source = { name: 'function', discover: (ctx) => fn(ctx) };
  } else if (
    typeof o.source === 'object' &&
    o.source !== null &&
    typeof o.source.discover === 'function'
  ) {
    source = o.source;
  } else {
    throw new ValidationError('options.source', 'must be a TopologySource or a function');
  }

  let balancer: Balancer;
  const strategy = o.strategy;
  if (strategy === undefined) {
    balancer = createBalancer(
      url?.loadBalanceHosts === 'random'
        ? 'random'
        : url?.loadBalanceHosts === 'disable'
          ? 'in-order'
          : 'round-robin',
    );
  } else if (typeof strategy === 'string') {
    if (!STRATEGIES.includes(strategy)) {
      throw new ValidationError(
        'options.strategy',
        `must be one of ${STRATEGIES.join(', ')} or a Balancer, got ${describe(strategy)}`,
      );
    }
    balancer = createBalancer(strategy);
  } else if (
    typeof strategy === 'object' &&
    strategy !== null &&
    typeof strategy.pick === 'function'
  ) {
    balancer = strategy;
  } else {
    throw new ValidationError(
      'options.strategy',
      'must be a strategy name or an object with pick()',
    );
  }
  const logger = resolveLogger(o.logger);

  const retryBackoffMs = optionalInt(
    'options.retryBackoffMs',
    o.retryBackoffMs,
    { min: 1, max: DAY_MS },
    500,
  );
  return {
    seeds,
    clientConfig,
    source,
    writerAttrs: checkAttrs(
      'options.targetSessionAttrs',
      o.targetSessionAttrs,
      url?.targetSessionAttrs ?? 'read-write',
    ),
    readerAttrs: checkAttrs('options.readerSessionAttrs', o.readerSessionAttrs, 'prefer-standby'),
    balancer,
    maxConnectionsPerInstance: optionalInt(
      'options.maxConnectionsPerInstance',
      o.maxConnectionsPerInstance,
      { min: 1, max: 10_000 },
      10,
    ),
    refreshIntervalMs: optionalInt(
      'options.refreshIntervalMs',
      o.refreshIntervalMs,
      { min: 10, max: DAY_MS },
      1000,
    ),
    connectTimeoutMs: optionalInt(
      'options.connectTimeoutMs',
      o.connectTimeoutMs,
      { min: 1, max: DAY_MS },
      5000,
    ),
    failoverTimeoutMs: optionalInt(
      'options.failoverTimeoutMs',
      o.failoverTimeoutMs,
      { min: 0, max: DAY_MS },
      30_000,
    ),
    retryBackoffMs,
    maxRetryBackoffMs: optionalInt(
      'options.maxRetryBackoffMs',
      o.maxRetryBackoffMs,
      { min: retryBackoffMs, max: DAY_MS },
      Math.max(10_000, retryBackoffMs),
    ),
    maxLagBytes: optionalInt(
      'options.maxLagBytes',
      o.maxLagBytes,
      { min: 0, max: Number.MAX_SAFE_INTEGER },
      Number.MAX_SAFE_INTEGER,
    ),
    idleTimeoutMs: optionalInt(
      'options.idleTimeoutMs',
      o.idleTimeoutMs,
      { min: 0, max: DAY_MS },
      10_000,
    ),
    logger,
  };
}
