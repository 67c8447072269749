import { EventEmitter } from 'node:events';
import pg from 'pg';
import { coerceError } from '../core/index.js';
import type { ConnectableQueryable } from '../core/index.js';
import type { Intent } from './balancer.js';
import {
  resolveClusterOptions,
  type ClusterPoolOptions,
  type ResolvedClusterOptions,
} from './cluster-options.js';
import {
  FORWARDED_EVENTS,
  InstancePool,
  TrackedClient,
  type ForwardedEvent,
} from './instance-pool.js';
import type { TargetSessionAttrs } from './multi-host-url.js';
import type { InstanceView } from './topology.js';
import { TopologyTracker, type TopologyChange } from './topology-tracker.js';

export type { TopologyChange } from './topology-tracker.js';

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
  private readonly tracker: TopologyTracker;

  constructor(options: ClusterPoolOptions) {
    super();
    this.options = resolveClusterOptions(options);
    this.tracker = new TopologyTracker(this.options, this);
    (this as EventEmitter).on('newListener', (name: string | symbol) => {
      if ((FORWARDED_EVENTS as readonly (string | symbol)[]).includes(name)) {
        for (const inst of this.tracker.instances.values()) inst.forward(name as ForwardedEvent);
      }
    });
    this.reader = {
      query: (text, values) => this.run(this.options.readerAttrs, 'read', text, values),
      connect: () => this.connectAs(this.options.readerAttrs, 'read'),
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
    return this.tracker.ended;
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
      const inst = await this.tracker.pick('read-write', 'write', deadline);
      const client = new TrackedClient({
        ...this.options.clientConfig(inst),
        connectionTimeoutMillis: this.options.connectTimeoutMs,
        keepAlive: true,
      });
      client.on('error', () => undefined);
      try {
        await client.connect();
      } catch (err) {
        if (this.tracker.current(inst)) this.tracker.instanceFailed(inst, err);
        continue;
      }
      if (client.readOnly) {
        await client.end().catch(() => undefined);
        this.tracker.writeRefused(inst);
        continue;
      }
      inst.refusalReported = false;
      this.tracker.instanceWorked(inst);
      return client;
    }
  }

  /** The current view of every instance: role, health, lag, connections. */
  topology(): InstanceView[] {
    return this.tracker.views();
  }

  /** Reads the topology now (starting the pool if needed) and resolves when it is applied. */
  async refresh(): Promise<InstanceView[]> {
    await this.tracker.refresh();
    return this.topology();
  }

  /**
   * Closes every instance pool (in-use connections close on release), every discovery connection,
   * and stops the poller. Idempotent; calls after it fail with ClosedError.
   */
  end(): Promise<void> {
    return this.tracker.stop();
  }

  private sum(f: (p: pg.Pool) => number): number {
    let n = 0;
    for (const i of this.tracker.instances.values()) n += f(i.pool);
    return n;
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
    const tracker = this.tracker;
    const inst = tracker.ready && !tracker.ended ? tracker.pickNow(attrs, intent) : undefined;
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
          this.tracker.writeRefused(inst);
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
        this.tracker.writeRefused(inst);
        if (Date.now() < deadline) return;
      }
      throw coerceError(err);
    }
    const pe = coerceError(err);
    const connectionLost = pe.code === 'PGCOORD_CONNECTION';
    client.release(connectionLost ? (err as Error) : undefined);
    if (connectionLost) {
      this.tracker.requestRefresh();
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
        if (tracked.refusedWrite) this.tracker.writeRefused(inst);
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
        chosen ??
        this.tracker.pickNow(attrs, intent) ??
        (await this.tracker.pick(attrs, intent, deadline));
      chosen = undefined;
      let client: pg.PoolClient;
      try {
        client = await inst.acquire();
      } catch (err) {
        // An instance removed meanwhile did not fail: its caller just goes elsewhere.
        if (this.tracker.current(inst)) this.tracker.instanceFailed(inst, err);
        continue;
      }
      if (writer && (client as unknown as TrackedClient).readOnly) {
        client.release(new Error('discarded: read-only connection offered to a writer'));
        this.tracker.writeRefused(inst);
        continue;
      }
      if (writer) inst.refusalReported = false;
      if (inst.failures > 0) this.tracker.instanceWorked(inst);
      return { client, inst };
    }
  }
}
