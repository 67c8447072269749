import type { EventEmitter } from 'node:events';
import {
  ClosedError,
  coerceError,
  ConnectionError,
  Lifecycle,
  TimeoutError,
} from '../core/index.js';
import type { Intent } from './balancer.js';
import { selectCandidates } from './candidates.js';
import type { ResolvedClusterOptions } from './cluster-options.js';
import type { ClusterPoolEvents } from './cluster-pool.js';
import { DiscoveryConnections } from './discovery-connections.js';
import { InstancePool } from './instance-pool.js';
import type { TargetSessionAttrs } from './multi-host-url.js';
import { signal } from './signal.js';
import {
  instanceKey,
  type DiscoveredInstance,
  type DiscoveryContext,
  type InstanceView,
} from './topology.js';

/** What changed in a topology refresh (`host:port` keys). */
export interface TopologyChange {
  added: string[];
  removed: string[];
  /** Role, health or read-only state changed. */
  changed: string[];
}

/** Shortest gap between two topology reads triggered by failures, in milliseconds. */
const MIN_REFRESH_GAP_MS = 100;

/**
 * The instances a {@link ClusterPool} knows, kept in step with its topology source (read every
 * `refreshIntervalMs` and soon after any failure), their health as the pool's connections report
 * it, and the balancer's pick among them. It emits the pool's topology events (`topology`,
 * `instance:down`, `failover` ...) on `events`. Its poller starts on first use and stops for good
 * with {@link stop} (the pool's `end()`).
 */
export class TopologyTracker {
  private readonly options: ResolvedClusterOptions;
  private readonly events: EventEmitter<ClusterPoolEvents>;
  private readonly byKey = new Map<string, InstancePool>();
  /** Pools of removed instances still draining. */
  private readonly closing = new Set<Promise<void>>();
  private readonly service: DiscoveryConnections;
  private readonly candidates = new Map<TargetSessionAttrs, InstancePool[]>();
  private readonly readCandidates = new Map<TargetSessionAttrs, InstancePool[]>();
  /** Earliest back-off end among instances, after which the candidate cache is stale. */
  private cacheExpiresAt = Infinity;
  private primaryKey: string | undefined;
  /** The first topology was applied: picks may be made without waiting. */
  ready = false;
  /** stop() was called: every pick fails with a ClosedError from now on. */
  ended = false;
  private readonly lifecycle: Lifecycle;
  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;
  private lastRefreshAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private changed = signal();
  private readonly discovery: DiscoveryContext;

  constructor(options: ResolvedClusterOptions, events: EventEmitter<ClusterPoolEvents>) {
    this.options = options;
    this.events = events;
    this.service = new DiscoveryConnections({
      clientConfig: options.clientConfig,
      timeoutMs: options.connectTimeoutMs,
    });
    // The pool's end is final: its lifecycle does not start again.
    this.lifecycle = new Lifecycle(
      { name: 'cluster pool', restartable: false },
      {
        start: () =>
          this.refreshNow().then(() => {
            this.ready = true;
          }),
        stop: () => this.close(),
      },
    );
    const instances = this.byKey;
    this.discovery = {
      seeds: options.seeds,
      get known() {
        return [...instances.values()].map((i) => ({ host: i.host, port: i.port }));
      },
      timeoutMs: options.connectTimeoutMs,
      queryInstance: (target, text, values) => this.service.query(target, text, values),
      queryAny: (text, values) => {
        // Healthy known instances first, then the rest, then the seeds.
        const now = Date.now();
        const known = [...instances.values()].sort(
          (a, b) => Number(b.eligible(now)) - Number(a.eligible(now)),
        );
        return this.service.queryAny([...known, ...options.seeds], text, values);
      },
    };
  }

  /** The instances known now, by `host:port`. */
  get instances(): ReadonlyMap<string, InstancePool> {
    return this.byKey;
  }

  /** Whether `inst` is still the pool of its instance (not removed by a refresh meanwhile). */
  current(inst: InstancePool): boolean {
    return this.byKey.get(inst.key) === inst;
  }

  /** The view of every instance: role, health, lag, connections. */
  views(): InstanceView[] {
    const now = Date.now();
    return [...this.byKey.values()].map((i) => i.view(now));
  }

  /** Starts the poller with a first read; resolves once it is applied. */
  start(): Promise<void> {
    if (this.ended) return Promise.reject(new ClosedError('the cluster pool was ended'));
    return this.lifecycle.start();
  }

  /** Reads the topology now (starting the poller if needed) and resolves when it is applied. */
  async refresh(): Promise<void> {
    if (this.ended) throw new ClosedError('the cluster pool was ended');
    if (!this.ready) return this.start();
    // A read already in flight may have started before what the caller wants to see.
    if (this.refreshing) await this.refreshing.catch(() => undefined);
    await this.refreshNow();
  }

  /** Stops the poller and closes every instance pool and discovery connection. Final. */
  stop(): Promise<void> {
    this.ended = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.changed.resolve();
    return this.lifecycle.stop();
  }

  private async close(): Promise<void> {
    await this.refreshing?.catch(() => undefined);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const pools = [...this.byKey.values()];
    this.byKey.clear();
    this.candidates.clear();
    this.readCandidates.clear();
    await Promise.all([...pools.map((p) => p.close()), ...this.closing, this.service.closeAll()]);
  }

  /** An eligible instance for `attrs`, waiting (until `deadline`) for the topology to offer one. */
  async pick(attrs: TargetSessionAttrs, intent: Intent, deadline: number): Promise<InstancePool> {
    for (;;) {
      if (!this.ready && !this.ended) await this.start();
      const inst = this.pickNow(attrs, intent);
      if (inst) return inst;
      const now = Date.now();
      if (now >= deadline) {
        throw new TimeoutError(
          `no ${attrs} instance became available within ${this.options.failoverTimeoutMs} ms ` +
            `(instances: ${this.describeInstances()})`,
        );
      }
      this.requestRefresh();
      const wake = Math.min(deadline, this.cacheExpiresAt) - now;
      await this.changed.wait(Math.max(1, wake));
    }
  }

  /** The balancer's pick among eligible instances right now, without waiting (the hot path). */
  pickNow(attrs: TargetSessionAttrs, intent: Intent): InstancePool | undefined {
    if (this.ended) throw new ClosedError('the cluster pool was ended');
    if (!this.ready) return undefined;
    const list = this.candidateList(attrs, intent);
    if (list.length === 0) return undefined;
    const chosen = this.options.balancer.pick(list, intent);
    if (chosen instanceof InstancePool && this.byKey.get(chosen.key) === chosen) return chosen;
    return chosen ? this.byKey.get(chosen.key) : undefined;
  }

  /** A connection to `inst` failed: back it off, say it is down (once), read the topology soon. */
  instanceFailed(inst: InstancePool, err: unknown): void {
    inst.failed(Date.now());
    if (!inst.reportedDown) {
      inst.reportedDown = true;
      const e = coerceError(err);
      this.options.logger.warn({ instance: inst.key, err: e }, 'instance down');
      this.events.emit('instance:down', { instance: inst.key, err: e });
    }
    this.invalidate();
    this.requestRefresh();
  }

  /** A connection to `inst` worked: its back-off ends, and it is up again if it was down. */
  instanceWorked(inst: InstancePool): void {
    inst.worked();
    if (inst.reportedDown) {
      inst.reportedDown = false;
      this.options.logger.info({ instance: inst.key }, 'instance up');
      this.events.emit('instance:up', { instance: inst.key });
    }
    this.invalidate();
  }

  /** `inst` refused a write: no writer goes there until the topology says it is a primary. */
  writeRefused(inst: InstancePool): void {
    if (!inst.writeRefused) {
      inst.writeRefused = true;
      if (!inst.refusalReported) {
        inst.refusalReported = true;
        this.options.logger.warn(
          { instance: inst.key },
          'instance refused a write; waiting for the topology',
        );
      }
      this.invalidate();
    }
    this.requestRefresh();
  }

  /** A refresh soon (at most one every MIN_REFRESH_GAP_MS), coalesced with one in flight. */
  requestRefresh(): void {
    if (this.ended || this.lifecycle.state === 'stopped') return;
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    const wait = this.lastRefreshAt + MIN_REFRESH_GAP_MS - Date.now();
    this.schedule(Math.max(0, wait), true);
  }

  private candidateList(attrs: TargetSessionAttrs, intent: Intent): InstancePool[] {
    // Date.now() only while some instance is in back-off: the cache expires when it ends.
    if (this.cacheExpiresAt !== Infinity && Date.now() >= this.cacheExpiresAt) this.invalidate();
    const cache = intent === 'read' ? this.readCandidates : this.candidates;
    let list = cache.get(attrs);
    if (list) return list;
    list = selectCandidates(
      [...this.byKey.values()],
      attrs,
      intent,
      Date.now(),
      this.options.maxLagBytes,
    );
    cache.set(attrs, list);
    return list;
  }

  /** Routing facts changed: drop cached candidate lists and wake waiting callers. */
  private invalidate(): void {
    this.candidates.clear();
    this.readCandidates.clear();
    const now = Date.now();
    let next = Infinity;
    for (const i of this.byKey.values()) if (i.retryAt > now) next = Math.min(next, i.retryAt);
    this.cacheExpiresAt = next;
    const s = this.changed;
    this.changed = signal();
    s.resolve();
  }

  private describeInstances(): string {
    const views = this.views();
    if (views.length === 0) return 'none discovered';
    return views.map((v) => `${v.key} ${v.role} ${v.health}`).join(', ');
  }

  /**
   * The instance stopped being the primary: its sessions are the old primary's. Statements still
   * running there would otherwise wait as long as that server or the network lets them (no
   * answer ever comes from a frozen or vanished host before TCP keepalive gives up, hours by
   * default); they fail now with a ConnectionError, their outcome unknown, and are not re-sent.
   */
  private dropSessions(inst: InstancePool): void {
    const err = new ConnectionError(
      `connection terminated by the pool: ${inst.key} is no longer the primary ` +
        '(a statement in flight there may or may not have been applied)',
    );
    const n = inst.destroyConnections(err);
    if (n > 0) {
      this.options.logger.warn(
        { instance: inst.key },
        `closed ${n} connection(s) to the former primary`,
      );
    }
  }

  private schedule(delayMs: number, sooner = false): void {
    if (this.ended) return;
    if (this.timer) {
      if (!sooner) return;
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.refreshNow();
    }, delayMs);
    this.timer.unref();
  }

  private refreshNow(): Promise<void> {
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshAgain = false;
    this.lastRefreshAt = Date.now();
    this.refreshing = this.discoverOnce().finally(() => {
      this.refreshing = undefined;
      if (this.ended) return;
      if (this.refreshAgain) {
        this.refreshAgain = false;
        this.requestRefresh();
      } else this.schedule(this.options.refreshIntervalMs);
    });
    return this.refreshing;
  }

  private async discoverOnce(): Promise<void> {
    let found: DiscoveredInstance[];
    try {
      found = await this.options.source.discover(this.discovery);
      if (!Array.isArray(found)) throw new TypeError('the topology source did not return an array');
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      this.options.logger.warn({ err: e }, 'topology source failed');
      this.events.emit('topology:error', e);
      return;
    }
    if (this.ended) return;
    this.apply(found);
  }

  private apply(found: DiscoveredInstance[]): void {
    const change: TopologyChange = { added: [], removed: [], changed: [] };
    const seen = new Set<string>();
    /** Instances that were the primary and no longer are (demoted, removed, failed over from). */
    const demoted = new Set<InstancePool>();
    for (const d of found) {
      if (!d || typeof d.host !== 'string' || !Number.isInteger(d.port)) continue;
      const key = instanceKey(d);
      if (seen.has(key)) continue; // one pool per instance, whatever the source repeats
      seen.add(key);
      let inst = this.byKey.get(key);
      const wasPrimary = inst?.role === 'primary';
      if (!inst) {
        inst = new InstancePool(d, {
          max: this.options.maxConnectionsPerInstance,
          idleTimeoutMs: this.options.idleTimeoutMs,
          connectTimeoutMs: this.options.connectTimeoutMs,
          retryBackoffMs: this.options.retryBackoffMs,
          maxRetryBackoffMs: this.options.maxRetryBackoffMs,
          clientConfig: this.options.clientConfig,
          events: this.events as EventEmitter,
        });
        this.byKey.set(key, inst);
        inst.update(d);
        change.added.push(key);
      } else if (inst.update(d)) change.changed.push(key);
      if (wasPrimary && inst.role === 'standby') demoted.add(inst);
      const up = d.up ?? true;
      if (!up && !inst.reportedDown) {
        inst.reportedDown = true;
        this.events.emit('instance:down', { instance: key });
      } else if (up && d.reachable) {
        // The source just reached it: whatever failed before works now.
        if (inst.failures > 0 || inst.reportedDown) this.instanceWorked(inst);
      } else if (up && inst.reportedDown && inst.failures === 0) {
        inst.reportedDown = false;
        this.events.emit('instance:up', { instance: key });
      }
    }
    for (const [key, inst] of this.byKey) {
      if (seen.has(key)) continue;
      this.byKey.delete(key);
      change.removed.push(key);
      if (inst.role === 'primary') demoted.add(inst);
      // Drained: connections in use close when released; callers queued on it retry elsewhere.
      const closing = inst.close().finally(() => this.closing.delete(closing));
      this.closing.add(closing);
      void this.service.close(key);
    }
    // A failover is the single writable primary moving; multi-writer engines (Picodata,
    // YugabyteDB) have several and no failover in this sense.
    const primaries = [...this.byKey.values()].filter(
      (i) => i.role === 'primary' && i.sourceUp && !i.readOnly,
    );
    if (primaries.length === 1 && primaries[0]!.key !== this.primaryKey) {
      const from = this.primaryKey;
      const to = primaries[0]!.key;
      this.primaryKey = to;
      const old = from === undefined ? undefined : this.byKey.get(from);
      if (old) demoted.add(old);
      if (from !== undefined) {
        this.options.logger.info({}, `failover ${from} -> ${to}`);
        this.events.emit('failover', { from, to });
      }
    }
    for (const inst of demoted) this.dropSessions(inst);
    this.invalidate();
    if (change.added.length + change.removed.length + change.changed.length > 0) {
      this.options.logger.debug(
        {},
        `topology: +${change.added.length} -${change.removed.length} ~${change.changed.length}`,
      );
      this.events.emit('topology', this.views(), change);
    }
  }
}
