import { Coalescer } from '../core/index.js';
import { coerceError, ValidationError } from '../core/index.js';
import { checkSchemaName, DEFAULT_SCHEMA } from '../core/index.js';
import { StatementRunner, withRetry, type RetryOptions } from '../core/index.js';
import type { Queryable } from '../core/index.js';
import {
  ALGORITHM_CODE,
  decideSql,
  hasBurst,
  setDecideSql,
  RATE_LIMIT_ALGORITHMS,
  stateTable,
  type RateLimitAlgorithm,
} from './rate-limit-algorithms.js';
import { preparedQuery } from '../core/index.js';
import { checkInt, checkOptions, checkText, describe, optionalInt } from '../core/index.js';
import {
  checkBoolean,
  checkOneOf,
  checkQueryable,
  checkTx,
  frozen,
  optionsTx,
} from '../core/index.js';

/** Largest limiter name, in UTF-8 bytes. */
export const MAX_LIMITER_NAME_BYTES = 128;
/** Largest rate-limit key, in UTF-8 bytes. */
export const MAX_RATE_LIMIT_KEY_BYTES = 512;
/** Most quotas on one limiter. */
export const MAX_QUOTAS = 8;
/** Largest `limit`, `burst` and `cost`. */
export const MAX_RATE_LIMIT_UNITS = 1_000_000_000;
/** Longest `periodMs`: 366 days. */
export const MAX_PERIOD_MS = 366 * 24 * 3600 * 1000;
/** Algorithm of a limiter that names none. */
export const DEFAULT_RATE_LIMIT_ALGORITHM: RateLimitAlgorithm = 'fixed-window';
/** Name of a limiter that names none. */
export const DEFAULT_LIMITER_NAME = 'default';
/** Default of {@link RateLimiterOptions.maxBatch}. */
export const DEFAULT_RATE_LIMIT_MAX_BATCH = 500;
/** Default of {@link RateLimiterOptions.maxInFlight}. */
export const DEFAULT_RATE_LIMIT_MAX_IN_FLIGHT = 4;

/** One quota: `limit` units per `periodMs`. */
export interface RateLimitQuota {
  /** Units allowed per period. Integer, 1 .. 1e9. */
  limit: number;
  /** Length of the period in milliseconds. Integer, 1 .. 366 days. */
  periodMs: number;
  /**
   * Most units taken at once (token bucket, leaky bucket, GCRA only). Integer, 1 .. 1e9.
   * Default `limit`. The fixed and sliding windows have no burst: their capacity is `limit`.
   */
  burst?: number;
}

export interface RateLimiterOptions {
  /** Algorithm of every quota. Default `'fixed-window'`. */
  algorithm?: RateLimitAlgorithm;
  /** Namespace of this limiter's keys: limiters with different names never share state. Default `'default'`. */
  name?: string;
  /** Single-quota shorthand: units per period (use either `limit`/`periodMs`/`burst` or `quotas`). */
  limit?: number;
  /** Single-quota shorthand: period in milliseconds. */
  periodMs?: number;
  /** Single-quota shorthand: burst (see {@link RateLimitQuota.burst}). */
  burst?: number;
  /** Several quotas decided all-or-nothing (for example 10 per second and 1000 per hour). At most 8. */
  quotas?: RateLimitQuota[];
  /** Schema of pgcoord's tables. Default `pgcoord`. */
  schema?: string;
  /**
   * Keep this limiter's state in an UNLOGGED table: no WAL and no fsync per decision, so faster,
   * but a crash (not a clean restart) empties the table and every key starts again with a full
   * quota; it is not copied to streaming replicas either. Default false.
   */
  unlogged?: boolean;
  /** Most decisions sent in one statement. Default 500. */
  maxBatch?: number;
  /** Decision statements in flight at once (connections used). Default 4: with durable commits, callers waiting for a free slot cost more latency than a few more statements cost CPU (measured at concurrency 16). Keep it below the pool size. */
  maxInFlight?: number;
  /**
   * Send decisions as named prepared statements on a `pg.Pool`, planned once per server
   * connection. Default true. Behind a transaction pooler that does not track prepared
   * statements (PgBouncer before 1.21, or without `max_prepared_statements`) the first clash
   * turns them off for that pool and the statement is re-sent unnamed; false never sends them.
   * Statements on a client (`tx`) are always unnamed.
   */
  preparedStatements?: boolean;
}

export interface ConsumeOptions {
  /** Units to take. Integer, 1 .. the smallest capacity of the limiter's quotas. Default 1. */
  cost?: number;
  /** Run the decision on this client (for example inside your transaction) instead of the limiter's queryable. */
  tx?: Queryable;
  /**
   * Decision time in milliseconds since the epoch, instead of the server clock. For tests and
   * replays only: mixing it with the server clock on one key gives meaningless results.
   */
  nowMs?: number;
}

/** The outcome of {@link RateLimiter.consume} or {@link RateLimiter.peek}. */
export interface RateLimitDecision {
  /** Whether the cost was (consume) or would be (peek) taken from every quota. */
  allowed: boolean;
  /** Units still available now, after this decision: the smallest over the quotas. */
  remaining: number;
  /** When denied, milliseconds until the same cost would be allowed (if nobody else consumes); 0 when allowed. */
  retryAfterMs: number;
  /** Milliseconds until every quota of this key is back to full. */
  resetAfterMs: number;
}

interface ResolvedQuota {
  limit: number;
  periodMs: number;
  burst: number;
}

interface ResolvedOptions {
  algorithm: RateLimitAlgorithm;
  name: string;
  quotas: ResolvedQuota[];
  schema: string;
  unlogged: boolean;
  maxBatch: number;
  maxInFlight: number;
  preparedStatements: boolean;
}

interface Item {
  key: string;
  cost: number;
  nowMs: number | undefined;
}

interface DecisionRow {
  item: number;
  allowed: boolean;
  remaining: number;
  retry_after_ms: number;
  reset_after_ms: number;
}

/**
 * A rate limiter decided in PostgreSQL on the server clock. Concurrent `consume` calls are
 * coalesced into one statement (group commit) that decides them in order, exactly, even when
 * one key appears several times in a batch; every algorithm is exact under contention.
 *
 * @example
 * const limiter = new RateLimiter(pool, { algorithm: 'token-bucket', limit: 10, periodMs: 1000, burst: 20 });
 * const { allowed, retryAfterMs } = await limiter.consume(`user:${id}`);
 */
export class RateLimiter {
  /** Resolved options (defaults applied). */
  readonly options: Readonly<ResolvedOptions>;
  private readonly q: Queryable;
  /** Migrate once, run, convert the error (the runner's hot-path `exec`). */
  private readonly statements: StatementRunner;
  private readonly coalescer: Coalescer<Item, RateLimitDecision>;
  private readonly sql: string;
  private readonly setSql: string;
  private readonly capacity: number;

  constructor(q: Queryable, options: RateLimiterOptions = {}) {
    this.q = checkQueryable('queryable', q);
    this.options = resolveRateLimiterOptions(options);
    this.statements = new StatementRunner(this.q, this.options.schema);
    this.sql = decideSql(this.options.schema);
    this.setSql = setDecideSql(this.options.schema, this.options.unlogged, this.options.algorithm);
    this.capacity = Math.min(...this.options.quotas.map((x) => x.burst));
    this.coalescer = new Coalescer((items) => this.flush(items), {
      maxBatch: this.options.maxBatch,
      maxInFlight: this.options.maxInFlight,
    });
  }

  /**
   * Takes `cost` units (default 1) from every quota of `key`, or from none when any quota lacks
   * them. One statement on the server clock; concurrent calls share one round trip.
   * @throws ValidationError for a bad key or cost (including a cost above the capacity: it could never be allowed).
   */
  async consume(key: string, options?: ConsumeOptions): Promise<RateLimitDecision> {
    const item = this.checkItem(key, options);
    const tx = checkTx(options?.tx);
    if (tx !== undefined) {
      return (await this.statements.exec(tx, (q) => this.decide(q, [item], true)))[0]!;
    }
    try {
      return await this.coalescer.submit(item);
    } catch (err) {
      throw coerceError(err);
    }
  }

  /** What {@link consume} would answer for `cost` now, without taking anything. */
  async peek(key: string, options?: ConsumeOptions): Promise<RateLimitDecision> {
    const item = this.checkItem(key, options);
    const tx = checkTx(options?.tx);
    return (await this.statements.exec(tx, (q) => this.decide(q, [item], false)))[0]!;
  }

  /** Forgets `key`'s state in every quota: its next call starts full. Returns whether state existed. */
  async reset(key: string, options: { tx?: Queryable } = {}): Promise<boolean> {
    checkText('key', key, { maxBytes: MAX_RATE_LIMIT_KEY_BYTES });
    const tx = optionsTx(options);
    const keys = this.options.quotas.map((_, i) => this.rowKey(i, key));
    return this.statements.exec(tx, async (q) => {
      const res = await q.query(
        `DELETE FROM ${stateTable(this.options.schema, this.options.unlogged)} WHERE key = ANY ($1::text[])`,
        [keys],
      );
      return (res.rowCount ?? 0) > 0;
    });
  }

  /**
   * Deletes up to `limit` (default 1000) rows whose state is back to full, of every limiter
   * sharing this limiter's table (durable or UNLOGGED). Returns how many were removed. The table
   * has no expiry index (it would make every decision a non-HOT update): run it now and then.
   */
  async purgeExpired(options: { limit?: number } = {}): Promise<number> {
    checkOptions('options', options);
    const limit = optionalInt('options.limit', options.limit, { min: 1, max: 100_000 }, 1000);
    const table = stateTable(this.options.schema, this.options.unlogged);
    return this.statements.exec(undefined, async (q) => {
      const res = await q.query(
        `DELETE FROM ${table} WHERE key IN (
           SELECT key FROM ${table}
            WHERE expires_ms < extract(epoch FROM clock_timestamp())::float8 * 1000
            LIMIT $1 FOR UPDATE SKIP LOCKED)`,
        [limit],
      );
      return res.rowCount ?? 0;
    });
  }

  private checkItem(key: string, options: ConsumeOptions | undefined): Item {
    checkText('key', key, { maxBytes: MAX_RATE_LIMIT_KEY_BYTES });
    const o = checkOptions('options', options);
    const cost = optionalInt('options.cost', o.cost, { min: 1, max: MAX_RATE_LIMIT_UNITS }, 1);
    if (cost > this.capacity) {
      const i = this.options.quotas.findIndex((x) => x.burst === this.capacity);
      throw new ValidationError(
        'options.cost',
        `${cost} is larger than the capacity ${this.capacity} of quota ${i} (${this.options.algorithm}${
          hasBurst(this.options.algorithm) ? ', its burst' : ', its limit'
        }): such a request could never be allowed`,
      );
    }
    let nowMs: number | undefined;
    if (o.nowMs !== undefined) {
      if (typeof o.nowMs !== 'number' || !Number.isFinite(o.nowMs) || o.nowMs < 0) {
        throw new ValidationError(
          'options.nowMs',
          `must be a finite number >= 0, got ${describe(o.nowMs)}`,
        );
      }
      nowMs = o.nowMs;
    }
    return { key, cost, nowMs };
  }

  private rowKey(quota: number, key: string): string {
    // Length-prefixed, so no name/key pair can collide with another.
    return `${this.options.name.length}:${this.options.name}:${quota}:${key}`;
  }

  private async flush(items: Item[]): Promise<Array<RateLimitDecision | Error>> {
    await this.statements.ready();
    // Items with an explicit time (tests) are decided per distinct time, in order.
    if (items.every((x) => x.nowMs === items[0]!.nowMs)) {
      return this.decideRetrying(items);
    }
    const out: RateLimitDecision[] = new Array<RateLimitDecision>(items.length);
    const groups = new Map<number | undefined, number[]>();
    items.forEach((x, i) => {
      const g = groups.get(x.nowMs);
      if (g) g.push(i);
      else groups.set(x.nowMs, [i]);
    });
    for (const idx of groups.values()) {
      const res = await this.decideRetrying(idx.map((i) => items[i]!));
      idx.forEach((i, j) => (out[i] = res[j]!));
    }
    return out;
  }

  private async decideRetrying(items: Item[]): Promise<RateLimitDecision[]> {
    // Rows are locked in one key order, so deadlocks should not happen; if one ever does (rows
    // deleted and re-created between the two phases), the batch simply runs again, through the
    // one retry policy (conflicts only). The first try runs outside it: nothing extra per call.
    try {
      return await this.decide(this.q, items, true);
    } catch (err) {
      return withRetry(
        (attempt) => (attempt === 1 ? Promise.reject(err) : this.decide(this.q, items, true)),
        DECIDE_RETRY,
      );
    }
  }

  private async decide(q: Queryable, items: Item[], write: boolean): Promise<RateLimitDecision[]> {
    const { quotas, unlogged, algorithm, preparedStatements } = this.options;
    if (write && quotas.length === 1 && sameCostPerKey(items)) {
      // Common case: one set-based statement, one write per key (see setDecideSql).
      const quota = quotas[0]!;
      const res = await preparedQuery<DecisionRow>(
        q,
        this.setSql,
        [
          items.map((x) => this.rowKey(0, x.key)),
          items.map((x) => x.cost),
          items[0]!.nowMs ?? null,
          quota.limit,
          quota.periodMs,
          quota.burst,
        ],
        preparedStatements,
      );
      return toDecisions(res.rows, items.length);
    }
    const keys: string[] = [];
    const index = new Map<string, number>();
    const slots: number[] = [];
    for (const item of items) {
      for (let qi = 0; qi < quotas.length; qi++) {
        const rk = this.rowKey(qi, item.key);
        let s = index.get(rk);
        if (s === undefined) {
          keys.push(rk);
          s = keys.length;
          index.set(rk, s);
        }
        slots.push(s);
      }
    }
    const res = await preparedQuery<DecisionRow>(
      q,
      this.sql,
      [
        unlogged,
        write,
        ALGORITHM_CODE[algorithm],
        quotas.map((x) => x.limit),
        quotas.map((x) => x.periodMs),
        quotas.map((x) => x.burst),
        keys,
        slots,
        items.map((x) => x.cost),
        items[0]!.nowMs ?? null,
      ],
      preparedStatements,
    );
    return toDecisions(res.rows, items.length);
  }
}

function toDecisions(rows: DecisionRow[], count: number): RateLimitDecision[] {
  const out = new Array<RateLimitDecision>(count);
  for (const r of rows) {
    out[r.item - 1] = {
      allowed: r.allowed,
      remaining: r.remaining,
      // A denied call is never told to retry at once: at an explicit time it would be denied again.
      retryAfterMs: r.allowed ? 0 : Math.max(1, wholeMs(r.retry_after_ms)),
      resetAfterMs: wholeMs(r.reset_after_ms),
    };
  }
  return out;
}

/**
 * Milliseconds rounded up, after rounding to the microsecond (the server clock's resolution):
 * a whole number of ms computed with floating error (1926.0000000000002) stays 1926 instead of
 * becoming 1927, and nothing finer than the clock can tell is lost.
 */
function wholeMs(ms: number): number {
  return Math.ceil(Math.round(ms * 1000) / 1000);
}

/** Whether every item of a key has the same cost (the set-based statement's condition). */
function sameCostPerKey(items: Item[]): boolean {
  if (items.length === 1) return true;
  const cost = new Map<string, number>();
  for (const x of items) {
    const c = cost.get(x.key);
    if (c === undefined) cost.set(x.key, x.cost);
    else if (c !== x.cost) return false;
  }
  return true;
}

/** Defaults and validation of {@link RateLimiterOptions}, once per limiter: frozen. */
function resolveRateLimiterOptions(options: RateLimiterOptions): ResolvedOptions {
  const o = checkOptions('options', options);
  const algorithm = checkOneOf(
    'options.algorithm',
    o.algorithm,
    RATE_LIMIT_ALGORITHMS,
    DEFAULT_RATE_LIMIT_ALGORITHM,
  );
  const name = checkText('options.name', o.name ?? DEFAULT_LIMITER_NAME, {
    maxBytes: MAX_LIMITER_NAME_BYTES,
  });
  const schema = checkSchemaName(o.schema ?? DEFAULT_SCHEMA);
  let raw: RateLimitQuota[];
  if (o.quotas !== undefined) {
    if (o.limit !== undefined || o.periodMs !== undefined || o.burst !== undefined) {
      throw new ValidationError(
        'options.quotas',
        'give either quotas or limit/periodMs/burst, not both',
      );
    }
    if (!Array.isArray(o.quotas) || o.quotas.length === 0 || o.quotas.length > MAX_QUOTAS) {
      throw new ValidationError('options.quotas', `must be an array of 1 to ${MAX_QUOTAS} quotas`);
    }
    raw = o.quotas;
  } else {
    raw = [{ limit: o.limit as number, periodMs: o.periodMs as number, burst: o.burst }];
  }
  const quotas = raw.map((x, i): ResolvedQuota => {
    const arg = o.quotas !== undefined ? `options.quotas[${i}]` : 'options';
    checkOptions(arg, x);
    const limit = checkInt(`${arg}.limit`, x.limit, { min: 1, max: MAX_RATE_LIMIT_UNITS });
    const periodMs = checkInt(`${arg}.periodMs`, x.periodMs, { min: 1, max: MAX_PERIOD_MS });
    if (!hasBurst(algorithm) && x.burst !== undefined) {
      throw new ValidationError(`${arg}.burst`, `${algorithm} has no burst; its capacity is limit`);
    }
    const burst = optionalInt(
      `${arg}.burst`,
      x.burst,
      { min: 1, max: MAX_RATE_LIMIT_UNITS },
      limit,
    );
    return { limit, periodMs, burst };
  });
  return frozen({
    algorithm,
    name,
    quotas,
    schema,
    unlogged: checkBoolean('options.unlogged', o.unlogged, false),
    maxBatch: optionalInt(
      'options.maxBatch',
      o.maxBatch,
      { min: 1, max: 10_000 },
      DEFAULT_RATE_LIMIT_MAX_BATCH,
    ),
    maxInFlight: optionalInt(
      'options.maxInFlight',
      o.maxInFlight,
      { min: 1, max: 64 },
      DEFAULT_RATE_LIMIT_MAX_IN_FLIGHT,
    ),
    preparedStatements: checkBoolean('options.preparedStatements', o.preparedStatements, true),
  });
}

/** A decision that lost a deadlock or serialization race runs again: 3 tries, no wait (as before). */
const DECIDE_RETRY: Readonly<RetryOptions> = Object.freeze({
  retries: 2,
  baseMs: 0,
  maxMs: 0,
  retryOn: Object.freeze(['conflict'] as const),
});
