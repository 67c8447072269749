import type { Readable } from 'node:stream';
import {
  ATTEMPT_LIST_LIMITS,
  CHUNK_ITEMS,
  checkClaims,
  checkItem,
  checkItems,
  checkList,
  checkTx,
  type ClaimRef,
} from './attempt-list-limits.js';
import { importItems, type ImportOptions, type ImportResult } from './attempt-list-import.js';
import { coerceError, StaleTokenError, ValidationError } from './db/errors.js';
import { checkSchemaName, DEFAULT_SCHEMA, quoteIdent } from './db/identifier.js';
import { ensureMigrated } from './db/migrator.js';
import { withTransaction, type Queryable } from './db/queryable.js';
import { checkInt, checkOptions, checkText, describe, optionalInt } from './validate.js';

export type { ClaimRef } from './attempt-list-limits.js';

/** Options of {@link AttemptList}. */
export interface AttemptListOptions {
  /** Schema holding the `list_items` table. Default `pgcoord`. */
  schema?: string;
  /**
   * Default `maxAttempts` of claim and fail: an item whose attempts reach it becomes dead (not
   * claimed again until requeued). Default: no limit.
   */
  maxAttempts?: number;
}

/** Options of every write: run it inside the caller's transaction. */
export interface WriteOptions {
  /** A client inside the caller's transaction; the statements run there instead of on the list's queryable. */
  tx?: Queryable;
}

/** One entry of a page. */
export interface ListEntry {
  item: string;
  attempts: number;
}

/** Options of a keyset page ({@link AttemptList.getBatch}, {@link AttemptList.dead}). */
export interface PageOptions {
  /** Return items strictly after this one in byte order; it need not exist. Default `''` (from the start). */
  after?: string;
  /** Most entries to return, 1 to 100,000. Default 1,000. */
  count?: number;
  /** Read inside the caller's transaction. */
  tx?: Queryable;
}

/** One item handed to a worker by a claim. */
export interface Claim extends ClaimRef {
  /** Failed attempts so far (an expired lease counts as one). */
  attempts: number;
  /** When the lease ends, on the server clock. After it the item can be claimed by anyone. */
  leaseUntil: Date;
}

/** Options of {@link AttemptList.claim}. */
export interface ClaimOptions extends WriteOptions {
  /** Most items to claim, 1 to 10,000. */
  limit: number;
  /** Lease length in milliseconds, 1 ms to 30 days. */
  leaseMs: number;
  /**
   * Items whose attempts (counting an expired lease as one) reached this are marked dead instead
   * of being handed out. Default: the list's `maxAttempts` (no limit unless set).
   */
  maxAttempts?: number;
}

/** Result of complete / release: how many were applied and which items' tokens were stale. */
export interface SettleResult {
  /** Claims applied. */
  count: number;
  /** Items whose token is no longer current (lease lost, item deleted): nothing was done to them. */
  stale: string[];
}

/** Result of {@link AttemptList.fail}. */
export interface FailResult extends SettleResult {
  /** Items that reached maxAttempts with this failure and are now dead. */
  dead: string[];
}

/** Result of {@link AttemptList.extend}. */
export interface ExtendResult extends SettleResult {
  /** The new lease end of the extended items, on the server clock (undefined when none were). */
  leaseUntil: Date | undefined;
}

/** Result of {@link AttemptList.completeAndClaim}. */
export interface CompleteAndClaimResult extends SettleResult {
  /** The next claims. */
  claims: Claim[];
}

/** Options of complete / release / extend / fail batches. */
export interface SettleOptions extends WriteOptions {
  /** Throw {@link StaleTokenError} (and apply nothing) when any token is stale. Default false. */
  strict?: boolean;
}

/** Options of {@link AttemptList.fail}. */
export interface FailOptions extends SettleOptions {
  /** Wait this long (milliseconds, server clock) before the item can be claimed again. Default 0. */
  retryDelayMs?: number;
  /** An item reaching this many attempts becomes dead. Default: the list's `maxAttempts`. */
  maxAttempts?: number;
}

/** Options of {@link AttemptList.completeAndClaim}. */
export interface CompleteAndClaimOptions extends WriteOptions {
  /** Most items to claim next, 0 to 10,000 (0: only complete). */
  limit: number;
  /** Lease length of the next claims, milliseconds. */
  leaseMs: number;
  /** As in {@link ClaimOptions.maxAttempts}. */
  maxAttempts?: number;
}

interface ClaimRow {
  claimed: boolean;
  item: string;
  attempts: number | null;
  token: string | null;
  run_at: Date | null;
}

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
export class AttemptList {
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
    checkList(list);
    checkItem(item);
    const tx = writeTx(options);
    return this.run(
      tx,
      async (q) => (await q.query(this.sql.insert, [list, [item]])).rowCount ?? 0,
    );
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
    return this.chunked(tx, list, items, this.sql.insert);
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
    checkList(list);
    const { after, count, tx } = checkPage(options);
    return this.run(
      tx,
      async (q) => (await q.query<ListEntry>(this.sql.page, [list, after, count])).rows,
    );
  }

  /** Adds one to an item's attempts. Returns rows touched (0 when missing). */
  async incrementOne(list: string, item: string, options?: WriteOptions): Promise<number> {
    checkList(list);
    checkItem(item);
    const tx = writeTx(options);
    return this.run(
      tx,
      async (q) => (await q.query(this.sql.increment, [list, [item]])).rowCount ?? 0,
    );
  }

  /** Adds one to the attempts of each item; returns rows touched (duplicates count once, missing 0). */
  async incrementBatch(list: string, items: string[], options?: WriteOptions): Promise<number> {
    checkList(list);
    checkItems(items);
    const tx = writeTx(options);
    if (items.length === 0) return 0;
    return this.chunked(tx, list, [...new Set(items)], this.sql.increment);
  }

  /** Deletes one item (claimed or not). Returns rows deleted (0 when missing). */
  async deleteOne(list: string, item: string, options?: WriteOptions): Promise<number> {
    checkList(list);
    checkItem(item);
    const tx = writeTx(options);
    return this.run(
      tx,
      async (q) => (await q.query(this.sql.delete, [list, [item]])).rowCount ?? 0,
    );
  }

  /** Deletes a batch of items; returns rows deleted (duplicates count once, missing 0). */
  async deleteBatch(list: string, items: string[], options?: WriteOptions): Promise<number> {
    checkList(list);
    checkItems(items);
    const tx = writeTx(options);
    if (items.length === 0) return 0;
    return this.chunked(tx, list, [...new Set(items)], this.sql.delete);
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
   * failed attempt; items reaching `maxAttempts` become dead instead of being returned.
   */
  async claim(list: string, options: ClaimOptions): Promise<Claim[]> {
    checkList(list);
    const o = checkOptions('options', options);
    const limit = checkInt('options.limit', o.limit, { min: 1, max: L.maxClaimLimit });
    const { leaseMs, maxAttempts, tx } = this.checkClaimOptions(o);
    return this.run(tx, (q) => this.claimOn(q, list, limit, leaseMs, maxAttempts));
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
    const { items, tokens } = checkClaims(done, 'done');
    const o = checkOptions('options', options);
    const limit = checkInt('options.limit', o.limit, { min: 0, max: L.maxClaimLimit });
    const { leaseMs, maxAttempts, tx } = this.checkClaimOptions(o);
    return this.run(tx, async (q) => {
      const { rows } = await q.query<ClaimRow>(this.sql.completeAndClaim, [
        list,
        items,
        tokens,
        limit,
        leaseMs,
        maxAttempts,
      ]);
      const completed = new Set<string>();
      const claimRows: ClaimRow[] = [];
      for (const r of rows) {
        if (r.claimed) claimRows.push(r);
        else completed.add(r.item);
      }
      const claims = toClaims(claimRows);
      let died = claimRows.length - claims.length;
      // Items retired as dead left gaps in the batch: fill them (bounded, so a list full of
      // dead-on-arrival items cannot keep us here).
      for (let round = 0; died > 0 && claims.length < limit && round < 10; round++) {
        const more = await this.claimOnce(q, list, limit - claims.length, leaseMs, maxAttempts);
        claims.push(...more.claims);
        died = more.died;
      }
      return { count: completed.size, stale: items.filter((i) => !completed.has(i)), claims };
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
    return { count: r.count, stale: r.stale, leaseUntil: r.rows[0]?.run_at ?? undefined };
  }

  /** A keyset page of the dead items of a list (attempts reached maxAttempts), in byte order. */
  async dead(list: string, options: PageOptions = {}): Promise<ListEntry[]> {
    checkList(list);
    const { after, count, tx } = checkPage(options);
    return this.run(
      tx,
      async (q) => (await q.query<ListEntry>(this.sql.deadPage, [list, after, count])).rows,
    );
  }

  /**
   * Makes dead items claimable again with attempts reset to 0: the given ones (only those that
   * are dead), or every dead item of the list when `items` is omitted. Returns how many.
   */
  async requeue(list: string, items?: string[], options?: WriteOptions): Promise<number> {
    checkList(list);
    if (items !== undefined) checkItems(items);
    const tx = writeTx(options);
    if (items === undefined) {
      return this.run(tx, async (q) => (await q.query(this.sql.requeueAll, [list])).rowCount ?? 0);
    }
    if (items.length === 0) return 0;
    return this.chunked(tx, list, [...new Set(items)], this.sql.requeue);
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
    list: string,
    limit: number,
    leaseMs: number,
    maxAttempts: number,
  ): Promise<Claim[]> {
    const claims: Claim[] = [];
    for (let round = 0; round < 10 && claims.length < limit; round++) {
      const r = await this.claimOnce(q, list, limit - claims.length, leaseMs, maxAttempts);
      claims.push(...r.claims);
      if (r.died === 0) break;
    }
    return claims;
  }

  private async claimOnce(
    q: Queryable,
    list: string,
    limit: number,
    leaseMs: number,
    maxAttempts: number,
  ) {
    const { rows } = await q.query<ClaimRow>(this.sql.claim, [list, limit, leaseMs, maxAttempts]);
    const claims = toClaims(rows);
    return { claims, died: rows.length - claims.length };
  }

  private async settle(
    list: string,
    claims: ClaimRef[],
    options: SettleOptions,
    sql: string,
    extra: unknown[],
  ): Promise<
    SettleResult & { rows: Array<{ item: string; dead?: boolean; run_at?: Date | null }> }
  > {
    checkList(list);
    const { items, tokens } = checkClaims(claims);
    const o = checkOptions('options', options);
    const tx = checkTx(o.tx);
    if (o.strict !== undefined && typeof o.strict !== 'boolean') {
      throw new ValidationError('options.strict', `must be a boolean, got ${describe(o.strict)}`);
    }
    if (items.length === 0) return { count: 0, stale: [], rows: [] };
    const apply = async (q: Queryable) => {
      const { rows } = await q.query<{ item: string; dead?: boolean; run_at?: Date | null }>(sql, [
        list,
        items,
        tokens,
        ...extra,
      ]);
      const applied = new Set(rows.map((r) => r.item));
      const stale = items.filter((i) => !applied.has(i));
      if (o.strict && stale.length > 0) {
        throw new StaleTokenError(
          `${stale.length} of ${items.length} claims are stale (first: ${JSON.stringify(stale[0]!.slice(0, 100))}); nothing was applied`,
        );
      }
      return { count: applied.size, stale, rows };
    };
    // strict needs all-or-nothing: run it in a transaction (a savepoint inside the caller's).
    return o.strict ? this.run(tx, (q) => withTransaction(q, apply)) : this.run(tx, apply);
  }

  /** Runs `items` through a one-array statement in chunks, all inside one transaction; sums rowCount. */
  private chunked(
    tx: Queryable | undefined,
    list: string,
    items: string[],
    sql: string,
  ): Promise<number> {
    return this.run(tx, async (q) => {
      const once = async (on: Queryable, chunk: string[]) =>
        (await on.query(sql, [list, chunk])).rowCount ?? 0;
      if (items.length <= CHUNK_ITEMS) return once(q, items);
      return withTransaction(q, async (t) => {
        let n = 0;
        for (let i = 0; i < items.length; i += CHUNK_ITEMS)
          n += await once(t, items.slice(i, i + CHUNK_ITEMS));
        return n;
      });
    });
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

function toClaims(rows: ClaimRow[]): Claim[] {
  const out: Claim[] = [];
  for (const r of rows) {
    // A row without a token was retired as dead by this claim.
    if (r.token !== null && r.run_at !== null) {
      out.push({ item: r.item, token: r.token, attempts: r.attempts ?? 0, leaseUntil: r.run_at });
    }
  }
  return out;
}

function buildSql(schema: string) {
  const s = quoteIdent(schema);
  const t = `${s}.list_items`;
  const seq = `'${`${s}.list_token_seq`.replaceAll("'", "''")}'::regclass`;
  const leaseEnd = `statement_timestamp() + $3::float8 * interval '1 millisecond'`;
  // The claim, parameterized by the positions of (list, limit, leaseMs, maxAttempts).
  const claimCtes = (p: { list: string; limit: string; lease: string; max: string }) => `
    cand AS (
      SELECT item FROM ${t}
      WHERE list = ${p.list}::text AND run_at <= statement_timestamp()
      ORDER BY run_at
      LIMIT ${p.limit}::int
      FOR UPDATE SKIP LOCKED
    ),
    tok AS (SELECT nextval(${seq}) AS token),
    claimed AS (
      UPDATE ${t} AS i SET
        -- A token still set on a claimable row means its lease expired: that was an attempt.
        attempts = i.attempts + (i.token IS NOT NULL)::int,
        token = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= ${p.max}::int THEN NULL ELSE tok.token END,
        run_at = CASE WHEN i.attempts + (i.token IS NOT NULL)::int >= ${p.max}::int THEN NULL
                      ELSE statement_timestamp() + ${p.lease}::float8 * interval '1 millisecond' END
      FROM cand, tok
      WHERE i.list = ${p.list}::text AND i.item = cand.item
      RETURNING i.item, i.attempts, i.token::text AS token, i.run_at
    )`;
  const byToken = `FROM unnest($2::text[], $3::bigint[]) AS d(item, token)
      WHERE i.list = $1::text AND i.item = d.item AND i.token = d.token`;
  return {
    insert: `INSERT INTO ${t} (list, item) SELECT $1::text, unnest($2::text[]) ON CONFLICT DO NOTHING`,
    getOne: `SELECT attempts FROM ${t} WHERE list = $1::text AND item = $2::text`,
    page: `SELECT item, attempts FROM ${t} WHERE list = $1::text AND item > $2::text ORDER BY item LIMIT $3::int`,
    increment: `UPDATE ${t} SET attempts = attempts + 1 WHERE list = $1::text AND item = ANY($2::text[])`,
    delete: `DELETE FROM ${t} WHERE list = $1::text AND item = ANY($2::text[])`,
    count: `SELECT count(*) AS n FROM ${t} WHERE list = $1::text`,
    lists: `SELECT list, count(*) AS size FROM ${t} GROUP BY list ORDER BY list`,
    nuke: `DELETE FROM ${t}`,
    claim: `WITH ${claimCtes({ list: '$1', limit: '$2', lease: '$3', max: '$4' })}
      SELECT true AS claimed, item, attempts, token, run_at FROM claimed`,
    completeAndClaim: `WITH done AS (
        DELETE FROM ${t} AS i USING unnest($2::text[], $3::bigint[]) AS d(item, token)
        WHERE i.list = $1::text AND i.item = d.item AND i.token = d.token
        RETURNING i.item
      ),
      ${claimCtes({ list: '$1', limit: '$4', lease: '$5', max: '$6' })}
      SELECT true AS claimed, item, attempts, token, run_at FROM claimed
      UNION ALL
      SELECT false, item, NULL, NULL, NULL FROM done`,
    complete: `DELETE FROM ${t} AS i USING unnest($2::text[], $3::bigint[]) AS d(item, token)
      WHERE i.list = $1::text AND i.item = d.item AND i.token = d.token RETURNING i.item`,
    release: `UPDATE ${t} AS i SET token = NULL, run_at = '-infinity' ${byToken} RETURNING i.item`,
    fail: `UPDATE ${t} AS i SET attempts = i.attempts + 1, token = NULL,
        run_at = CASE WHEN i.attempts + 1 >= $5::int THEN NULL
                      WHEN $4::float8 <= 0 THEN '-infinity'::timestamptz
                      ELSE statement_timestamp() + $4::float8 * interval '1 millisecond' END
      ${byToken} RETURNING i.item, i.run_at IS NULL AS dead`,
    extend: `UPDATE ${t} AS i SET run_at = ${leaseEnd.replace('$3', '$4')}
      ${byToken} AND i.run_at IS NOT NULL RETURNING i.item, i.run_at`,
    deadPage: `SELECT item, attempts FROM ${t}
      WHERE list = $1::text AND run_at IS NULL AND item > $2::text ORDER BY item LIMIT $3::int`,
    requeueAll: `UPDATE ${t} SET attempts = 0, token = NULL, run_at = '-infinity' WHERE list = $1::text AND run_at IS NULL`,
    requeue: `UPDATE ${t} SET attempts = 0, token = NULL, run_at = '-infinity'
      WHERE list = $1::text AND item = ANY($2::text[]) AND run_at IS NULL`,
  };
}
