import type { EventEmitter } from 'node:events';
import pg from 'pg';
import { backoffDelayMs } from '../core/index.js';
import type { BalancerCandidate } from './balancer.js';
import {
  instanceKey,
  type DiscoveredInstance,
  type HostPort,
  type InstanceHealth,
  type InstanceRole,
  type InstanceView,
} from './topology.js';

/**
 * A pg.Client that watches what the server tells it, at no cost per query: the `in_hot_standby`
 * and `default_transaction_read_only` reports (PostgreSQL 14+ sends both at connect and whenever
 * they change, for example on promotion) and any SQLSTATE 25006 (read-only transaction). A writer
 * never gets a connection that is, or has shown itself to be, read-only.
 */
export class TrackedClient extends pg.Client {
  /** The server reported `in_hot_standby=on` (it is a standby). */
  hotStandby = false;
  /** The server reported `default_transaction_read_only=on`. */
  defaultReadOnly = false;
  /** The connection answered SQLSTATE 25006 at least once: it is never trusted for writes again. */
  refusedWrite = false;

  constructor(config: pg.ClientConfig) {
    super(config);
    // A connection that breaks while checked out must not crash the process (pg.Pool.query
    // guards only its own calls); the caller sees the error on its query, and release() discards it.
    this.on('error', () => undefined);
    const con = (this as unknown as { connection: EventEmitter }).connection;
    con.on('parameterStatus', (msg: { parameterName: string; parameterValue: string }) => {
      if (msg.parameterName === 'in_hot_standby') this.hotStandby = msg.parameterValue === 'on';
      else if (msg.parameterName === 'default_transaction_read_only') {
        this.defaultReadOnly = msg.parameterValue === 'on';
      }
    });
    con.on('errorMessage', (msg: { code?: string }) => {
      if (msg.code === '25006') this.refusedWrite = true;
    });
  }

  /** Whether this connection must not serve a writer. */
  get readOnly(): boolean {
    return this.hotStandby || this.defaultReadOnly || this.refusedWrite;
  }

  /**
   * Closes the socket now, without the goodbye `end()` waits on: a statement in flight fails at
   * once with `err`, and an idle connection leaves its pool. For servers that may never answer.
   */
  destroy(err: Error): void {
    const con = (this as unknown as { connection?: { stream?: { destroy(e?: Error): void } } })
      .connection;
    con?.stream?.destroy(err);
  }
}

/** pg.Pool events the cluster pool re-emits (besides `error`, always handled). */
export const FORWARDED_EVENTS = ['connect', 'acquire', 'release', 'remove'] as const;
export type ForwardedEvent = (typeof FORWARDED_EVENTS)[number];

/** Settings every instance pool shares. */
export interface InstancePoolSettings {
  max: number;
  idleTimeoutMs: number;
  connectTimeoutMs: number;
  retryBackoffMs: number;
  maxRetryBackoffMs: number;
  /** Connection settings of one instance (user, database, ssl ... plus its host and port). */
  clientConfig(target: HostPort): pg.ClientConfig;
  /** pg.Pool events are re-emitted on the cluster pool, like pg.Pool's own. */
  events: EventEmitter;
}

/**
 * One instance of the cluster: its own pg.Pool (at most `maxConnectionsPerInstance` connections),
 * what the topology source last said about it, and its failure back-off. Implements the view a
 * balancing strategy sees, with live connection counts.
 */
export class InstancePool implements BalancerCandidate {
  readonly key: string;
  readonly host: string;
  readonly port: number;
  readonly pool: pg.Pool;
  readonly max: number;
  role: InstanceRole = 'unknown';
  /** What the source said: reachable and serving. */
  sourceUp = true;
  readOnly = false;
  lagBytes: number | undefined;
  lagMs: number | undefined;
  noLoadBalance = false;
  labels: Record<string, string> = {};
  /** A writer was refused here (25006 or a read-only connection); no writes until the next discovery. */
  writeRefused = false;
  /**
   * The refusal was logged, and since then no writer got a writable connection here and the
   * source's view of it did not change: a primary that stays read-only (a Patroni leader still
   * promoting, a source that calls a standby the primary) is reported once, not on every retry.
   */
  refusalReported = false;
  failures = 0;
  /** Epoch ms before which the instance gets no work after a failure. */
  retryAt = 0;
  /** Whether an `instance:down` was emitted and no `instance:up` since. */
  reportedDown = false;
  private readonly settings: InstancePoolSettings;
  /** Every open connection of this instance's pool (idle, checked out or connecting). */
  private readonly clients = new Set<TrackedClient>();

  constructor(target: HostPort, settings: InstancePoolSettings) {
    this.key = instanceKey(target);
    this.host = target.host;
    this.port = target.port;
    this.max = settings.max;
    this.settings = settings;
    const connectTimeoutMs = settings.connectTimeoutMs;
    const clients = this.clients;
    // The pool's own connectionTimeoutMillis would also bound the wait for a free slot, and a
    // busy instance is not a dead one: the connect timeout goes on each client instead.
    const Client = class extends TrackedClient {
      constructor(config: pg.ClientConfig) {
        super({ ...config, connectionTimeoutMillis: connectTimeoutMs });
        clients.add(this);
        this.once('end', () => clients.delete(this));
      }
    };
    this.pool = new pg.Pool({
      ...settings.clientConfig(target),
      max: settings.max,
      idleTimeoutMillis: settings.idleTimeoutMs,
      keepAlive: true,
      Client,
    } as unknown as pg.PoolConfig);
    const events = settings.events;
    this.pool.on('error', (err, client) => {
      if (events.listenerCount('error') > 0) events.emit('error', err, client);
    });
    for (const name of FORWARDED_EVENTS) if (events.listenerCount(name) > 0) this.forward(name);
  }

  /**
   * Re-emits one pg.Pool event on the cluster pool. Attached only once someone listens there:
   * `acquire` and `release` fire on every statement, and an unheard re-emit still costs.
   */
  forward(name: ForwardedEvent): void {
    if (this.forwarded.has(name)) return;
    this.forwarded.add(name);
    const events = this.settings.events;
    this.pool.on(name, (...args: unknown[]) => events.emit(name, ...args));
  }

  private readonly forwarded = new Set<ForwardedEvent>();

  /** Connections checked out plus callers waiting for one (least-busy's measure). */
  get busy(): number {
    return this.pool.totalCount - this.pool.idleCount + this.pool.waitingCount;
  }

  get total(): number {
    return this.pool.totalCount;
  }

  /** Takes what the source reported. Returns whether anything routing depends on changed. */
  update(found: DiscoveredInstance): boolean {
    const role = found.role ?? 'primary';
    const up = found.up ?? true;
    const readOnly = found.readOnly ?? false;
    const noLoadBalance = found.noLoadBalance ?? false;
    // Clearing writeRefused is no change of the view: the next writer just tries again. Counting
    // it made a primary that stays read-only emit a topology event on every retry (~10/s).
    const changed =
      role !== this.role ||
      up !== this.sourceUp ||
      readOnly !== this.readOnly ||
      noLoadBalance !== this.noLoadBalance;
    if (role !== this.role || readOnly !== this.readOnly) this.refusalReported = false;
    this.role = role;
    this.sourceUp = up;
    this.readOnly = readOnly;
    this.noLoadBalance = noLoadBalance;
    this.lagBytes = found.lagBytes;
    this.lagMs = found.lagMs;
    this.labels = { ...found.labels };
    this.writeRefused = false;
    return changed;
  }

  /** Whether it may get work now. */
  eligible(now: number): boolean {
    return this.sourceUp && this.retryAt <= now;
  }

  health(now: number): InstanceHealth {
    if (!this.sourceUp) return 'down';
    return this.retryAt > now ? 'backoff' : 'up';
  }

  /**
   * Records a failure and sets the back-off: the core policy's exponential delay with equal
   * jitter (half fixed, half random), so instances that failed together are not all retried at once.
   */
  failed(now: number): void {
    this.failures++;
    this.retryAt =
      now +
      backoffDelayMs(this.failures, {
        baseMs: this.settings.retryBackoffMs,
        maxMs: this.settings.maxRetryBackoffMs,
        jitter: 'equal',
      });
  }

  /** Records that it worked: back-off cleared. Returns whether it was failing. */
  worked(): boolean {
    const was = this.failures > 0 || this.retryAt > 0;
    this.failures = 0;
    this.retryAt = 0;
    return was;
  }

  view(now: number): InstanceView {
    const p = this.pool;
    return {
      key: this.key,
      host: this.host,
      port: this.port,
      role: this.role,
      health: this.health(now),
      readOnly: this.readOnly,
      lagBytes: this.lagBytes,
      lagMs: this.lagMs,
      noLoadBalance: this.noLoadBalance,
      labels: { ...this.labels },
      connections: {
        total: p.totalCount,
        idle: p.idleCount,
        inUse: p.totalCount - p.idleCount,
        waiting: p.waitingCount,
        max: this.max,
      },
      retryAtMs: this.retryAt > now ? this.retryAt : undefined,
      failures: this.failures,
    };
  }

  /**
   * Checks out a connection. A caller queued for a free slot is refused when the instance is
   * closed (pg.Pool would leave it waiting forever once ended).
   */
  acquire(): Promise<pg.PoolClient> {
    if (this.closing) return Promise.reject(new Error(`instance ${this.key} left the topology`));
    const p = this.pool;
    // Not queued: an idle connection or room for a new one. No bookkeeping on the hot path.
    if (p.idleCount > 0 || p.totalCount < this.max) return p.connect();
    return new Promise<pg.PoolClient>((resolve, reject) => {
      let settled = false;
      const refuse = (err: Error) => {
        if (settled) return;
        settled = true;
        reject(err);
      };
      this.queued.add(refuse);
      p.connect().then(
        (client) => {
          this.queued.delete(refuse);
          if (settled) client.release();
          else {
            settled = true;
            resolve(client);
          }
        },
        (err: Error) => {
          this.queued.delete(refuse);
          refuse(err);
        },
      );
    });
  }

  /**
   * Destroys every connection of this instance, idle, checked out or still connecting: statements
   * in flight fail at once with `err` instead of waiting on a server that may never answer.
   * Returns how many there were.
   */
  destroyConnections(err: Error): number {
    const all = [...this.clients];
    for (const c of all) c.destroy(err);
    return all.length;
  }

  /** Drains (checked-out connections close when released) and closes the pool. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = this.pool.end().catch(() => undefined);
      const err = new Error(`instance ${this.key} left the topology`);
      for (const refuse of this.queued) refuse(err);
      this.queued.clear();
    }
    return this.closing;
  }

  private closing: Promise<void> | undefined;
  private readonly queued = new Set<(err: Error) => void>();
}
