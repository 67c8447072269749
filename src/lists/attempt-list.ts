import { EventEmitter } from 'node:events';
import type pg from 'pg';
import type { Readable } from 'node:stream';
import {
  ATTEMPT_LIST_LIMITS,
  CHUNK_ITEMS,
  checkClaims,
  IssuedClaim,
  checkItem,
  checkItems,
  checkList,
  checkTx,
  type ClaimRef,
} from './attempt-list-limits.js';
import {
  ANALYZE_AFTER_ROWS,
  refreshStatistics,
  importItems,
  type ImportOptions,
  type ImportResult,
} from './attempt-list-import.js';
import { coerceError, reportError, StaleTokenError, ValidationError } from '../core/index.js';
import { checkSchemaName, DEFAULT_SCHEMA } from '../core/index.js';
import { buildSql, unpack } from './attempt-list-sql.js';
import { ensureMigrated } from '../core/index.js';
import { withTransaction, type Queryable } from '../core/index.js';
import { checkInt, checkOptions, checkText, describe, optionalInt } from '../core/index.js';

import type {
  AttemptListOptions,
  AttemptListEvents,
  WriteOptions,
  ListEntry,
  ListStats,
  PageOptions,
  Claim,
  ClaimOptions,
  SettleResult,
  FailResult,
  ExtendResult,
  CompleteAndClaimResult,
  SettleOptions,
  FailOptions,
  CompleteAndClaimOptions,
  ClaimRow,
} from './attempt-list-types.js';
import { Worker, type WorkHandler, type WorkerOptions } from './worker.js';

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
  private readonly q: Queryable;
  private readonly schema: string;
  private readonly maxAttempts: number;
  private readonly sql: ReturnType<typeof buildSql>;

  /**
   * @param queryable a `pg.Pool` (or client); never closed by the list.
   * @param options `schema` (default `pgcoord`), `maxAttempts` (default: no limit).
   */
  constructor(queryable: Queryable, options: AttemptListOptions = {}) {
    if (typeof (queryable as Partial<Queryable> | undefined)?.query !== 'function') {
      throw new ValidationError(
        'queryable',
        `must have a query() method, got ${describe(queryable)}`,
      );
    }
    super();
    const o = checkOptions('options', options);
    this.q = queryable;
    this.schema = checkSchemaName(o.schema ?? DEFAULT_SCHEMA);
    this.maxAttempts = optionalInt(
      'options.maxAttempts',
      o.maxAttempts,
      { min: 1, max: NO_LIMIT },
      NO_LIMIT,
    );
    this.sql = buildSql(this.schema);
  }

  /** Inserts one item. Idempotent: an existing item keeps its attempts. Returns 1 if new, else 0. */
  async insertOne(list: string, item: string, options?: WriteOptions): Promise<number> {
    return this.writeOne(this.sql.insert, list, item, options);
  }

  /**
   * Inserts a batch atomically (chunked inside one transaction; up to 1,000,000 items per call).
   * Existing items keep their attempts; duplicates in the input count once. Returns how many
   * were new.
   */
  async insertBatch(list: string, items: string[], options?: WriteOptions): Promise<number> {
    checkList(list);
    checkItems(items);
    const tx = writeTx(options);
    if (items.length === 0) return 0;
    return this.chunked(tx, list, items, this.sql.insert, this.sql.table);
  }

  /** Attempts of an item, or `undefined` when the list or item does not exist (not an error). */
  async getOne(
    list: string,
    item: string,
    options?: { tx?: Queryable },
  ): Promise<number | undefined> {
    checkList(list);
    checkItem(item);
    const tx = writeTx(options);
    return this.run(tx, async (q) => {
      const { rows } = await q.query<{ attempts: number }>(this.sql.getOne, [list, item]);
      return rows[0]?.attempts;
    });
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
    const tx = writeTx(options);
    return this.run(tx, async (q) => {
      const { rows } = await q.query<{ n: string }>(this.sql.count, [list]);
      return Number(rows[0]?.n ?? 0);
    });
  }

  /** Counts of a list's items by state (claimable, leased, delayed, dead), on the server clock. O(size of the list). */
  async stats(list: string, options?: { tx?: Queryable }): Promise<ListStats> {
    checkList(list);
    const tx = writeTx(options);
    return this.run(tx, async (q) => {
      const { rows } = await q.query<Record<keyof ListStats, string>>(this.sql.stats, [list]);
      const r = rows[0]!;
      return {
        total: Number(r.total),
        claimable: Number(r.claimable),
        leased: Number(r.leased),
        delayed: Number(r.delayed),
        dead: Number(r.dead),
      };
    });
  }

  /** Every non-empty list of this schema with its size, by name in byte order. O(rows). */
  async lists(options?: { tx?: Queryable }): Promise<Array<{ list: string; size: number }>> {
    const tx = writeTx(options);
    return this.run(tx, async (q) => {
      const { rows } = await q.query<{ list: string; size: string }>(this.sql.lists);
      return rows.map((r) => ({ list: r.list, size: Number(r.size) }));
    });
  }

  /** Deletes every item of every list of this schema (other schemas untouched). Returns rows deleted. */
  async nuke(options?: WriteOptions): Promise<number> {
    const tx = writeTx(options);
    return this.run(tx, async (q) => (await q.query(this.sql.nuke)).rowCount ?? 0);
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
    const tx = checkTx(o.tx);
    await this.ready();
    return importItems(tx ?? this.q, this.schema, list, source, o);
  }

  /**
   * Claims up to `limit` claimable items for `leaseMs`: ready items first (in storage order),
   * then items whose retry delay or lease has passed, oldest first. Each item goes to exactly one
   * claimer (`FOR UPDATE SKIP LOCKED`). An item whose previous lease expired counts that as a
   * failed attempt; items reaching `maxAttempts` become dead instead of being returned. Returns
   * fewer than `limit` (possibly none) when fewer are claimable; never waits.
   *
   * @example
   * const claims = await list.claim('downloads', { limit: 100, leaseMs: 30_000 });
   * // ... process each claim.item within its lease, then:
   * await list.complete('downloads', claims);
   */
  async claim(list: string, options: ClaimOptions): Promise<Claim[]> {
    checkList(list);
    const o = checkOptions('options', options);
    const limit = checkInt('options.limit', o.limit, { min: 1, max: L.maxClaimLimit });
    const { leaseMs, maxAttempts, tx } = this.checkClaimOptions(o);
    return this.run(tx, (q) =>
      this.claimOn(q, tx === undefined, list, limit, leaseMs, maxAttempts),
    );
  }

  /**
   * Completes (deletes) `done` and claims the next batch in one statement, one round trip: the
   * loop of a busy worker. Stale tokens among `done` are reported, never applied.
   */
  async completeAndClaim(
    list: string,
    done: ClaimRef[],
    options: CompleteAndClaimOptions,
  ): Promise<CompleteAndClaimResult> {
    checkList(list);
    const { items, tokens, ctids } = checkClaims(done, 'done');
    const o = checkOptions('options', options);
    const limit = checkInt('options.limit', o.limit, { min: 0, max: L.maxClaimLimit });
    const { leaseMs, maxAttempts, tx } = this.checkClaimOptions(o);
    return this.run(tx, async (q) => {
      const { rows } = await query<ClaimRow>(q, tx === undefined, this.sql.completeAndClaim, [
        list,
        items,
        tokens,
        ctids,
        limit,
        leaseMs,
        maxAttempts,
      ]);
      const row = rows[0]!;
      const claims = toClaims(row);
      this.observe(list, row);
      let died = row.dead.length;
      // Items retired as dead left gaps in the batch: fill them (bounded, so a list full of
      // dead-on-arrival items cannot keep us here).
      for (let round = 0; died > 0 && claims.length < limit && round < 10; round++) {
        const more = await this.claimOnce(
          q,
          tx === undefined,
          list,
          limit - claims.length,
          leaseMs,
          maxAttempts,
        );
        claims.push(...more.claims);
        died = more.died;
      }
      // The items are distinct (checkClaims), and so are the completed ones among them.
      return { count: row.completed.length, stale: stale(items, row.completed), claims };
    });
  }

  /** Deletes claimed items whose token is current. Stale tokens are reported in `stale`, never applied. */
  async complete(
    list: string,
    claims: ClaimRef[],
    options: SettleOptions = {},
  ): Promise<SettleResult> {
    const r = await this.settle(list, claims, options, this.sql.complete, []);
    return { count: r.count, stale: r.stale };
  }

  /**
   * Gives claimed items back untouched (attempts unchanged), claimable at once.
   * Stale tokens are reported in `stale`, never applied.
   */
  async release(
    list: string,
    claims: ClaimRef[],
    options: SettleOptions = {},
  ): Promise<SettleResult> {
    const r = await this.settle(list, claims, options, this.sql.release, []);
    return { count: r.count, stale: r.stale };
  }

  /**
   * Records a failed attempt: attempts + 1 and the item is released, claimable again after
   * `retryDelayMs`; one reaching `maxAttempts` becomes dead. Stale tokens are never applied.
   */
  async fail(list: string, claims: ClaimRef[], options: FailOptions = {}): Promise<FailResult> {
    const o = checkOptions('options', options);
    const retryDelayMs = optionalInt(
      'options.retryDelayMs',
      o.retryDelayMs,
      { min: 0, max: L.maxLeaseMs },
      0,
    );
    const maxAttempts = optionalInt(
      'options.maxAttempts',
      o.maxAttempts,
      { min: 1, max: NO_LIMIT },
      this.maxAttempts,
    );
    const r = await this.settle(list, claims, o, this.sql.fail, [retryDelayMs, maxAttempts]);
    return {
      count: r.count,
      stale: r.stale,
      dead: r.rows.filter((x) => x.dead).map((x) => x.item),
    };
  }

  /** Renews the lease of claimed items to `leaseMs` from now (server clock). Stale tokens are never applied. */
  async extend(
    list: string,
    claims: ClaimRef[],
    options: SettleOptions & { leaseMs: number },
  ): Promise<ExtendResult> {
    const o = checkOptions('options', options);
    const leaseMs = checkInt('options.leaseMs', o.leaseMs, { min: 1, max: L.maxLeaseMs });
    const r = await this.settle(list, claims, o, this.sql.extend, [leaseMs]);
    // The extend wrote new row versions: point the claims' hints at them, so a later complete
    // still reaches its rows directly.
    const moved = new Map(r.rows.map((x) => [x.item, x.ctid]));
    for (const c of claims) {
      const ctid = moved.get(c.item);
      if (ctid !== undefined) IssuedClaim.rehint(c, ctid);
    }
    return { count: r.count, stale: r.stale, leaseUntil: r.rows[0]?.run_at ?? undefined };
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
    const tx = writeTx(options);
    return this.run(tx, async (q) => (await q.query(this.sql.requeueAll, [list])).rowCount ?? 0);
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
    const tx = writeTx(options);
    return this.run(tx, async (q) => (await q.query(sql, [list, [item]])).rowCount ?? 0);
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
    const tx = writeTx(options);
    if (items.length === 0) return 0;
    return this.chunked(tx, list, [...new Set(items)], sql);
  }

  /** A keyset page (`list, after, count`) of a page statement (all items or dead ones). */
  private async page(sql: string, list: string, options: PageOptions): Promise<ListEntry[]> {
    checkList(list);
    const { after, count, tx } = checkPage(options);
    return this.run(tx, async (q) => (await q.query<ListEntry>(sql, [list, after, count])).rows);
  }

  private checkClaimOptions(o: { leaseMs?: unknown; maxAttempts?: unknown; tx?: unknown }) {
    return {
      leaseMs: checkInt('options.leaseMs', o.leaseMs, { min: 1, max: L.maxLeaseMs }),
      maxAttempts: optionalInt(
        'options.maxAttempts',
        o.maxAttempts,
        { min: 1, max: NO_LIMIT },
        this.maxAttempts,
      ),
      tx: checkTx(o.tx),
    };
  }

  private async claimOn(
    q: Queryable,
    retry: boolean,
    list: string,
    limit: number,
    leaseMs: number,
    maxAttempts: number,
  ): Promise<Claim[]> {
    const claims: Claim[] = [];
    for (let round = 0; round < 10 && claims.length < limit; round++) {
      const r = await this.claimOnce(q, retry, list, limit - claims.length, leaseMs, maxAttempts);
      claims.push(...r.claims);
      if (r.died === 0) break;
    }
    return claims;
  }

  private async claimOnce(
    q: Queryable,
    retry: boolean,
    list: string,
    limit: number,
    leaseMs: number,
    maxAttempts: number,
  ) {
    const { rows } = await query<ClaimRow>(q, retry, this.sql.claim, [
      list,
      [],
      '',
      '',
      limit,
      leaseMs,
      maxAttempts,
    ]);
    const row = rows[0]!;
    this.observe(list, row);
    return { claims: toClaims(row), died: row.dead.length };
  }

  private async settle(
    list: string,
    claims: ClaimRef[],
    options: SettleOptions,
    sql: string,
    /** Parameters after the claims' ($1 list, $2 items, $3 tokens, $4 ctid hints). */
    extra: unknown[],
  ): Promise<SettleResult & { rows: SettleRow[] }> {
    checkList(list);
    const { items, tokens, ctids } = checkClaims(claims);
    const o = checkOptions('options', options);
    const tx = checkTx(o.tx);
    if (o.strict !== undefined && typeof o.strict !== 'boolean') {
      throw new ValidationError('options.strict', `must be a boolean, got ${describe(o.strict)}`);
    }
    if (items.length === 0) return { count: 0, stale: [], rows: [] };
    const apply = async (q: Queryable, retry = false) => {
      const { rows } = await query<SettleRow>(q, retry, sql, [
        list,
        items,
        tokens,
        ctids,
        ...extra,
      ]);
      const missed = stale(
        items,
        rows.map((r) => r.item),
      );
      if (o.strict && missed.length > 0) {
        throw new StaleTokenError(
          `${missed.length} of ${items.length} claims are stale (first: ${JSON.stringify(missed[0]!.slice(0, 100))}); nothing was applied`,
        );
      }
      return { count: rows.length, stale: missed, rows };
    };
    // strict needs all-or-nothing: run it in a transaction (a savepoint inside the caller's).
    return o.strict
      ? this.run(tx, (q) => withTransaction(q, (t) => apply(t)))
      : this.run(tx, (q) => apply(q, tx === undefined));
  }

  /** Runs `items` through a one-array statement in chunks, all inside one transaction; sums rowCount. */
  private chunked(
    tx: Queryable | undefined,
    list: string,
    items: string[],
    sql: string,
    /** The table to refresh statistics of after a big load. */
    analyze?: string,
  ): Promise<number> {
    return this.run(tx, async (q) => {
      const once = async (on: Queryable, chunk: string[]) =>
        (await on.query(sql, [list, chunk])).rowCount ?? 0;
      if (items.length <= CHUNK_ITEMS) return once(q, items);
      return withTransaction(q, async (t) => {
        let n = 0;
        for (let i = 0; i < items.length; i += CHUNK_ITEMS)
          n += await once(t, items.slice(i, i + CHUNK_ITEMS));
        // A big load refreshes the statistics at once (see ANALYZE_AFTER_ROWS).
        if (analyze !== undefined && n >= ANALYZE_AFTER_ROWS) await refreshStatistics(t, analyze);
        return n;
      });
    });
  }

  /**
   * Works `list` until stopped: runs `handler` on each item with `options.concurrency` in flight,
   * completes, retries and extends leases (see {@link Worker}). Returns the started worker.
   */
  work(list: string, handler: WorkHandler, options?: WorkerOptions): Worker {
    checkList(list);
    const worker = new Worker(this, this.schema, list, handler, options);
    worker
      .start()
      .catch((err: unknown) =>
        reportError(worker, worker.options.logger, err, 'worker failed to start'),
      );
    return worker;
  }

  /** Emits what a claim statement saw: taken-over expired leases, items retired as dead. */
  private observe(list: string, row: ClaimRow): void {
    if (row.expired.length > 0) this.emit('claim:expired', { list, items: row.expired });
    if (row.dead.length > 0) this.emit('claim:dead', { list, items: row.dead });
  }

  private ready(): Promise<void> {
    return ensureMigrated(this.q, this.schema);
  }

  /** Migrates on first use, runs `fn` on the caller's transaction or the list's queryable, classifies errors. */
  private async run<T>(tx: Queryable | undefined, fn: (q: Queryable) => Promise<T>): Promise<T> {
    try {
      await this.ready();
      return await fn(tx ?? this.q);
    } catch (err) {
      throw coerceError(err);
    }
  }
}

/**
 * Runs one statement; when it is the whole transaction (no caller transaction), retries it after a
 * deadlock. Claims lock rows with SKIP LOCKED, but PostgreSQL still waits, whatever the wait
 * policy, when it locks a row whose newer version another transaction holds ("while locking
 * updated version of tuple"), and two claimers can each hold what the other waits for. The
 * statement rolled back as a whole, so running it again is safe.
 */
async function query<R extends pg.QueryResultRow>(
  q: Queryable,
  retry: boolean,
  sql: string,
  values: unknown[],
): Promise<pg.QueryResult<R>> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await q.query<R>(sql, values);
    } catch (err) {
      const deadlock = (err as { code?: unknown }).code === '40P01';
      if (!retry || !deadlock || attempt >= DEADLOCK_RETRIES) throw err;
      await new Promise((resolve) => setTimeout(resolve, 5 * attempt + Math.random() * 20));
    }
  }
}

const DEADLOCK_RETRIES = 5;

/** The items of `sent` (distinct) missing from `applied` (a subset of them). */
function stale(sent: string[], applied: string[]): string[] {
  if (applied.length === sent.length) return [];
  const done = new Set(applied);
  return sent.filter((i) => !done.has(i));
}

/** A row a settle statement applied to (fail adds `dead`, extend the new lease end and ctid). */
interface SettleRow extends pg.QueryResultRow {
  item: string;
  dead?: boolean;
  run_at?: Date | null;
  ctid?: string;
}

function writeTx(options: { tx?: Queryable } | undefined): Queryable | undefined {
  return checkTx(checkOptions('options', options).tx);
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

function toClaims(row: ClaimRow): Claim[] {
  const { items, token, lease_until: leaseUntil } = row;
  if (items.length === 0) return []; // nothing claimed: no token, no lease end
  const ctids = unpack(row.ctids);
  const attempts = unpack(row.attempts);
  const until = leaseUntil.getTime();
  return items.map(
    (item, i) => new IssuedClaim(item, token, Number(attempts[i]), new Date(until), ctids[i]!),
  );
}
