import { EventEmitter } from 'node:events';
import pg from 'pg';
import { ClosedError, coerceError, ConnectionError, TimeoutError } from '../core/index.js';
import type { ConnectableQueryable } from '../core/index.js';
import type { Intent } from './balancer.js';
import {
  resolveClusterOptions,
  type ClusterPoolOptions,
  type ResolvedClusterOptions,
} from './cluster-options.js';
import { selectCandidates } from './candidates.js';
import { DiscoveryConnections } from './discovery-connections.js';
import {
  FORWARDED_EVENTS,
  InstancePool,
  TrackedClient,
  type ForwardedEvent,
} from './instance-pool.js';
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

/** Events of {@link ClusterPool}; `connect`, `acquire`, `release`, `remove`, `error` are pg.Pool's. */
export interface ClusterPoolEvents {
  topology: [instances: InstanceView[], change: TopologyChange];
  /** The source failed; the previous topology stays in force. */
  'topology:error': [err: Error];
  'instance:down': [info: { instance: string; err?: Error }];
  'instance:up': [info: { instance: string }];
  /** The single writable primary moved from one instance to another (`host:port` keys). */
  failover: [info: { from: string; to: string }];
  connect: [client: pg.PoolClient];
  acquire: [client: pg.PoolClient];
  release: [err: Error | undefined, client: pg.PoolClient];
  remove: [client: pg.PoolClient];
  /** An idle connection broke. Emitted only while someone listens, so it never crashes the process. */
  error: [err: Error, client: pg.PoolClient];
}

/** The read side of a {@link ClusterPool}: `query` and `connect` on `readerSessionAttrs` instances. */
export interface ClusterReader extends ConnectableQueryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string | pg.QueryConfig,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>>;
  connect(): Promise<pg.PoolClient>;
}

/** Shortest gap between two topology reads triggered by failures, in milliseconds. */
const MIN_REFRESH_GAP_MS = 100;

/**
 * One pool over several PostgreSQL-compatible instances, with the `pg.Pool` surface (`query`,
 * `connect`, `end`, events) so every block runs on it unchanged. Writers (`query`, `connect`) go
 * to instances matching `targetSessionAttrs` (default `read-write`, the primary); `pool.reader`
 * sends reads to standbys when there are any. The topology is re-read every `refreshIntervalMs`
 * and after any connection failure; when the primary goes away, writers wait (up to
 * `failoverTimeoutMs`) for the new one. Once the topology says an instance is no longer the
 * primary, its connections are closed: a statement still running there fails at once with a
 * ConnectionError (its outcome unknown, never sent again) instead of waiting on the old primary.
 *
 * Errors leave as {@link PgcoordError}s (`coerceError`): a server refusal keeps its `sqlState`.
 *
 * @example
 * const pool = new ClusterPool({
 *   connectionString: 'postgres://app@db1:5432,db2:5432,db3:5432/app',
 *   refreshIntervalMs: 500,
 * });
 * await pool.query('INSERT INTO t VALUES ($1)', [1]); // the primary
 * await pool.reader.query('SELECT count(*) FROM t');  // a standby, if any
 * await pool.end();
 */
export class ClusterPool extends EventEmitter<ClusterPoolEvents> implements ConnectableQueryable {
  /** Reads that may go to standbys (`readerSessionAttrs`, default `prefer-standby`). */
  readonly reader: ClusterReader;
  private readonly options: ResolvedClusterOptions;
  private readonly instances = new Map<string, InstancePool>();
  /** Pools of removed instances still draining. */
  private readonly closing = new Set<Promise<void>>();
  private readonly service: DiscoveryConnections;
  private readonly candidates = new Map<TargetSessionAttrs, InstancePool[]>();
  private readonly readCandidates = new Map<TargetSessionAttrs, InstancePool[]>();
  /** Earliest back-off end among instances, after which the candidate cache is stale. */
  private cacheExpiresAt = Infinity;
  private primaryKey: string | undefined;
  private started: Promise<void> | undefined;
  private ready = false;
  private ended: Promise<void> | undefined;
  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;
  private lastRefreshAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private changed = signal();
  private readonly discovery: DiscoveryContext;

  constructor(options: ClusterPoolOptions) {
    super();
    this.options = resolveClusterOptions(options);
    (this as EventEmitter).on('newListener', (name: string | symbol) => {
      if ((FORWARDED_EVENTS as readonly (string | symbol)[]).includes(name)) {
        for (const inst of this.instances.values()) inst.forward(name as ForwardedEvent);
      }
    });
    this.service = new DiscoveryConnections({
      clientConfig: this.options.clientConfig,
      timeoutMs: this.options.connectTimeoutMs,
    });
    this.reader = {
      query: (text, values) => this.run(this.options.readerAttrs, 'read', text, values),
      connect: () => this.connectAs(this.options.readerAttrs, 'read'),
    };
    const instances = this.instances;
    this.discovery = {
      seeds: this.options.seeds,
      get known() {
        return [...instances.values()].map((i) => ({ host: i.host, port: i.port }));
      },
      timeoutMs: this.options.connectTimeoutMs,
      queryInstance: (target, text, values) => this.service.query(target, text, values),
      queryAny: (text, values) => {
        // Healthy known instances first, then the rest, then the seeds.
        const now = Date.now();
        const known = [...instances.values()].sort(
          (a, b) => Number(b.eligible(now)) - Number(a.eligible(now)),
        );
        return this.service.queryAny([...known, ...this.options.seeds], text, values);
      },
    };
  }

  /** Connections open over all instances. */
  get totalCount(): number {
    return this.sum((p) => p.totalCount);
  }

  /** Idle connections over all instances. */
  get idleCount(): number {
    return this.sum((p) => p.idleCount);
  }

  /** Callers waiting for a connection over all instances. */
  get waitingCount(): number {
    return this.sum((p) => p.waitingCount);
  }

  /** Whether `end()` was called. */
  get ending(): boolean {
    return this.ended !== undefined;
  }

  /** Runs one statement on a writer instance (`targetSessionAttrs`). */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string | pg.QueryConfig,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>> {
    return this.run<R>(this.options.writerAttrs, 'write', text, values);
  }

  /**
   * Checks out a connection to a writer instance; call `release()` when done (with an error to
   * discard it). A connection that answered 25006 is discarded on release, never reused.
   */
  connect(): Promise<pg.PoolClient> {
    return this.connectAs(this.options.writerAttrs, 'write');
  }

  /**
   * A NEW dedicated `pg.Client` (not from the pool) connected to the current primary, for
   * long-lived sessions such as LISTEN. Waits up to `failoverTimeoutMs` for a primary. The
   * caller owns it and must `end()` it. Pass it as the Listener's `connect` option so the
   * listener follows the primary after a failover:
   * `new Listener({ connect: () => pool.connectPrimaryClient() })`.
   */
  async connectPrimaryClient(): Promise<pg.Client> {
    const deadline = Date.now() + this.options.failoverTimeoutMs;
    for (;;) {
      const inst = await this.pick('read-write', 'write', deadline);
      const client = new TrackedClient({
        ...this.options.clientConfig(inst),
        connectionTimeoutMillis: this.options.connectTimeoutMs,
        keepAlive: true,
      });
      client.on('error', () => undefined);
      try {
        await client.connect();
      } catch (err) {
        if (this.instances.get(inst.key) === inst) this.instanceFailed(inst, err);
        continue;
      }
      if (client.readOnly) {
        await client.end().catch(() => undefined);
        this.writeRefused(inst);
        continue;
      }
      inst.refusalReported = false;
      this.instanceWorked(inst);
      return client;
    }
  }

  /** The current view of every instance: role, health, lag, connections. */
  topology(): InstanceView[] {
    const now = Date.now();
    return [...this.instances.values()].map((i) => i.view(now));
  }

  /** Reads the topology now (starting the pool if needed) and resolves when it is applied. */
  async refresh(): Promise<InstanceView[]> {
    if (this.ended) throw new ClosedError('the cluster pool was ended');
    if (!this.ready) await this.start();
    else {
      // A read already in flight may have started before what the caller wants to see.
      if (this.refreshing) await this.refreshing.catch(() => undefined);
      await this.refreshNow();
    }
    return this.topology();
  }

  /**
   * Closes every instance pool (in-use connections close on release), every discovery connection,
   * and stops the poller. Idempotent; calls after it fail with ClosedError.
   */
  end(): Promise<void> {
    this.ended ??= (async () => {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.changed.resolve();
      await this.started?.catch(() => undefined);
      await this.refreshing?.catch(() => undefined);
      if (this.timer) clearTimeout(this.timer);
      const pools = [...this.instances.values()];
      this.instances.clear();
      this.candidates.clear();
      await Promise.all([...pools.map((p) => p.close()), ...this.closing, this.service.closeAll()]);
    })();
    return this.ended;
  }

  private sum(f: (p: pg.Pool) => number): number {
    let n = 0;
    for (const i of this.instances.values()) n += f(i.pool);
    return n;
  }

  private start(): Promise<void> {
    this.started ??= this.refreshNow().then(() => {
      this.ready = true;
    });
    return this.started;
  }

  /**
   * One statement. The common case (an eligible instance with an idle connection) runs
   * callback-style under a single promise, as pg.Pool.query does; anything else (waiting,
   * failures, retries) goes through {@link runSlow}.
   */
  private run<R extends pg.QueryResultRow>(
    attrs: TargetSessionAttrs,
    intent: Intent,
    text: string | pg.QueryConfig,
    values: unknown[] | undefined,
  ): Promise<pg.QueryResult<R>> {
    const inst = this.ready && !this.ended ? this.pickNow(attrs, intent) : undefined;
    if (inst === undefined || inst.failures > 0 || inst.pool.idleCount === 0) {
      // The balancer has chosen already: the slow path starts with that choice, not a new pick.
      return this.runSlow<R>(attrs, intent, text, values, inst);
    }
    const writer = attrs === 'read-write' || attrs === 'primary';
    return new Promise((resolve, reject) => {
      const slow = () => this.runSlow<R>(attrs, intent, text, values).then(resolve, reject);
      inst.pool.connect((err, client, release) => {
        if (err || !client) return void slow();
        if (writer && (client as unknown as TrackedClient).readOnly) {
          release(new Error('discarded: read-only connection offered to a writer'));
          this.writeRefused(inst);
          return void slow();
        }
        const sentToStandby = inst.role === 'standby';
        client.query<R>(text as string, values as unknown[], (queryErr: Error | null, result) => {
          if (!queryErr) {
            release();
            resolve(result);
            return;
          }
          const deadline = Date.now() + this.options.failoverTimeoutMs;
          this.afterQueryError(queryErr, client, inst, intent, deadline, sentToStandby).then(
            () => slow(),
            reject,
          );
        });
      });
    });
  }

  private async runSlow<R extends pg.QueryResultRow>(
    attrs: TargetSessionAttrs,
    intent: Intent,
    text: string | pg.QueryConfig,
    values: unknown[] | undefined,
    chosen?: InstancePool,
  ): Promise<pg.QueryResult<R>> {
    const deadline = Date.now() + this.options.failoverTimeoutMs;
    for (;;) {
      const { client, inst } = await this.checkout(attrs, intent, deadline, chosen);
      chosen = undefined;
      const sentToStandby = inst.role === 'standby';
      let result: pg.QueryResult<R>;
      try {
        result = await client.query<R>(text as string, values);
      } catch (err) {
        await this.afterQueryError(err, client, inst, intent, deadline, sentToStandby);
        continue;
      }
      client.release();
      return result;
    }
  }

  /**
   * Releases (or discards) the connection of a failed statement and decides: resolves when the
   * statement may be sent again, throws the coerced error when not. `sentToStandby` is the
   * instance's role when the statement was sent: it may have been demoted since.
   */
  private async afterQueryError(
    err: unknown,
    client: pg.PoolClient,
    inst: InstancePool,
    intent: Intent,
    deadline: number,
    sentToStandby: boolean,
  ): Promise<void> {
    const e = err as { code?: unknown; message?: unknown };
    if (e.code === '25006' && intent === 'write') {
      // The statement was refused, so nothing was written. If the server itself is read-only
      // (a demoted primary, a standby the topology has not caught up with), send it again
      // once a writer is found; if only the caller's transaction was read-only, say so now.
      const serverReadOnly = await this.serverReadOnly(client);
      client.release(err as Error);
      if (serverReadOnly) {
        this.writeRefused(inst);
        if (Date.now() < deadline) return;
      }
      throw coerceError(err);
    }
    const pe = coerceError(err);
    const connectionLost = pe.code === 'PGCOORD_CONNECTION';
    client.release(connectionLost ? (err as Error) : undefined);
    if (connectionLost) {
      this.requestRefresh();
      // Safe to send again: pg refuses before sending on a client it knows is broken, and a
      // standby cannot have written anything. What counts is the role when the statement was
      // sent: a primary demoted while it ran may have applied it, so that outcome is unknown
      // and the ConnectionError goes to the caller.
      const unsent = /not queryable/.test(String(e.message));
      if ((unsent || sentToStandby) && Date.now() < deadline) return;
    }
    throw pe;
  }

  /** Whether the server behind `client` refuses writes (in recovery or read-only by default). */
  private async serverReadOnly(client: pg.PoolClient): Promise<boolean> {
    const tracked = client as unknown as TrackedClient;
    if (tracked.hotStandby || tracked.defaultReadOnly) return true;
    try {
      // The caller's refused transaction may still be open (aborted): end it first, always. The
      // transaction status pg keeps is stale here when the refusal came through a callback (the
      // error arrives before its ReadyForQuery): trusting it sent the check into the aborted
      // transaction, whose failure read as "the server is read-only". Outside a transaction,
      // ROLLBACK only warns.
      await client.query('ROLLBACK');
      const { rows } = await client.query<{ ro: boolean }>(
        "SELECT pg_is_in_recovery() OR current_setting('default_transaction_read_only') = 'on' AS ro",
      );
      return rows[0]?.ro === true;
    } catch {
      return true;
    }
  }

  private async connectAs(attrs: TargetSessionAttrs, intent: Intent): Promise<pg.PoolClient> {
    const deadline = Date.now() + this.options.failoverTimeoutMs;
    const { client, inst } = await this.checkout(attrs, intent, deadline);
    const release = client.release;
    const tracked = client as unknown as TrackedClient;
    client.release = (err?: Error | boolean) => {
      if (err === undefined && intent === 'write' && tracked.readOnly) {
        // Answered 25006, or the session turned read-only: never back into a writer's hands.
        if (tracked.refusedWrite) this.writeRefused(inst);
        return release.call(client, new Error('discarded: read-only connection'));
      }
      return release.call(client, err);
    };
    return client;
  }

  private async checkout(
    attrs: TargetSessionAttrs,
    intent: Intent,
    deadline: number,
    chosen?: InstancePool,
  ): Promise<{ client: pg.PoolClient; inst: InstancePool }> {
    const writer = attrs === 'read-write' || attrs === 'primary';
    for (;;) {
      const inst =
        chosen ?? this.pickNow(attrs, intent) ?? (await this.pick(attrs, intent, deadline));
      chosen = undefined;
      let client: pg.PoolClient;
      try {
        client = await inst.acquire();
      } catch (err) {
        // An instance removed meanwhile did not fail: its caller just goes elsewhere.
        if (this.instances.get(inst.key) === inst) this.instanceFailed(inst, err);
        continue;
      }
      if (writer && (client as unknown as TrackedClient).readOnly) {
        client.release(new Error('discarded: read-only connection offered to a writer'));
        this.writeRefused(inst);
        continue;
      }
      if (writer) inst.refusalReported = false;
      if (inst.failures > 0) this.instanceWorked(inst);
      return { client, inst };
    }
  }

  /** An eligible instance for `attrs`, waiting (until `deadline`) for the topology to offer one. */
  private async pick(
    attrs: TargetSessionAttrs,
    intent: Intent,
    deadline: number,
  ): Promise<InstancePool> {
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
  private pickNow(attrs: TargetSessionAttrs, intent: Intent): InstancePool | undefined {
    if (this.ended) throw new ClosedError('the cluster pool was ended');
    if (!this.ready) return undefined;
    const list = this.candidateList(attrs, intent);
    if (list.length === 0) return undefined;
    const chosen = this.options.balancer.pick(list, intent);
    if (chosen instanceof InstancePool && this.instances.get(chosen.key) === chosen) return chosen;
    return chosen ? this.instances.get(chosen.key) : undefined;
  }

  private candidateList(attrs: TargetSessionAttrs, intent: Intent): InstancePool[] {
    // Date.now() only while some instance is in back-off: the cache expires when it ends.
    if (this.cacheExpiresAt !== Infinity && Date.now() >= this.cacheExpiresAt) this.invalidate();
    const cache = intent === 'read' ? this.readCandidates : this.candidates;
    let list = cache.get(attrs);
    if (list) return list;
    list = selectCandidates(
      [...this.instances.values()],
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
    for (const i of this.instances.values()) if (i.retryAt > now) next = Math.min(next, i.retryAt);
    this.cacheExpiresAt = next;
    const s = this.changed;
    this.changed = signal();
    s.resolve();
  }

  private describeInstances(): string {
    const views = this.topology();
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
      this.options.logger({
        level: 'warn',
        message: `closed ${n} connection(s) to the former primary`,
        instance: inst.key,
      });
    }
  }

  private instanceFailed(inst: InstancePool, err: unknown): void {
    inst.failed(Date.now());
    if (!inst.reportedDown) {
      inst.reportedDown = true;
      const e = coerceError(err);
      this.options.logger({ level: 'warn', message: 'instance down', instance: inst.key, err: e });
      this.emit('instance:down', { instance: inst.key, err: e });
    }
    this.invalidate();
    this.requestRefresh();
  }

  private instanceWorked(inst: InstancePool): void {
    inst.worked();
    if (inst.reportedDown) {
      inst.reportedDown = false;
      this.options.logger({ level: 'info', message: 'instance up', instance: inst.key });
      this.emit('instance:up', { instance: inst.key });
    }
    this.invalidate();
  }

  private writeRefused(inst: InstancePool): void {
    if (!inst.writeRefused) {
      inst.writeRefused = true;
      if (!inst.refusalReported) {
        inst.refusalReported = true;
        this.options.logger({
          level: 'warn',
          message: 'instance refused a write; waiting for the topology',
          instance: inst.key,
        });
      }
      this.invalidate();
    }
    this.requestRefresh();
  }

  /** A refresh soon (at most one every MIN_REFRESH_GAP_MS), coalesced with one in flight. */
  private requestRefresh(): void {
    if (this.ended || !this.started) return;
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    const wait = this.lastRefreshAt + MIN_REFRESH_GAP_MS - Date.now();
    this.schedule(Math.max(0, wait), true);
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
      this.options.logger({ level: 'warn', message: 'topology source failed', err: e });
      this.emit('topology:error', e);
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
      let inst = this.instances.get(key);
      const wasPrimary = inst?.role === 'primary';
      if (!inst) {
        inst = new InstancePool(d, {
          max: this.options.maxConnectionsPerInstance,
          idleTimeoutMs: this.options.idleTimeoutMs,
          connectTimeoutMs: this.options.connectTimeoutMs,
          retryBackoffMs: this.options.retryBackoffMs,
          maxRetryBackoffMs: this.options.maxRetryBackoffMs,
          clientConfig: this.options.clientConfig,
          events: this as EventEmitter,
        });
        this.instances.set(key, inst);
        inst.update(d);
        change.added.push(key);
      } else if (inst.update(d)) change.changed.push(key);
      if (wasPrimary && inst.role === 'standby') demoted.add(inst);
      const up = d.up ?? true;
      if (!up && !inst.reportedDown) {
        inst.reportedDown = true;
        this.emit('instance:down', { instance: key });
      } else if (up && d.reachable) {
        // The source just reached it: whatever failed before works now.
        if (inst.failures > 0 || inst.reportedDown) this.instanceWorked(inst);
      } else if (up && inst.reportedDown && inst.failures === 0) {
        inst.reportedDown = false;
        this.emit('instance:up', { instance: key });
      }
    }
    for (const [key, inst] of this.instances) {
      if (seen.has(key)) continue;
      this.instances.delete(key);
      change.removed.push(key);
      if (inst.role === 'primary') demoted.add(inst);
      // Drained: connections in use close when released; callers queued on it retry elsewhere.
      const closing = inst.close().finally(() => this.closing.delete(closing));
      this.closing.add(closing);
      void this.service.close(key);
    }
    // A failover is the single writable primary moving; multi-writer engines (Picodata,
    // YugabyteDB) have several and no failover in this sense.
    const primaries = [...this.instances.values()].filter(
      (i) => i.role === 'primary' && i.sourceUp && !i.readOnly,
    );
    if (primaries.length === 1 && primaries[0]!.key !== this.primaryKey) {
      const from = this.primaryKey;
      const to = primaries[0]!.key;
      this.primaryKey = to;
      const old = from === undefined ? undefined : this.instances.get(from);
      if (old) demoted.add(old);
      if (from !== undefined) {
        this.options.logger({ level: 'info', message: `failover ${from} -> ${to}` });
        this.emit('failover', { from, to });
      }
    }
    for (const inst of demoted) this.dropSessions(inst);
    this.invalidate();
    if (change.added.length + change.removed.length + change.changed.length > 0) {
      this.options.logger({
        level: 'debug',
        message: `topology: +${change.added.length} -${change.removed.length} ~${change.changed.length}`,
      });
      const views = this.topology();
      this.emit('topology', views, change);
    }
  }
}
