import { EventEmitter } from 'node:events';
import { StaleTokenError, type PgcoordError } from '../core/index.js';
import {
  Lifecycle,
  reportError,
  type LifecycleSignals,
  type Logger,
  type LoggerInput,
  type Service,
} from '../core/index.js';
import { resolveWarnLogger } from './warn-logger.js';
import type { Queryable } from '../core/index.js';
import {
  LeaseManager,
  MAX_LEASE_NAME_BYTES,
  MAX_LEASE_TTL_MS,
  MIN_LEASE_TTL_MS,
  type Lease,
} from './lease.js';
import { checkOptions, checkText, optionalInt } from '../core/index.js';

export interface LeaderElectionOptions {
  /** Name of the leadership (the lease name). Required. */
  name: string;
  /** This candidate's owner name. Default `<hostname>:<pid>:<random>`. */
  owner?: string;
  /** Leadership lease time in ms: a dead leader is replaced within about this long. Default 15000. */
  ttlMs?: number;
  /** How often the leader renews and a follower tries to take over, in ms. Default `ttlMs / 3`. */
  intervalMs?: number;
  /** Schema of pgcoord's tables. Default `pgcoord`. */
  schema?: string;
  /**
   * Receives failures of a round at `warn` when nobody listens to `'error'`: pino
   * (`warn(obj, msg)`), a function of a log entry, or the earlier `{ warn(message, fields) }`,
   * still called that way.
   */
  logger?: LoggerInput;
}

/** Default leadership lease time, in ms. */
export const DEFAULT_LEADER_TTL_MS = 15_000;

/** Events of a {@link LeaderElection}. */
export interface LeaderElectionEvents {
  /** This candidate became the leader; `lease.token` fences its work. */
  elected: [lease: Lease];
  /** This candidate stopped being the leader (`reason`: stopped, lost, or expired while unreachable). */
  resigned: [info: { lease: Lease; reason: 'stopped' | 'lost' | 'expired' }];
  /** A round failed (connectivity); the election keeps going. */
  error: [err: PgcoordError];
}

/**
 * Leader election on a lease: candidates try to take the lease every `intervalMs`; the leader
 * renews it; at most one candidate is leader at a time (by the server clock), each new leader
 * with a larger fencing token.
 *
 * @example
 * const election = new LeaderElection(pool, { name: 'scheduler' });
 * election.on('elected', (lease) => startScheduling(lease.token));
 * election.on('resigned', () => stopScheduling());
 * await election.start();
 */
export class LeaderElection extends EventEmitter<LeaderElectionEvents> implements Service {
  readonly name: string;
  private readonly leases: LeaseManager;
  private readonly ttlMs: number;
  private readonly intervalMs: number;
  private readonly logger: Logger;
  private lease: Lease | undefined;
  private deadline = 0;
  private timer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;
  private readonly lifecycle = new Lifecycle(
    { name: 'pgcoord leader election' },
    { start: () => this.schedule(0), stop: () => this.leave() },
  );
  /** Test signals: `started`, `stopped`. */
  readonly signals: LifecycleSignals = this.lifecycle.signals;

  constructor(q: Queryable, options: LeaderElectionOptions) {
    super();
    const o = checkOptions('options', options);
    this.name = checkText('options.name', o.name, { maxBytes: MAX_LEASE_NAME_BYTES });
    this.ttlMs = optionalInt(
      'options.ttlMs',
      o.ttlMs,
      { min: MIN_LEASE_TTL_MS, max: MAX_LEASE_TTL_MS },
      DEFAULT_LEADER_TTL_MS,
    );
    this.intervalMs = optionalInt(
      'options.intervalMs',
      o.intervalMs,
      { min: 10, max: this.ttlMs - 1 },
      Math.max(10, Math.floor(this.ttlMs / 3)),
    );
    this.leases = new LeaseManager(q, { schema: o.schema, owner: o.owner, ttlMs: this.ttlMs });
    this.logger = resolveWarnLogger(o.logger);
  }

  /** Whether this candidate holds the leadership now (as far as it knows). */
  get isLeader(): boolean {
    return this.lease !== undefined;
  }

  /** The leadership lease while leader. */
  get currentLease(): Lease | undefined {
    return this.lease;
  }

  /**
   * Joins the election (first attempt at once). Idempotent. The promise resolves at once and
   * never rejects, so `election.start()` without `await` is fine.
   */
  start(): Promise<void> {
    return this.lifecycle.start();
  }

  /** Leaves the election: waits for a round in progress, releases the lease if held. Idempotent. */
  stop(): Promise<void> {
    return this.lifecycle.stop();
  }

  /** Same as {@link stop}: `await using election = ...` leaves at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.lifecycle.stop();
  }

  private async leave(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.round;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    const lease = this.lease;
    if (lease) {
      this.lease = undefined;
      await this.leases.release(lease).catch(() => undefined);
      this.emit('resigned', { lease, reason: 'stopped' });
    }
  }

  private schedule(delayMs: number): void {
    if (!this.lifecycle.active) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.round = this.runRound().finally(() => {
        this.round = undefined;
        this.schedule(this.intervalMs);
      });
    }, delayMs);
    this.timer.unref();
  }

  private async runRound(): Promise<void> {
    const sentAt = performance.now();
    try {
      if (this.lease) {
        if (sentAt >= this.deadline) return this.resign('expired');
        const renewed = await this.leases.renew(this.lease);
        if (this.lease?.token !== renewed.token) {
          // Resigned by the expiry timer while the renewal was in flight: give it back.
          await this.leases.release(renewed).catch(() => undefined);
          return;
        }
        this.lease = renewed;
        this.armExpiry(sentAt + this.ttlMs);
      } else {
        const lease = await this.leases.acquire(this.name);
        if (lease && this.lifecycle.active) {
          this.lease = lease;
          this.armExpiry(sentAt + this.ttlMs);
          this.emit('elected', lease);
        } else if (lease) {
          await this.leases.release(lease).catch(() => undefined);
        }
      }
    } catch (err) {
      if (err instanceof StaleTokenError) return this.resign('lost');
      reportError(this, this.logger, err, 'pgcoord leader election round failed');
      if (this.lease && performance.now() >= this.deadline) this.resign('expired');
    }
  }

  /**
   * Resigns by itself when the lease runs out by the local clock (measured from before the
   * request that set it, so early), even if a renewal hangs on a dead connection.
   */
  private armExpiry(deadline: number): void {
    this.deadline = deadline;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(
      () => this.resign('expired'),
      Math.max(0, deadline - performance.now()),
    );
    this.expiryTimer.unref();
  }

  private resign(reason: 'lost' | 'expired'): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    const lease = this.lease;
    if (!lease) return;
    this.lease = undefined;
    this.emit('resigned', { lease, reason });
  }
}
