import { EventEmitter } from 'node:events';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { ChangeCapture, type ChangeOperation } from './change-capture.js';
import { ConnectionError, coerceError, ValidationError } from '../core/index.js';
import { checkSchemaName, DEFAULT_SCHEMA, quoteIdent } from '../core/index.js';
import { ensureMigrated } from '../core/index.js';
import { withClient, type ConnectableQueryable } from '../core/index.js';
import type { Listener } from '../listen/index.js';
import {
  commitBatchSql,
  fetchBatchSql,
  FinalityTracker,
  type ChangeRow,
  type FetchRow,
} from './change-position.js';
import { subscribeWakeups, wakeChannel } from './change-wakeups.js';
import { checkOptions, checkText, describe, optionalInt } from '../core/index.js';

/** One captured row change, as a handler receives it. */
export interface Change {
  /** Sequence id (decimal string): unique, increasing in write order. */
  id: string;
  /** Id of the writing transaction (xid8, decimal string): groups a transaction's changes. */
  xid: string;
  schema: string;
  table: string;
  op: ChangeOperation;
  /** Primary key columns and values; the whole row for a table without a key; null for TRUNCATE. */
  pk: Record<string, unknown> | null;
  /** Row before (UPDATE, DELETE), limited to the tracked columns. */
  old: Record<string, unknown> | null;
  /** Row after (INSERT, UPDATE), limited to the tracked columns. */
  new: Record<string, unknown> | null;
  /** When the writing statement started (server clock). */
  writtenAt: Date;
  /** Commit time, when the server runs with `track_commit_timestamp = on`; otherwise null. */
  committedAt: Date | null;
  /**
   * Stable key for effects outside the database (`<xid>:<id>`): the same on every delivery of
   * this change, so a receiver can drop repeats (delivery outside the database is at-least-once).
   */
  idempotencyKey: string;
}

/** Where a batch comes from, for the handler. */
export interface BatchContext {
  group: string;
  partition: number;
  /** 1 on the first try of this position, more on retries. */
  attempt: number;
  /** True for dead letters being replayed (outside per-key order). */
  replay: boolean;
}

/**
 * Receives a batch and the transaction the group's progress commits in: write your effects with
 * `tx` and they commit together with the position, exactly once. Do not COMMIT or ROLLBACK it;
 * throw to reject the batch (it is retried, then dead-lettered).
 */
export type ChangeHandler = (
  changes: Change[],
  tx: pg.PoolClient,
  context: BatchContext,
) => Promise<void>;

export interface ConsumeOptions {
  /** Consumer group name: each group sees every change once. */
  group: string;
  handler: ChangeHandler;
  /**
   * `ordered` (default): one active consumer per group, changes in id order (per row, commit
   * order). `parallel`: `partitions` lanes shared by many consumers, order kept per primary key.
   */
  mode?: 'ordered' | 'parallel';
  /** Lanes of a parallel group, fixed when the group is created. Default 8; ordered: 1. */
  partitions?: number;
  /** Lanes this process works at once (parallel). Default 1. Needs that many pool connections. */
  concurrency?: number;
  /** Most changes per handler call. Default 500. */
  batchSize?: number;
  /** Where a NEW group starts: `now` (default; changes written after it exists) or `beginning` (everything retained). */
  startFrom?: 'now' | 'beginning';
  /** Tries per batch before the failing change is isolated and dead-lettered. Default 5. */
  maxAttempts?: number;
  /** First retry delay; doubles per attempt, jittered. Default 200. Unit: ms. */
  retryBaseMs?: number;
  /** Longest retry delay. Default 30,000. Unit: ms. */
  retryMaxMs?: number;
  /** Ordered mode: how long the active consumer keeps the group after its last batch. Default 15,000. Unit: ms. */
  leaseMs?: number;
  /** How often the cheap check for new changes runs (reads the id sequence). Default 50. Unit: ms. */
  pollIntervalMs?: number;
  /** Full look for work even if no new id was allocated (late commits). Default 1,000. Unit: ms. */
  fullPollIntervalMs?: number;
  /** How often this consumer prunes consumed changes and checks lag; 0 turns it off. Default 10,000. Unit: ms. */
  pruneIntervalMs?: number;
  /** Retention bound for dead groups, see ChangeCapture.prune. Default 7 days. Unit: ms. */
  maxRetentionMs?: number;
  /** Emit `lag` (and log a warning) when a group lags by more changes than this. Default 100,000. */
  lagWarning?: number;
  /** This consumer's name in the group row. Default `<host>:<pid>:<random>`. */
  consumerId?: string;
  /**
   * A started {@link Listener} to share wake-ups between processes: a consumer whose poll sees new
   * ids sends one empty NOTIFY (at most one per `pollIntervalMs` per process, never from the
   * writers, so commits are not serialized) and every other consumer on the channel wakes at once
   * instead of at its next poll. Only a hint: polling goes on. Default: none.
   */
  listener?: Listener;
  /** pgcoord's schema. Default `pgcoord`. */
  schema?: string;
  /** Receives warnings (lag, overrun) and errors nobody listens for. Default: console. */
  logger?: {
    warn(message: string, meta?: object): void;
    error(message: string, meta?: object): void;
  };
}

/** Events of a {@link ChangeConsumer}. */
export interface ChangeConsumerEvents {
  batch: [{ group: string; partition: number; count: number; replay: boolean }];
  retry: [{ group: string; partition: number; attempt: number; delayMs: number; error: unknown }];
  'dead-letter': [{ group: string; changeId: string; error: string }];
  lag: [{ group: string; partition: number; lag: number }];
  overrun: [{ group: string; partition: number; skipped: number }];
  pruned: [{ deleted: number }];
  error: [Error];
}

interface Resolved extends Required<Omit<ConsumeOptions, 'logger' | 'handler' | 'listener'>> {
  handler: ChangeHandler;
  listener: Listener | undefined;
  logger: NonNullable<ConsumeOptions['logger']>;
}

function resolveOptions(options: ConsumeOptions): Resolved {
  checkOptions('options', options);
  const group = checkText('options.group', options.group, { maxBytes: 200 });
  if (typeof options.handler !== 'function') {
    throw new ValidationError(
      'options.handler',
      `must be a function, got ${describe(options.handler)}`,
    );
  }
  const mode = options.mode ?? 'ordered';
  if (mode !== 'ordered' && mode !== 'parallel') {
    throw new ValidationError(
      'options.mode',
      `must be 'ordered' or 'parallel', got ${describe(mode)}`,
    );
  }
  const startFrom = options.startFrom ?? 'now';
  if (startFrom !== 'now' && startFrom !== 'beginning') {
    throw new ValidationError(
      'options.startFrom',
      `must be 'now' or 'beginning', got ${describe(startFrom)}`,
    );
  }
  const partitions =
    mode === 'ordered'
      ? options.partitions === undefined || options.partitions === 1
        ? 1
        : (() => {
            throw new ValidationError('options.partitions', 'must be 1 (or unset) in ordered mode');
          })()
      : optionalInt('options.partitions', options.partitions, { min: 1, max: 1024 }, 8);
  const int = (name: keyof ConsumeOptions, min: number, max: number, d: number) =>
    optionalInt(`options.${name}`, options[name], { min, max }, d);
  return {
    group,
    handler: options.handler,
    mode,
    partitions,
    concurrency: int('concurrency', 1, 64, 1),
    batchSize: int('batchSize', 1, 10_000, 500),
    startFrom,
    maxAttempts: int('maxAttempts', 1, 1000, 5),
    retryBaseMs: int('retryBaseMs', 1, 3_600_000, 200),
    retryMaxMs: int('retryMaxMs', 1, 86_400_000, 30_000),
    leaseMs: int('leaseMs', 100, 86_400_000, 15_000),
    pollIntervalMs: int('pollIntervalMs', 5, 60_000, 50),
    fullPollIntervalMs: int('fullPollIntervalMs', 10, 3_600_000, 1000),
    pruneIntervalMs: int('pruneIntervalMs', 0, 86_400_000, 10_000),
    maxRetentionMs: int('maxRetentionMs', 1, 3650 * 86_400_000, 7 * 86_400_000),
    lagWarning: int('lagWarning', 1, Number.MAX_SAFE_INTEGER, 100_000),
    consumerId:
      options.consumerId === undefined
        ? `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
        : checkText('options.consumerId', options.consumerId, { maxBytes: 200 }),
    schema: checkSchemaName(options.schema ?? DEFAULT_SCHEMA),
    listener: checkListener(options.listener),
    logger: options.logger ?? {
      warn: (m, meta) => console.warn(`pgcoord: ${m}`, meta ?? ''),
      error: (m, meta) => console.error(`pgcoord: ${m}`, meta ?? ''),
    },
  };
}

function checkListener(value: unknown): Listener | undefined {
  if (value === undefined) return undefined;
  const l = value as Partial<Listener>;
  if (typeof l.handle !== 'function' || typeof l.unhandle !== 'function') {
    throw new ValidationError('options.listener', `must be a Listener, got ${describe(value)}`);
  }
  return value as Listener;
}

/**
 * Delivers captured changes to one consumer group, in any number of processes.
 *
 * Late commits are never skipped: the group's position is a low-water mark plus the ids above it
 * already delivered, and the mark only passes ids no transaction can still commit (see
 * change-position.ts).
 *
 * @example
 * const consumer = new ChangeConsumer(pool, {
 *   group: 'search-index',
 *   handler: async (changes, tx) => {
 *     for (const c of changes) await tx.query('INSERT INTO outbox (key) VALUES ($1)', [c.idempotencyKey]);
 *   },
 * });
 * await consumer.start();
 */
export class ChangeConsumer extends EventEmitter<ChangeConsumerEvents> {
  private readonly pool: ConnectableQueryable;
  private readonly o: Resolved;
  private readonly s: string;
  private running = false;
  private starting: Promise<void> | undefined;
  private workers: Promise<void>[] = [];
  private timers: NodeJS.Timeout[] = [];
  private waiters: Array<() => void> = [];
  private trackCommitTs = false;
  // Low-water bookkeeping shared by every statement of this consumer (see the class comment).
  private readonly finality = new FinalityTracker();
  private ticking = false;
  private wakes = 0;
  private unsubscribe: (() => void) | undefined;
  private lastSeenSeq: bigint | null = null;
  private notBefore = new Map<number, number>();
  private cursor = 0;
  private stats = { delivered: 0, batches: 0, retries: 0, deadLettered: 0 };

  /**
   * @param pool a pool (needs `concurrency` + 1 connections); never closed by pgcoord.
   */
  constructor(pool: ConnectableQueryable, options: ConsumeOptions) {
    super();
    this.o = resolveOptions(options);
    if (typeof (pool as Partial<ConnectableQueryable>)?.connect !== 'function') {
      throw new ValidationError('pool', 'must be a pg.Pool (a Queryable with connect())');
    }
    this.pool = pool;
    this.s = quoteIdent(this.o.schema);
  }

  /** Counters since start: changes delivered, batches, retries, dead letters. */
  metrics(): { delivered: number; batches: number; retries: number; deadLettered: number } {
    return { ...this.stats };
  }

  /** Creates the group if new, then starts delivering in the background. Idempotent. */
  async start(): Promise<void> {
    if (this.running) return this.starting;
    this.running = true;
    this.starting = (async () => {
      try {
        await ensureMigrated(this.pool, this.o.schema);
        await this.ensureGroup();
        const tc = await this.pool.query<{ on: boolean }>(
          `SELECT current_setting('track_commit_timestamp') = 'on' AS on`,
        );
        this.trackCommitTs = tc.rows[0]?.on ?? false;
      } catch (err) {
        this.running = false;
        throw coerceError(err);
      }
      if (!this.running) return;
      if (this.o.listener) {
        this.unsubscribe = subscribeWakeups(this.o.listener, wakeChannel(this.o.schema), () =>
          this.wakeAll(),
        );
      }
      // The poll timer is what keeps a started consumer's process alive (a consumer is the reason
      // a worker process runs; with every connection cut, nothing else would); stop() clears it.
      this.timers.push(setInterval(() => void this.tick(), this.o.pollIntervalMs));
      const background = [setInterval(() => this.wakeAll(), this.o.fullPollIntervalMs)];
      if (this.o.pruneIntervalMs > 0) {
        background.push(setInterval(() => void this.maintain(), this.o.pruneIntervalMs));
      }
      for (const t of background) t.unref();
      this.timers.push(...background);
      const n = Math.min(this.o.concurrency, this.o.partitions);
      for (let i = 0; i < n; i++) this.workers.push(this.work());
    })();
    return this.starting;
  }

  /** Stops: lets the batches in flight finish (commit or roll back), clears timers. Idempotent. */
  async stop(): Promise<void> {
    await this.starting?.catch(() => undefined);
    this.running = false;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.wakeAll();
    await Promise.all(this.workers);
    this.workers = [];
  }

  private async ensureGroup(): Promise<void> {
    const o = this.o;
    await new ChangeCapture(this.pool, { schema: o.schema }).createGroup(o.group, {
      startFrom: o.startFrom,
      mode: o.mode,
      partitions: o.partitions,
    });
  }

  private wakeAll(): void {
    this.wakes++;
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  private idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.waiters.push(done);
    });
  }

  /**
   * Cheap check for new ids: reads the sequence and wakes workers when it moved. While some ids
   * are not known final it also takes an xid (pg_current_xact_id(): no write, no fsync) as the
   * anchor of the low-water bookkeeping (see the class comment).
   */
  private async tick(): Promise<void> {
    if (!this.running || this.ticking) return;
    this.ticking = true;
    try {
      const seqBefore = this.finality.lastCompletedSeq;
      const anchor = this.finality.needsAnchor();
      // With a listener, new ids are announced from here (bounded by the poll rate), not by writers.
      const { rows } = await this.pool.query<{ seq: string; xmin: string; x: string | null }>(
        `SELECT s.seq::text, pg_snapshot_xmin(pg_current_snapshot())::text AS xmin,
                ${anchor ? 'pg_current_xact_id()::text' : 'NULL::text'} AS x,
                CASE WHEN $1::text IS NOT NULL AND s.seq > $2::bigint THEN pg_notify($1::text, '') END
           FROM (SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS seq
                   FROM ${this.s}.change_ids) s`,
        [this.o.listener ? wakeChannel(this.o.schema) : null, (this.lastSeenSeq ?? -1n).toString()],
      );
      const r = rows[0]!;
      this.finality.observe(anchor ? seqBefore : null, r);
      const seq = BigInt(r.seq);
      if (this.lastSeenSeq === null || seq !== this.lastSeenSeq) {
        this.lastSeenSeq = seq;
        this.wakeAll();
      }
    } catch {
      // The workers see and report connection trouble; the tick just tries again.
    } finally {
      this.ticking = false;
    }
  }

  private async work(): Promise<void> {
    while (this.running) {
      let progressed = false;
      let soonest = Infinity;
      // A wake-up that arrives while this sweep runs must not be lost: it may announce a change
      // the sweep's snapshot did not see yet.
      const wakesBefore = this.wakes;
      for (let i = 0; i < this.o.partitions && this.running; i++) {
        const part = (this.cursor++ + i) % this.o.partitions;
        const wait = (this.notBefore.get(part) ?? 0) - Date.now();
        if (wait > 0) {
          soonest = Math.min(soonest, wait);
          continue;
        }
        try {
          const n = await this.runBatch(part);
          if (n > 0) progressed = true;
          // A handler failure scheduled a retry: wake for it, not at the next full poll.
          const retryAt = this.notBefore.get(part);
          if (retryAt !== undefined) soonest = Math.min(soonest, Math.max(1, retryAt - Date.now()));
        } catch (err) {
          this.report(err);
          const delay = this.backoff(1);
          this.notBefore.set(part, Date.now() + delay);
          soonest = Math.min(soonest, delay);
        }
      }
      if (!this.running) break;
      if (!progressed && this.wakes === wakesBefore) {
        await this.idle(Math.min(soonest, this.o.fullPollIntervalMs));
      }
    }
  }

  private backoff(attempt: number): number {
    const base = Math.min(this.o.retryMaxMs, this.o.retryBaseMs * 2 ** Math.min(30, attempt - 1));
    return Math.round(base / 2 + (Math.random() * base) / 2);
  }

  private report(err: unknown): void {
    const e = coerceError(err);
    if (this.listenerCount('error') > 0) this.emit('error', e);
    else this.o.logger.error(`change consumer "${this.o.group}": ${e.message}`, { code: e.code });
  }

  /** One batch of one partition in one transaction. Returns changes handled (0 = nothing to do). */
  private async runBatch(part: number): Promise<number> {
    const o = this.o;
    // withClient: a connection cut while we hold the client is caught and the client destroyed.
    return withClient(this.pool, async (client, markBroken) => {
      try {
        // The row estimates of these statements are poor (multirange gaps); JIT compiling them
        // costs more than running them.
        await client.query('BEGIN; SET LOCAL jit = off');
        const fetched = await client.query<FetchRow>(fetchBatchSql(this.s), [
          o.group,
          part,
          o.mode === 'parallel',
          o.consumerId,
          o.partitions,
          o.batchSize,
          this.trackCommitTs,
          o.maxAttempts,
        ]);
        const g = fetched.rows[0];
        if (!g) {
          await client.query('ROLLBACK');
          return 0; // another consumer holds this partition
        }
        this.finality.observe(null, g);
        if (g.replays > 0 && part === 0) {
          const n = await this.runReplays(client);
          if (n > 0) return n;
        }
        const changes = g.rows.map(toChange);
        const lowWater = BigInt(g.low_water);
        if (
          changes.length === 0 &&
          (this.finality.finalUpTo === null || this.finality.finalUpTo <= lowWater)
        ) {
          await client.query('ROLLBACK');
          return 0;
        }
        let deadLetter: string | undefined;
        if (changes.length > 0) {
          if (g.attempts >= o.maxAttempts && changes.length === 1) {
            deadLetter = await this.deadLetter(client, part, changes[0]!, g.attempts);
          } else {
            const attempt = g.attempts + 1;
            try {
              await o.handler(changes, client, {
                group: o.group,
                partition: part,
                attempt,
                replay: false,
              });
            } catch (err) {
              await this.failed(client, part, changes.length, attempt, err);
              return 0;
            }
          }
        }
        try {
          await client.query(commitBatchSql(this.s), [
            o.group,
            part,
            g.covered,
            this.finality.finalUpTo === null ? null : this.finality.finalUpTo.toString(),
            o.partitions,
            o.consumerId,
            o.leaseMs,
            deadLetter ? 0 : changes.length,
            changes.length > 0,
          ]);
        } catch (err) {
          // A handler that swallowed an SQL error left the transaction aborted: its batch failed.
          if ((err as { code?: string }).code === '25P02' && changes.length > 0 && !deadLetter) {
            const why = new Error(
              'the handler left its transaction aborted (it caught an SQL error)',
            );
            await this.failed(client, part, changes.length, g.attempts + 1, why);
            return 0;
          }
          throw err;
        }
        await client.query('COMMIT');
        this.notBefore.delete(part);
        if (changes.length > 0) {
          this.stats.batches++;
          if (deadLetter) {
            this.stats.deadLettered++;
            this.emit('dead-letter', {
              group: o.group,
              changeId: changes[0]!.id,
              error: deadLetter,
            });
          } else {
            this.stats.delivered += changes.length;
            this.emit('batch', {
              group: o.group,
              partition: part,
              count: changes.length,
              replay: false,
            });
          }
        }
        return changes.length;
      } catch (err) {
        if (coerceError(err) instanceof ConnectionError) markBroken(err);
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  }

  /**
   * A handler failure: roll the batch back, count the attempt in the group row, wait. After
   * `maxAttempts` a multi-change batch is split (the next tries take one change at a time), so
   * only the change that keeps failing is dead-lettered.
   */
  private async failed(
    client: pg.PoolClient,
    part: number,
    size: number,
    attempt: number,
    err: unknown,
  ): Promise<void> {
    await client.query('ROLLBACK');
    const message = err instanceof Error ? err.message : String(err);
    if (coerceError(err) instanceof ConnectionError) throw err;
    await client.query(
      `UPDATE ${this.s}.change_groups
          SET attempts = CASE WHEN attempts + 1 >= $3::int AND $4::int > 1 THEN 0 ELSE attempts + 1 END,
              isolate = CASE WHEN attempts + 1 >= $3::int AND $4::int > 1 THEN $4::int ELSE isolate END,
              last_error = left($5::text, 2000), updated_at = now()
        WHERE group_name = $1::text AND partition = $2::int`,
      [this.o.group, part, this.o.maxAttempts, size, message],
    );
    const delayMs = this.backoff(attempt);
    this.notBefore.set(part, Date.now() + delayMs);
    this.stats.retries++;
    this.emit('retry', { group: this.o.group, partition: part, attempt, delayMs, error: err });
  }

  private async deadLetter(
    client: pg.PoolClient,
    part: number,
    change: Change,
    attempts: number,
  ): Promise<string> {
    const { rows } = await client.query<{ last_error: string | null }>(
      `WITH g AS (SELECT last_error FROM ${this.s}.change_groups WHERE group_name = $1::text AND partition = $5::int)
       INSERT INTO ${this.s}.change_dead_letters AS d (group_name, change_id, change, attempts, last_error)
       SELECT $1::text, $2::bigint, $3::jsonb, $4::int, g.last_error FROM g
       ON CONFLICT (group_name, change_id) DO UPDATE
         SET state = 'dead', attempts = d.attempts + EXCLUDED.attempts,
             last_error = EXCLUDED.last_error, failed_at = now()
       RETURNING last_error`,
      [this.o.group, change.id, JSON.stringify(change), attempts, part],
    );
    return rows[0]?.last_error ?? 'handler failed';
  }

  /** Delivers dead letters queued by ChangeCapture.replay, in this (partition 0's) transaction. */
  private async runReplays(client: pg.PoolClient): Promise<number> {
    const { rows } = await client.query<{ id: string; change: Change }>(
      `SELECT id::text, change FROM ${this.s}.change_dead_letters
        WHERE group_name = $1::text AND state = 'replay' ORDER BY id LIMIT $2::int FOR UPDATE SKIP LOCKED`,
      [this.o.group, this.o.batchSize],
    );
    if (rows.length === 0) return 0;
    const changes = rows.map((r) => ({
      ...r.change,
      committedAt: r.change.committedAt && new Date(r.change.committedAt),
      writtenAt: new Date(r.change.writtenAt),
    }));
    try {
      await client.query('SAVEPOINT pgcoord_handler');
      await this.o.handler(changes, client, {
        group: this.o.group,
        partition: 0,
        attempt: 1,
        replay: true,
      });
      await client.query('RELEASE SAVEPOINT pgcoord_handler');
      await client.query(`DELETE FROM ${this.s}.change_dead_letters WHERE id = ANY($1::bigint[])`, [
        rows.map((r) => r.id),
      ]);
    } catch (err) {
      await client.query('ROLLBACK TO SAVEPOINT pgcoord_handler');
      await client.query(
        `UPDATE ${this.s}.change_dead_letters SET state = 'dead', attempts = attempts + 1,
                last_error = left($2::text, 2000), failed_at = now() WHERE id = ANY($1::bigint[])`,
        [rows.map((r) => r.id), err instanceof Error ? err.message : String(err)],
      );
      await client.query('COMMIT');
      this.emit('retry', { group: this.o.group, partition: 0, attempt: 1, delayMs: 0, error: err });
      return 0;
    }
    await client.query('COMMIT');
    this.stats.delivered += rows.length;
    this.emit('batch', { group: this.o.group, partition: 0, count: rows.length, replay: true });
    return rows.length;
  }

  /** Background upkeep: prune what every group passed, warn about lag and overruns. */
  private async maintain(): Promise<void> {
    if (!this.running) return;
    try {
      const capture = new ChangeCapture(this.pool, { schema: this.o.schema });
      const pruned = await capture.prune({ maxRetentionMs: this.o.maxRetentionMs });
      if (pruned.deleted > 0) this.emit('pruned', { deleted: pruned.deleted });
      for (const ov of pruned.overrun) {
        this.o.logger.warn(
          `change group "${ov.group}" partition ${ov.partition} was overrun by retention: ${ov.skipped} change ids pruned before it consumed them`,
        );
        this.emit('overrun', ov);
      }
      for (const st of await capture.groups()) {
        if (st.group !== this.o.group || st.lag <= this.o.lagWarning) continue;
        this.o.logger.warn(
          `change group "${st.group}" partition ${st.partition} lags by ${st.lag} changes`,
        );
        this.emit('lag', { group: st.group, partition: st.partition, lag: st.lag });
      }
    } catch (err) {
      this.report(err);
    }
  }
}

function toChange(r: ChangeRow): Change {
  return {
    id: r.id,
    xid: r.xid,
    schema: r.schema_name,
    table: r.table_name,
    op: r.op,
    pk: r.pk,
    old: r.old,
    new: r.new,
    writtenAt: new Date(r.written_at),
    committedAt: r.committed_at === null ? null : new Date(r.committed_at),
    idempotencyKey: `${r.xid}:${r.id}`,
  };
}

/** Starts a consumer: `new ChangeConsumer(pool, options)` then `start()`. */
export async function consume(
  pool: ConnectableQueryable,
  options: ConsumeOptions,
): Promise<ChangeConsumer> {
  const consumer = new ChangeConsumer(pool, options);
  await consumer.start();
  return consumer;
}
