import { EventEmitter } from 'node:events';
import type pg from 'pg';
import { ChangeCapture } from './change-capture.js';
import { backoffDelayMs, coerceError, ConnectionError, Lifecycle } from '../core/index.js';
import { quoteIdent, reportError, StatementRunner, withClient } from '../core/index.js';
import type { ConnectableQueryable, LifecycleSignals, Service } from '../core/index.js';
import { checkConnectable } from '../core/index.js';
import {
  commitBatchSql,
  fetchBatchSql,
  FinalityTracker,
  type FetchRow,
} from './change-position.js';
import { wakeChannel } from './change-wakeups.js';
import { subscribeWakeups } from '../listen/index.js';
import { toChange } from './change.js';
import {
  resolveChangeConsumerOptions,
  type ConsumeOptions,
  type ResolvedChangeConsumerOptions,
} from './change-consumer-options.js';
import {
  claimReplays,
  deadLetter,
  deleteReplayed,
  failReplayed,
  recordFailure,
} from './dead-letters.js';

/** Events of a {@link ChangeConsumer}. */
export interface ChangeConsumerEvents {
  /** A batch committed (`replay`: dead letters delivered again). */
  batch: [{ group: string; partition: number; count: number; replay: boolean }];
  /** A batch failed and is tried again after `delayMs`. */
  retry: [{ group: string; partition: number; attempt: number; delayMs: number; error: unknown }];
  /** A change failed `maxAttempts` times and went to the dead letters. */
  'dead-letter': [{ group: string; changeId: string; error: string }];
  /** A lane lags by more than `lagWarning` changes. */
  lag: [{ group: string; partition: number; lag: number }];
  /** Retention pruned changes a lane had not consumed. */
  overrun: [{ group: string; partition: number; skipped: number }];
  /** Background pruning deleted consumed changes. */
  pruned: [{ deleted: number }];
  /** A background failure (without a listener, it is logged). */
  error: [Error];
}

/** Counters of a {@link ChangeConsumer} since it was made. */
export interface ChangeConsumerMetrics {
  /** Changes delivered (replays included). */
  delivered: number;
  /** Batches committed. */
  batches: number;
  /** Failed batches tried again. */
  retries: number;
  /** Changes moved to the dead letters. */
  deadLettered: number;
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
export class ChangeConsumer extends EventEmitter<ChangeConsumerEvents> implements Service {
  /** Test signals of its lifecycle: `started`, `stopped`. */
  readonly signals: LifecycleSignals;
  private readonly pool: ConnectableQueryable;
  private readonly o: ResolvedChangeConsumerOptions;
  private readonly s: string;
  private readonly statements: StatementRunner;
  private readonly capture: ChangeCapture;
  private readonly lifecycle: Lifecycle;
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
  private stats: ChangeConsumerMetrics = { delivered: 0, batches: 0, retries: 0, deadLettered: 0 };

  /**
   * @param pool a pool (needs `concurrency` + 1 connections); never closed by pgcoord.
   */
  constructor(pool: ConnectableQueryable, options: ConsumeOptions) {
    super();
    this.o = resolveChangeConsumerOptions(options);
    this.pool = checkConnectable('pool', pool);
    this.s = quoteIdent(this.o.schema);
    this.statements = new StatementRunner(this.pool, this.o.schema);
    this.capture = new ChangeCapture(this.pool, { schema: this.o.schema });
    this.lifecycle = new Lifecycle(
      { name: `change consumer "${this.o.group}"` },
      { start: (signal) => this.begin(signal), stop: () => this.end() },
    );
    this.signals = this.lifecycle.signals;
  }

  /** Counters since it was made: changes delivered, batches, retries, dead letters. */
  metrics(): ChangeConsumerMetrics {
    return { ...this.stats };
  }

  /**
   * Creates the group if new, then starts delivering in the background. Idempotent; after
   * stop() it starts again.
   */
  start(): Promise<void> {
    return this.lifecycle.start();
  }

  /** Stops: lets the batches in flight finish (commit or roll back), clears timers. Idempotent. */
  stop(): Promise<void> {
    return this.lifecycle.stop();
  }

  /** Same as {@link stop}: `await using consumer = ...` stops it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.lifecycle.stop();
  }

  /** Whether the workers go on: false from the moment stop() begins. */
  private get running(): boolean {
    return !this.lifecycle.signal.aborted;
  }

  private async begin(signal: AbortSignal): Promise<void> {
    await this.statements.run(async (q) => {
      await this.ensureGroup();
      const tc = await q.query<{ on: boolean }>(
        `SELECT current_setting('track_commit_timestamp') = 'on' AS on`,
      );
      this.trackCommitTs = tc.rows[0]?.on ?? false;
    });
    if (signal.aborted) return;
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
  }

  private async end(): Promise<void> {
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
    await this.capture.createGroup(o.group, {
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
    return backoffDelayMs(attempt, {
      baseMs: this.o.retryBaseMs,
      maxMs: this.o.retryMaxMs,
      jitter: 'equal',
    });
  }

  private report(err: unknown): void {
    const e = coerceError(err);
    reportError(this, this.o.logger, e, `change consumer "${this.o.group}": ${e.message}`, {
      group: this.o.group,
    });
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
        let deadLettered: string | undefined;
        if (changes.length > 0) {
          if (g.attempts >= o.maxAttempts && changes.length === 1) {
            deadLettered = await deadLetter(client, this.s, o.group, part, changes[0]!, g.attempts);
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
            deadLettered ? 0 : changes.length,
            changes.length > 0,
          ]);
        } catch (err) {
          // A handler that swallowed an SQL error left the transaction aborted: its batch failed.
          if ((err as { code?: string }).code === '25P02' && changes.length > 0 && !deadLettered) {
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
          if (deadLettered) {
            this.stats.deadLettered++;
            this.emit('dead-letter', {
              group: o.group,
              changeId: changes[0]!.id,
              error: deadLettered,
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
    await recordFailure(client, this.s, this.o.group, part, this.o.maxAttempts, size, message);
    const delayMs = this.backoff(attempt);
    this.notBefore.set(part, Date.now() + delayMs);
    this.stats.retries++;
    this.emit('retry', { group: this.o.group, partition: part, attempt, delayMs, error: err });
  }

  /** Delivers dead letters queued by ChangeCapture.replay, in this (partition 0's) transaction. */
  private async runReplays(client: pg.PoolClient): Promise<number> {
    const { ids, changes } = await claimReplays(client, this.s, this.o.group, this.o.batchSize);
    if (ids.length === 0) return 0;
    try {
      await client.query('SAVEPOINT pgcoord_handler');
      await this.o.handler(changes, client, {
        group: this.o.group,
        partition: 0,
        attempt: 1,
        replay: true,
      });
      await client.query('RELEASE SAVEPOINT pgcoord_handler');
      await deleteReplayed(client, this.s, ids);
    } catch (err) {
      await client.query('ROLLBACK TO SAVEPOINT pgcoord_handler');
      await failReplayed(client, this.s, ids, err instanceof Error ? err.message : String(err));
      await client.query('COMMIT');
      this.emit('retry', { group: this.o.group, partition: 0, attempt: 1, delayMs: 0, error: err });
      return 0;
    }
    await client.query('COMMIT');
    this.stats.delivered += ids.length;
    this.emit('batch', { group: this.o.group, partition: 0, count: ids.length, replay: true });
    return ids.length;
  }

  /** Background upkeep: prune what every group passed, warn about lag and overruns. */
  private async maintain(): Promise<void> {
    if (!this.running) return;
    try {
      const pruned = await this.capture.prune({ maxRetentionMs: this.o.maxRetentionMs });
      if (pruned.deleted > 0) this.emit('pruned', { deleted: pruned.deleted });
      for (const ov of pruned.overrun) {
        this.o.logger.warn(
          { ...ov },
          `change group "${ov.group}" partition ${ov.partition} was overrun by retention: ${ov.skipped} change ids pruned before it consumed them`,
        );
        this.emit('overrun', ov);
      }
      for (const st of await this.capture.groups()) {
        if (st.group !== this.o.group || st.lag <= this.o.lagWarning) continue;
        this.o.logger.warn(
          { group: st.group, partition: st.partition, lag: st.lag },
          `change group "${st.group}" partition ${st.partition} lags by ${st.lag} changes`,
        );
        this.emit('lag', { group: st.group, partition: st.partition, lag: st.lag });
      }
    } catch (err) {
      this.report(err);
    }
  }
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
