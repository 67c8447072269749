import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import { AttemptListClaims } from './attempt-list-claims.js';
import {
  ANALYZE_AFTER_ROWS,
  refreshStatistics,
  importItems,
  type ImportOptions,
  type ImportResult,
} from './attempt-list-import.js';
import {
  ATTEMPT_LIST_LIMITS,
  CHUNK_ITEMS,
  checkItem,
  checkItems,
  checkList,
} from './attempt-list-limits.js';
import {
  checkInsertItems,
  checkSchedule,
  type InsertItem,
  type InsertRows,
} from './attempt-list-schedule.js';
import {
  checkKey,
  checkLimits,
  MAX_KEY_WEIGHT,
  readKeyStats,
  readLimits,
  type KeyStats,
  settingsSql,
  writeLimits,
  type ListLimits,
  type StoredListLimits,
} from './attempt-list-settings.js';
import { buildSql, type AttemptListSql } from './attempt-list-sql.js';
import { affected, insertParams, slice } from './attempt-list-insert.js';
import { InsertNotifications } from './insert-notifications.js';
import { LiveWorkers, type LiveWorker } from './live-workers.js';
import {
  checkOptions,
  checkQueryable,
  checkSchemaName,
  checkInt,
  checkText,
  checkTx,
  DEFAULT_SCHEMA,
  optionalInt,
  optionsTx,
  preparedQuery,
  reportError,
  StatementRunner,
  withTransaction,
  type Queryable,
} from '../core/index.js';
import type {
  AttemptListOptions,
  AttemptListEvents,
  InsertOptions,
  WriteOptions,
  ListEntry,
  ListStats,
  PageOptions,
  Claim,
  ClaimOptions,
  ClaimRef,
  SettleResult,
  FailResult,
  ExtendResult,
  CompleteAndClaimResult,
  SettleOptions,
  FailOptions,
  CompleteAndClaimOptions,
} from './attempt-list-types.js';
import { Worker } from './worker.js';
import type { WorkHandler, WorkerOptions } from './worker-options.js';

const NO_LIMIT = ATTEMPT_LIST_LIMITS.maxAttempts;
const L = ATTEMPT_LIST_LIMITS;

/**
 * Named lists of string items with attempt counts (pgstore's checklist), plus safe concurrent
 * claiming with leases. Items are unique per list; each has an attempt count.
 *
 * Claims hand each item to exactly one worker at a time (`FOR UPDATE SKIP LOCKED`) with a lease
 * on the server clock and a token; `complete`, `fail`, `release` and `extend` must present the
 * token, so a worker whose lease expired and was taken over is refused, never applied twice.
 * Processing is at-least-once: an item whose worker dies comes back when its lease ends.
 *
 * @example
 * const list = new AttemptList(pool);
 * await list.insertBatch('downloads', urls);
 * for (;;) {
 *   const claims = await list.claim('downloads', { limit: 100, leaseMs: 30_000 });
 *   if (claims.length === 0) break;
 *   // ...process...
 *   await list.complete('downloads', claims);
 * }
 */
export class AttemptList extends EventEmitter<AttemptListEvents> {
  private readonly statements: StatementRunner;
  private readonly sql: AttemptListSql;
  /** Which inserts wake the list's workers (coalesced: see InsertNotifications). */
  private readonly notifications: InsertNotifications;
  /** claim, completeAndClaim and the settlements, on their own fast path. */
  private readonly claiming: AttemptListClaims;
  /** The live-workers table: written by this list's workers, read by workers(). */
  private readonly live: LiveWorkers;
  /** Keys and limits (migration 0014). */
  private readonly settings: ReturnType<typeof settingsSql>;

  /**
   * @param queryable a `pg.Pool` (or client); never closed by the list.
   * @param options `schema` (default `pgcoord`), `maxAttempts` (default: no limit).
   */
  constructor(queryable: Queryable, options: AttemptListOptions = {}) {
    checkQueryable('queryable', queryable);
    super();
    const o = checkOptions('options', options);
    const schema = checkSchemaName(o.schema ?? DEFAULT_SCHEMA);
    const maxAttempts = optionalInt(
      'options.maxAttempts',
      o.maxAttempts,
      { min: 1, max: NO_LIMIT },
      NO_LIMIT,
    );
    this.statements = new StatementRunner(queryable, schema);
    this.sql = buildSql(schema);
    this.notifications = new InsertNotifications(queryable, this.sql);
    this.claiming = new AttemptListClaims(queryable, schema, this.sql, maxAttempts, this);
    this.live = new LiveWorkers(this.statements);
    this.settings = settingsSql(schema);
  }

  /**
   * Inserts one item. Idempotent: an existing item keeps its attempts, key, schedule and
   * priority (the options apply to a new item only). Returns 1 if new, else 0.
   *
   * `key`: the item's key (see {@link setLimits}); default the list's key rule, else none.
   * `runAt` or `delayMs` (server clock) keep the item from being claimed before then;
   * `priority` (-32,768 to 32,767, default 0): claims take higher priorities first.
   *
   * @example
   * await list.insertOne('emails', 'welcome:42', { delayMs: 60_000, priority: 10 });
   */
  async insertOne(
    list: string,
    item: string,
    options?: InsertOptions & { key?: string },
  ): Promise<number> {
    checkList(list);
    checkItem(item);
    const o = checkOptions('options', options);
    const key = o.key === undefined ? undefined : [checkKey(o.key, 'options.key')];
    const tx = checkTx(o.tx);
    return this.insertRows(tx, list, {
      items: [item],
      keys: key,
      schedule: checkSchedule(o, 'options'),
    });
  }

  /**
   * Inserts a batch atomically (chunked inside one transaction; up to 1,000,000 items per call).
   * Existing items keep their attempts, key, schedule and priority; duplicates in the input
   * count once (the first one's key and schedule win). Returns how many were new.
   *
   * Items are strings, or `{ item, key?, runAt?, delayMs?, priority? }` objects: `key` is the
   * item's key (see {@link setLimits}; default the list's key rule, else none), the schedule
   * fields replace the batch-wide ones of `options` for that item (see {@link insertOne}).
   */
  async insertBatch(
    list: string,
    items: Array<string | InsertItem>,
    options?: InsertOptions,
  ): Promise<number> {
    checkList(list);
    const o = checkOptions('options', options);
    const tx = checkTx(o.tx);
    const rows = checkInsertItems(items, checkSchedule(o, 'options'));
    if (rows.items.length === 0) return 0;
    return this.insertRows(tx, list, rows);
  }

  /** Inserts checked rows through the cheapest statement that carries their schedules. */
  private async insertRows(
    tx: Queryable | undefined,
    list: string,
    rows: InsertRows,
  ): Promise<number> {
    const { pair, values } = insertParams(this.sql, list, rows);
    const { sql, quiet } = this.notifications.choose(list, tx !== undefined, pair);
    const n = await this.chunked(
      tx,
      rows.items.length,
      // Named on a pool: the statement (key rule, insert, key rows) costs more to plan than to
      // run; the helper falls back to unnamed behind a pooler that cannot keep it.
      async (on, a, b) => affected(await preparedQuery(on, sql, values(a, b), true)),
      this.sql.table,
    );
    if (quiet) this.notifications.settled(list);
    return n;
  }

  /**
   * Stores a list's key rule and limits, replacing what it had (a field left out: no such
   * limit). Every claim of the list from then on obeys them, in every process: the workers, the
   * CLI, the HTTP claim routes. Items already leased count toward them. Waits for claims and
   * inserts in flight on this schema's lists to finish (it is the fence that makes the change
   * exact); setting limits on a list that already holds items without keys gives those the key
   * `''` ("no key"), one write per item. See docs/attempt-lists.md, "Keys and limits".
   *
   * @example
   * await list.setLimits('crawl', {
   *   keyRegex: '^https?://([^/]+)',
   *   perKey: { concurrency: 2, rate: { limit: 10, periodMs: 1000 } },
   * });
   */
  async setLimits(list: string, limits: ListLimits, options?: WriteOptions): Promise<void> {
    checkList(list);
    const resolved = checkLimits(limits);
    const tx = optionsTx(options);
    await this.statements.run(
      (q) => withTransaction(q, (t) => writeLimits(t, this.settings, list, resolved)),
      { tx },
    );
  }

  /** Removes a list's key rule and limits (its items keep their keys). */
  async clearLimits(list: string, options?: WriteOptions): Promise<void> {
    return this.setLimits(list, {}, options);
  }

  /** A list's stored key rule and limits, defaults applied; `{}` when it has none. */
  async limits(list: string, options?: { tx?: Queryable }): Promise<StoredListLimits> {
    checkList(list);
    const tx = optionsTx(options);
    return this.statements.run((q) => readLimits(q, this.settings, list), { tx });
  }

  /** The `count` (1..1000, default 100) biggest keys of a list, with their counts. O(list size). */
  async keyStats(list: string, options?: { count?: number; tx?: Queryable }): Promise<KeyStats[]> {
    checkList(list);
    const count = optionalInt('options.count', options?.count, { min: 1, max: 1000 }, 100);
    const tx = optionsTx(options);
    return this.statements.run((q) => readKeyStats(q, this.settings, list, count), { tx });
  }

  /**
   * Sets a key's weight: on a list with limits, the key gets up to `weight` items per
   * round-robin turn where a key of weight 1 gets one. 1 .. 1000; default 1.
   */
  async setKeyWeight(
    list: string,
    key: string,
    weight: number,
    options?: WriteOptions,
  ): Promise<void> {
    checkList(list);
    checkKey(key);
    checkInt('weight', weight, { min: 1, max: MAX_KEY_WEIGHT });
    const tx = optionsTx(options);
    await this.statements.run((q) => q.query(this.settings.weight, [list, key, weight]), { tx });
  }

  /** Attempts of an item, or `undefined` when the list or item does not exist (not an error). */
  async getOne(
    list: string,
    item: string,
    options?: { tx?: Queryable },
  ): Promise<number | undefined> {
    checkList(list);
    checkItem(item);
    const tx = optionsTx(options);
    return this.statements.run(
      async (q) => {
        const { rows } = await q.query<{ attempts: number }>(this.sql.getOne, [list, item]);
        return rows[0]?.attempts;
      },
      { tx },
    );
  }

  /**
   * A keyset page: up to `count` items strictly after `after`, in byte order (`COLLATE "C"`).
   * Pass the last item of a page as `after` to get the next; an empty page means the end.
   */
  async getBatch(list: string, options: PageOptions = {}): Promise<ListEntry[]> {
    return this.page(this.sql.page, list, options);
  }

  /** Adds one to an item's attempts. Returns rows touched (0 when missing). */
  async incrementOne(list: string, item: string, options?: WriteOptions): Promise<number> {
    return this.writeOne(this.sql.increment, list, item, options);
  }

  /** Adds one to the attempts of each item; returns rows touched (duplicates count once, missing 0). */
  async incrementBatch(list: string, items: string[], options?: WriteOptions): Promise<number> {
    return this.writeBatch(this.sql.increment, list, items, options);
  }

  /** Deletes one item (claimed or not). Returns rows deleted (0 when missing). */
  async deleteOne(list: string, item: string, options?: WriteOptions): Promise<number> {
    return this.writeOne(this.sql.delete, list, item, options);
  }

  /** Deletes a batch of items; returns rows deleted (duplicates count once, missing 0). */
  async deleteBatch(list: string, items: string[], options?: WriteOptions): Promise<number> {
    return this.writeBatch(this.sql.delete, list, items, options);
  }

  /** Number of items in a list (every state: ready, leased, waiting, dead). O(size of the list). */
  async count(list: string, options?: { tx?: Queryable }): Promise<number> {
    checkList(list);
    const tx = optionsTx(options);
    return this.statements.run(
      async (q) => {
        const { rows } = await q.query<{ n: string }>(this.sql.count, [list]);
        return Number(rows[0]?.n ?? 0);
      },
      { tx },
    );
  }

  /** Counts of a list's items by state (claimable, leased, delayed, dead), on the server clock. O(size of the list). */
  async stats(list: string, options?: { tx?: Queryable }): Promise<ListStats> {
    checkList(list);
    const tx = optionsTx(options);
    return this.statements.run(
      async (q) => {
        const { rows } = await q.query<Record<keyof ListStats, string>>(this.sql.stats, [list]);
        const r = rows[0]!;
        return {
          total: Number(r.total),
          claimable: Number(r.claimable),
          leased: Number(r.leased),
          delayed: Number(r.delayed),
          dead: Number(r.dead),
        };
      },
      { tx },
    );
  }

  /**
   * Whether the list still has work for this pass, across every worker: an item claimable now,
   * held under a lease (live, or expired and so claimable again), or failed and waiting out its
   * retry delay. Dead items and items scheduled for later that have no attempt yet do not count.
   * `pgcoord lists work --until-empty` stops when this turns false. One indexed probe that stops
   * at the first such item.
   */
  async hasWork(list: string, options?: { tx?: Queryable }): Promise<boolean> {
    checkList(list);
    const tx = optionsTx(options);
    return this.statements.run(
      async (q) => (await q.query<{ busy: boolean }>(this.sql.hasWork, [list])).rows[0]!.busy,
      { tx },
    );
  }

  /** Every non-empty list of this schema with its size, by name in byte order. O(rows). */
  async lists(options?: { tx?: Queryable }): Promise<Array<{ list: string; size: number }>> {
    const tx = optionsTx(options);
    return this.statements.run(
      async (q) => {
        const { rows } = await q.query<{ list: string; size: string }>(this.sql.lists);
        return rows.map((r) => ({ list: r.list, size: Number(r.size) }));
      },
      { tx },
    );
  }

  /** Deletes every item of every list of this schema (other schemas untouched). Returns rows deleted. */
  async nuke(options?: WriteOptions): Promise<number> {
    const tx = optionsTx(options);
    return this.statements.run(async (q) => (await q.query(this.sql.nuke)).rowCount ?? 0, { tx });
  }

  /**
   * Bulk import through COPY: millions of items from an (async) iterable of strings, an
   * object-mode Readable of strings, or a byte Readable of newline-separated UTF-8 lines (blank
   * lines skipped). Duplicates (in the input or already in the list) are skipped, not fatal.
   * Atomic: a bad item (ValidationError) or any failure writes nothing.
   */
  async import(
    list: string,
    source: AsyncIterable<string> | Iterable<string> | Readable,
    options: ImportOptions = {},
  ): Promise<ImportResult> {
    checkList(list);
    const o = checkOptions('options', options);
    const schedule = checkSchedule(o, 'options');
    return this.statements.run(
      (q) =>
        importItems(
          q,
          this.statements.schema,
          list,
          source,
          o,
          schedule,
          this.sql.insertScheduled.insertQuiet,
        ),
      { tx: o.tx },
    );
  }

  /**
   * Claims up to `limit` claimable items for `leaseMs`: higher priorities first; within one,
   * ready items first (in storage order), then items whose schedule, retry delay or lease has
   * passed, oldest first. Each item goes to exactly one
   * claimer (`FOR UPDATE SKIP LOCKED`). An item whose previous lease expired counts that as a
   * failed attempt; items reaching `maxAttempts` become dead instead of being returned. Returns
   * fewer than `limit` (possibly none) when fewer are claimable; never waits.
   *
   * @example
   * const claims = await list.claim('downloads', { limit: 100, leaseMs: 30_000 });
   * // ... process each claim.item within its lease, then:
   * await list.complete('downloads', claims);
   */
  claim(list: string, options: ClaimOptions): Promise<Claim[]> {
    return this.claiming.claim(list, options);
  }

  /**
   * Completes (deletes) `done` and claims the next batch in one statement, one round trip: the
   * loop of a busy worker. Stale tokens among `done` are reported, never applied.
   */
  completeAndClaim(
    list: string,
    done: ClaimRef[],
    options: CompleteAndClaimOptions,
  ): Promise<CompleteAndClaimResult> {
    return this.claiming.completeAndClaim(list, done, options);
  }

  /** Deletes claimed items whose token is current. Stale tokens are reported in `stale`, never applied. */
  complete(list: string, claims: ClaimRef[], options: SettleOptions = {}): Promise<SettleResult> {
    return this.claiming.complete(list, claims, options);
  }

  /**
   * Gives claimed items back untouched (attempts unchanged), claimable at once.
   * Stale tokens are reported in `stale`, never applied.
   */
  release(list: string, claims: ClaimRef[], options: SettleOptions = {}): Promise<SettleResult> {
    return this.claiming.release(list, claims, options);
  }

  /**
   * Records a failed attempt: attempts + 1 and the item is released, claimable again after
   * `retryDelayMs`; one reaching `maxAttempts` becomes dead. Stale tokens are never applied.
   */
  fail(list: string, claims: ClaimRef[], options: FailOptions = {}): Promise<FailResult> {
    return this.claiming.fail(list, claims, options);
  }

  /** Renews the lease of claimed items to `leaseMs` from now (server clock). Stale tokens are never applied. */
  extend(
    list: string,
    claims: ClaimRef[],
    options: SettleOptions & { leaseMs: number },
  ): Promise<ExtendResult> {
    return this.claiming.extend(list, claims, options);
  }

  /** A keyset page of the dead items of a list (attempts reached maxAttempts), in byte order. */
  async dead(list: string, options: PageOptions = {}): Promise<ListEntry[]> {
    return this.page(this.sql.deadPage, list, options);
  }

  /**
   * Makes dead items claimable again with attempts reset to 0: the given ones (only those that
   * are dead), or every dead item of the list when `items` is omitted. Returns how many.
   */
  async requeue(list: string, items?: string[], options?: WriteOptions): Promise<number> {
    if (items !== undefined) return this.writeBatch(this.sql.requeue, list, items, options);
    checkList(list);
    const tx = optionsTx(options);
    return this.statements.run(async (q) => affected(await q.query(this.sql.requeueAll, [list])), {
      tx,
    });
  }

  /** One item through a one-array statement (insert, increment, delete); returns its rowCount. */
  private async writeOne(
    sql: string,
    list: string,
    item: string,
    options: WriteOptions | undefined,
  ): Promise<number> {
    checkList(list);
    checkItem(item);
    const tx = optionsTx(options);
    return this.statements.run(async (q) => affected(await q.query(sql, [list, [item]])), {
      tx,
    });
  }

  /** Distinct items of a batch through a one-array statement, chunked; returns rows touched. */
  private async writeBatch(
    sql: string,
    list: string,
    items: string[],
    options: WriteOptions | undefined,
  ): Promise<number> {
    checkList(list);
    checkItems(items);
    const tx = optionsTx(options);
    if (items.length === 0) return 0;
    const distinct = [...new Set(items)];
    return this.chunked(tx, distinct.length, async (on, a, b) =>
      affected(await on.query(sql, [list, slice(distinct, a, b)])),
    );
  }

  /** A keyset page (`list, after, count`) of a page statement (all items or dead ones). */
  private async page(sql: string, list: string, options: PageOptions): Promise<ListEntry[]> {
    checkList(list);
    const { after, count, tx } = checkPage(options);
    return this.statements.run(
      async (q) => (await q.query<ListEntry>(sql, [list, after, count])).rows,
      { tx },
    );
  }

  /**
   * Runs `count` items through `once` (items `from` to `to`, exclusive) in chunks, all inside one
   * transaction; sums what it returns (rows touched).
   */
  private chunked(
    tx: Queryable | undefined,
    count: number,
    once: (on: Queryable, from: number, to: number) => Promise<number>,
    /** The table to refresh statistics of after a big load. */
    analyze?: string,
  ): Promise<number> {
    return this.statements.run(
      async (q) => {
        if (count <= CHUNK_ITEMS) return once(q, 0, count);
        return withTransaction(q, async (t) => {
          let n = 0;
          for (let i = 0; i < count; i += CHUNK_ITEMS)
            n += await once(t, i, Math.min(count, i + CHUNK_ITEMS));
          // A big load refreshes the statistics at once (see ANALYZE_AFTER_ROWS).
          if (analyze !== undefined && n >= ANALYZE_AFTER_ROWS) await refreshStatistics(t, analyze);
          return n;
        });
      },
      { tx },
    );
  }

  /**
   * The live workers of `list` (or of every list of this schema): a row per running
   * {@link Worker} of any process, refreshed by the worker every few seconds, deleted when it
   * stops; the row of a worker that died without stopping no longer counts once its `liveTtlMs`
   * (default 60 s) has passed. By list, then start time.
   */
  async workers(list?: string, options?: { tx?: Queryable }): Promise<LiveWorker[]> {
    if (list !== undefined) checkList(list);
    const tx = optionsTx(options);
    return this.live.read(list, tx);
  }

  /**
   * Works `list` until stopped: runs `handler` on each item with `options.concurrency` in flight,
   * completes, retries and extends leases (see {@link Worker}). Returns the started worker.
   */
  work(list: string, handler: WorkHandler, options?: WorkerOptions): Worker {
    checkList(list);
    const worker = new Worker(
      this,
      this.statements.schema,
      list,
      handler,
      options ?? {},
      this.live,
    );
    worker
      .start()
      .catch((err: unknown) =>
        reportError(worker, worker.options.logger, err, 'worker failed to start'),
      );
    return worker;
  }
}

function checkPage(options: PageOptions) {
  const o = checkOptions('options', options);
  return {
    after:
      o.after === undefined
        ? ''
        : checkText('options.after', o.after, { maxBytes: L.maxItemBytes, allowEmpty: true }),
    count: optionalInt('options.count', o.count, { min: 1, max: L.maxPageCount }, 1000),
    tx: checkTx(o.tx),
  };
}
