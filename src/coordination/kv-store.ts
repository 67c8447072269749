import { EventEmitter } from 'node:events';
import { Coalescer } from '../core/index.js';
import { ValidationError, type PgcoordError } from '../core/index.js';
import {
  Lifecycle,
  reportError,
  type LifecycleSignals,
  type Logger,
  type LoggerInput,
  type Service,
} from '../core/index.js';
import { checkSchemaName, DEFAULT_SCHEMA, quoteIdent } from '../core/index.js';
import { StatementRunner } from '../core/index.js';
import type { Queryable } from '../core/index.js';
import { checkBoolean, preparedQuery } from '../core/index.js';
import {
  checkInt,
  checkOptions,
  checkText,
  checkTextArray,
  describe,
  optionalInt,
  toJsonText,
} from '../core/index.js';
import { checkQueryable, checkTx } from '../core/index.js';
import { resolveWarnLogger } from './warn-logger.js';

/** Largest key, in UTF-8 bytes (a B-tree entry must fit in a third of a page). */
export const MAX_KV_KEY_BYTES = 1024;
/** Largest value, in UTF-8 bytes: 1 MiB. */
export const MAX_KV_VALUE_BYTES = 1024 * 1024;
/** Most keys in one getMany / setMany / deleteMany call. */
export const MAX_KV_BATCH = 10_000;
/** Longest `ttlMs`: 100 years. */
export const MAX_TTL_MS = 100 * 365 * 24 * 3600 * 1000;

export interface KvStoreOptions {
  /** Schema of pgcoord's tables. Default `pgcoord`. */
  schema?: string;
  /** Interval of the background reaper started by {@link KvStore.start}, in ms. Default 60000. */
  reapIntervalMs?: number;
  /** Most expired rows one reaper pass deletes. Default 1000. */
  reapBatch?: number;
  /**
   * Receives reaper failures at `warn` when nobody listens to `'error'`: pino (`warn(obj, msg)`),
   * a function of a log entry, or the earlier `{ warn(message, fields) }`, still called that way.
   */
  logger?: LoggerInput;
  /**
   * Send get/set/checkAndSet as named prepared statements on a `pg.Pool`, planned once per server
   * connection. Default true. Behind a transaction pooler that does not track prepared
   * statements (PgBouncer before 1.21, or without `max_prepared_statements`) the first clash
   * turns them off for that pool and the statement is re-sent unnamed; false never sends them.
   * Statements on a client (`tx`) are always unnamed.
   */
  preparedStatements?: boolean;
}

/** Options of a write. */
export interface KvWriteOptions {
  /** Expire the value this many milliseconds after the write (server clock). Default: never. */
  ttlMs?: number;
  /** Run the statement on this client (for example inside your transaction). */
  tx?: Queryable;
}

/** Options of a read. */
export interface KvReadOptions {
  /** Run the statement on this client (for example inside your transaction). */
  tx?: Queryable;
}

/** One entry of {@link KvStore.setMany}. */
export interface KvEntry {
  key: string;
  value: string;
  /** Milliseconds until expiry; omitted = never. */
  ttlMs?: number;
}

/** Events of a {@link KvStore}. */
export interface KvStoreEvents {
  /** A reaper pass removed `count` expired rows. */
  purged: [count: number];
  /** A reaper pass failed; the reaper keeps running. */
  error: [err: PgcoordError];
}

interface UpdateItem {
  key: string;
  fn: (current: string | undefined) => string;
  ttlMs: number | undefined;
}

/**
 * Strings under string keys with an optional time to live, decided on the server clock: a read
 * never returns an expired value, whoever's clock is wrong. Compare-and-set is one statement.
 *
 * @example
 * const kv = new KvStore(pool);
 * await kv.set('greeting', 'hello', { ttlMs: 60_000 });
 * await kv.checkAndSet('greeting', 'hello', 'bonjour'); // true
 */
export class KvStore extends EventEmitter<KvStoreEvents> implements Service {
  private readonly q: Queryable;
  private readonly schema: string;
  /** Migrate once, run, convert the error (the runner's hot-path `exec`). */
  private readonly statements: StatementRunner;
  private readonly table: string;
  private readonly reapIntervalMs: number;
  private readonly reapBatch: number;
  /** The caller's logger, its `error` routed to `warn`: the level reaper failures always had. */
  private readonly logger: Logger;
  private readonly prepare: boolean;
  private readonly updates: Coalescer<UpdateItem, string>;
  private timer: NodeJS.Timeout | undefined;
  private reaping: Promise<void> | undefined;
  private readonly lifecycle = new Lifecycle(
    { name: 'pgcoord kv reaper' },
    {
      start: () => this.schedule(),
      stop: async () => {
        if (this.timer) clearTimeout(this.timer);
        this.timer = undefined;
        await this.reaping;
      },
    },
  );
  /** Test signals of the reaper: `started`, `stopped`. */
  readonly signals: LifecycleSignals = this.lifecycle.signals;

  constructor(q: Queryable, options: KvStoreOptions = {}) {
    super();
    const o = checkOptions('options', options);
    this.q = checkQueryable('queryable', q);
    this.schema = checkSchemaName(o.schema ?? DEFAULT_SCHEMA);
    this.statements = new StatementRunner(this.q, this.schema);
    this.table = `${quoteIdent(this.schema)}.kv`;
    this.reapIntervalMs = optionalInt(
      'options.reapIntervalMs',
      o.reapIntervalMs,
      { min: 10, max: 86_400_000 },
      60_000,
    );
    this.reapBatch = optionalInt('options.reapBatch', o.reapBatch, { min: 1, max: 100_000 }, 1000);
    this.logger = resolveWarnLogger(o.logger);
    this.prepare = checkBoolean('options.preparedStatements', o.preparedStatements, true);
    this.updates = new Coalescer((items) => this.flushUpdates(items), {
      maxBatch: 1000,
      maxInFlight: 1,
    });
  }

  /** The live value of `key`, or undefined when it is missing or expired. */
  async get(key: string, options: KvReadOptions = {}): Promise<string | undefined> {
    checkKey('key', key);
    checkOptions('options', options);
    return this.run(options.tx, async (q) => {
      const { rows } = await preparedQuery<{ value: string }>(
        q,
        `SELECT value FROM ${this.table}
          WHERE key = $1::text AND (expires_at IS NULL OR expires_at > clock_timestamp())`,
        [key],
        this.prepare,
      );
      return rows[0]?.value;
    });
  }

  /** Stores `value` under `key`, replacing any value; `ttlMs` sets its expiry (default never). */
  async set(key: string, value: string, options: KvWriteOptions = {}): Promise<void> {
    checkKey('key', key);
    checkValue('value', value);
    const ttlMs = checkTtl(checkOptions('options', options).ttlMs);
    await this.run(options.tx, async (q) => {
      await preparedQuery(
        q,
        `INSERT INTO ${this.table} (key, value, expires_at)
         VALUES ($1::text, $2::text, clock_timestamp() + $3::float8 * interval '1 millisecond')
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at`,
        [key, value, ttlMs ?? null],
        this.prepare,
      );
    });
  }

  /** Deletes `key`. Returns whether a live (unexpired) value was deleted. */
  async delete(key: string, options: KvReadOptions = {}): Promise<boolean> {
    checkKey('key', key);
    checkOptions('options', options);
    return this.run(options.tx, async (q) => {
      const { rows } = await q.query<{ live: boolean }>(
        `DELETE FROM ${this.table} WHERE key = $1::text
         RETURNING (expires_at IS NULL OR expires_at > clock_timestamp()) AS live`,
        [key],
      );
      return rows[0]?.live === true;
    });
  }

  /**
   * Sets `key` to `next` only if its live value is `expected` (`undefined`: only if it is
   * missing or expired). One statement; a mismatch returns false, it is not an error. Under
   * contention exactly one of the writers expecting the same value wins.
   */
  async checkAndSet(
    key: string,
    expected: string | undefined,
    next: string,
    options: KvWriteOptions = {},
  ): Promise<boolean> {
    checkKey('key', key);
    if (expected !== undefined) checkValue('expected', expected);
    checkValue('next', next);
    const ttlMs = checkTtl(checkOptions('options', options).ttlMs);
    return this.run(options.tx, async (q) => {
      const exp = `clock_timestamp() + $3::float8 * interval '1 millisecond'`;
      const res =
        expected === undefined
          ? await preparedQuery(
              q,
              `INSERT INTO ${this.table} AS t (key, value, expires_at) VALUES ($1::text, $2::text, ${exp})
               ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
               WHERE t.expires_at IS NOT NULL AND t.expires_at <= clock_timestamp()`,
              [key, next, ttlMs ?? null],
              this.prepare,
            )
          : await preparedQuery(
              q,
              `UPDATE ${this.table} SET value = $2::text, expires_at = ${exp}
                WHERE key = $1::text AND value = $4::text
                  AND (expires_at IS NULL OR expires_at > clock_timestamp())`,
              [key, next, ttlMs ?? null, expected],
              this.prepare,
            );
      return (res.rowCount ?? 0) === 1;
    });
  }

  /**
   * Replaces the value of `key` by `fn(current)` without losing a concurrent update: the new
   * value is written only if the value `fn` saw is still the live one, else `fn` runs again on
   * the newer value (so `fn` must be pure). Concurrent updates of one key in this process are
   * combined: `fn`s run one after another on the latest value and one compare-and-set commits
   * them all, which keeps updates per second high under contention. Returns the value written.
   * `ttlMs` applies to the value written (the last caller's in a combined batch).
   */
  async update(
    key: string,
    fn: (current: string | undefined) => string,
    options: { ttlMs?: number } = {},
  ): Promise<string> {
    checkKey('key', key);
    if (typeof fn !== 'function')
      throw new ValidationError('fn', `must be a function, got ${describe(fn)}`);
    const ttlMs = checkTtl(checkOptions('options', options).ttlMs);
    // Database failures arrive already coerced; an error thrown by `fn` reaches its caller as is.
    return this.updates.submit({ key, fn, ttlMs });
  }

  /** Live values of many keys in one round trip: a Map holding only the keys that are live. */
  async getMany(
    keys: readonly string[],
    options: KvReadOptions = {},
  ): Promise<Map<string, string>> {
    checkKeys('keys', keys);
    checkOptions('options', options);
    return this.run(options.tx, async (q) => {
      const { rows } = await q.query<{ key: string; value: string }>(
        `SELECT key, value FROM ${this.table}
          WHERE key = ANY ($1::text[]) AND (expires_at IS NULL OR expires_at > clock_timestamp())`,
        [keys],
      );
      return new Map(rows.map((r) => [r.key, r.value]));
    });
  }

  /**
   * Stores many entries in one statement, atomically (all or none). When a key appears twice,
   * the last entry wins.
   */
  async setMany(entries: readonly KvEntry[], options: KvReadOptions = {}): Promise<void> {
    if (!Array.isArray(entries)) {
      throw new ValidationError(
        'entries',
        `must be an array of {key, value, ttlMs?}, got ${describe(entries)}`,
      );
    }
    if (entries.length > MAX_KV_BATCH) {
      throw new ValidationError(
        'entries',
        `has ${entries.length} entries; the limit is ${MAX_KV_BATCH} per call`,
      );
    }
    checkOptions('options', options);
    const last = new Map<string, KvEntry>();
    entries.forEach((e, i) => {
      checkOptions(`entries[${i}]`, e);
      checkKey(`entries[${i}].key`, e.key);
      checkValue(`entries[${i}].value`, e.value);
      checkTtl(e.ttlMs, `entries[${i}].ttlMs`);
      last.delete(e.key);
      last.set(e.key, e);
    });
    if (last.size === 0) return;
    const list = [...last.values()];
    await this.run(options.tx, async (q) => {
      await q.query(
        `INSERT INTO ${this.table} (key, value, expires_at)
         SELECT k, v, clock_timestamp() + t * interval '1 millisecond'
           FROM unnest($1::text[], $2::text[], $3::float8[]) AS u(k, v, t)
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at`,
        [list.map((e) => e.key), list.map((e) => e.value), list.map((e) => e.ttlMs ?? null)],
      );
    });
  }

  /** Deletes many keys in one statement; returns how many live values were deleted. */
  async deleteMany(keys: readonly string[], options: KvReadOptions = {}): Promise<number> {
    checkKeys('keys', keys);
    checkOptions('options', options);
    return this.run(options.tx, async (q) => {
      const { rows } = await q.query<{ n: number }>(
        `WITH d AS (DELETE FROM ${this.table} WHERE key = ANY ($1::text[])
                    RETURNING (expires_at IS NULL OR expires_at > clock_timestamp()) AS live)
         SELECT count(*) FILTER (WHERE live)::int AS n FROM d`,
        [keys],
      );
      return rows[0]?.n ?? 0;
    });
  }

  /** The live value of `key` parsed as JSON, or undefined. */
  async getJson<T = unknown>(key: string, options: KvReadOptions = {}): Promise<T | undefined> {
    const raw = await this.get(key, options);
    return raw === undefined ? undefined : (JSON.parse(raw) as T);
  }

  /**
   * Stores `JSON.stringify(value)` under `key`. A value JSON cannot carry (undefined, a function,
   * a cycle, a BigInt, NaN or ±Infinity anywhere in it) is refused with a ValidationError.
   */
  async setJson(key: string, value: unknown, options: KvWriteOptions = {}): Promise<void> {
    await this.set(key, toJsonText('value', value), options);
  }

  /**
   * Deletes up to `limit` (default 1000) expired rows, oldest expiry first, through the expiry
   * index; concurrent purgers skip each other's rows. Returns how many were removed.
   */
  async purgeExpired(options: { limit?: number; tx?: Queryable } = {}): Promise<number> {
    const o = checkOptions('options', options);
    const limit = optionalInt('options.limit', o.limit, { min: 1, max: 100_000 }, 1000);
    return this.run(o.tx, async (q) => {
      const res = await q.query(
        `DELETE FROM ${this.table} WHERE key IN (
           SELECT key FROM ${this.table}
            WHERE expires_at <= clock_timestamp()
            ORDER BY expires_at LIMIT $1::int FOR UPDATE SKIP LOCKED)`,
        [limit],
      );
      return res.rowCount ?? 0;
    });
  }

  /**
   * Starts the background reaper (every `reapIntervalMs`). Idempotent. The promise resolves at
   * once and never rejects, so `kv.start()` without `await` is fine.
   */
  start(): Promise<void> {
    return this.lifecycle.start();
  }

  /** Stops the reaper and waits for a pass in progress. Idempotent; fine before start(). */
  stop(): Promise<void> {
    return this.lifecycle.stop();
  }

  /** Same as {@link stop}: `await using kv = ...` stops the reaper at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.lifecycle.stop();
  }

  private schedule(): void {
    if (!this.lifecycle.active) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.reaping = this.reapOnce().finally(() => {
        this.reaping = undefined;
        this.schedule();
      });
    }, this.reapIntervalMs);
    this.timer.unref();
  }

  private async reapOnce(): Promise<void> {
    try {
      let total = 0;
      // Drain a backlog in a few passes, but never hog the pool.
      for (let pass = 0; pass < 10 && this.lifecycle.active; pass++) {
        const n = await this.purgeExpired({ limit: this.reapBatch });
        total += n;
        if (n < this.reapBatch) break;
      }
      if (total > 0) this.emit('purged', total);
    } catch (err) {
      reportError(this, this.logger, err, 'pgcoord kv reaper failed');
    }
  }

  private run<T>(tx: Queryable | undefined, fn: (q: Queryable) => Promise<T>): Promise<T> {
    return this.statements.exec(checkTx(tx), fn);
  }

  private flushUpdates(items: UpdateItem[]): Promise<Array<string | Error>> {
    return this.statements.exec(undefined, () => this.combineUpdates(items));
  }

  private async combineUpdates(items: UpdateItem[]): Promise<Array<string | Error>> {
    const byKey = new Map<string, number[]>();
    items.forEach((it, i) => {
      const g = byKey.get(it.key);
      if (g) g.push(i);
      else byKey.set(it.key, [i]);
    });
    const out = new Array<string | Error>(items.length);
    let pending = [...byKey.keys()];
    const current = new Map<string, string | undefined>();
    const { rows } = await this.q.query<{ key: string; value: string }>(
      `SELECT key, value FROM ${this.table}
        WHERE key = ANY ($1::text[]) AND (expires_at IS NULL OR expires_at > clock_timestamp())`,
      [pending],
    );
    for (const k of pending) current.set(k, undefined);
    for (const r of rows) current.set(r.key, r.value);
    for (let round = 0; pending.length > 0; round++) {
      // Run each key's fns in order on its latest value; one CAS per key commits them all.
      const plan = pending.map((key) => {
        let v = current.get(key);
        const results: Array<[number, string | Error]> = [];
        let ttl: number | undefined;
        let changed = false;
        for (const i of byKey.get(key)!) {
          try {
            const next = items[i]!.fn(v);
            if (typeof next !== 'string')
              throw new ValidationError('fn', `must return a string, got ${describe(next)}`);
            checkValue('fn()', next);
            v = next;
            ttl = items[i]!.ttlMs;
            changed = true;
            results.push([i, next]);
          } catch (err) {
            results.push([i, err instanceof Error ? err : new Error(String(err))]);
          }
        }
        return { key, expected: current.get(key), next: v, ttl, changed, results };
      });
      const writes = plan.filter((p) => p.changed);
      for (const p of plan.filter((x) => !x.changed)) for (const [i, r] of p.results) out[i] = r;
      if (writes.length === 0) break;
      const res = await this.q.query<{ idx: number; ok: boolean; current_value: string | null }>(
        `SELECT idx, ok, current_value FROM ${quoteIdent(this.schema)}.kv_swap($1::text[], $2::text[], $3::text[], $4::float8[])`,
        [
          writes.map((p) => p.key),
          writes.map((p) => p.expected ?? null),
          writes.map((p) => p.next as string),
          writes.map((p) => p.ttl ?? null),
        ],
      );
      const again: string[] = [];
      for (const r of res.rows) {
        const p = writes[r.idx - 1]!;
        if (r.ok) {
          for (const [i, v] of p.results) out[i] = v;
        } else {
          current.set(p.key, r.current_value ?? undefined);
          again.push(p.key);
        }
      }
      pending = again;
      if (round > 1000) throw new Error('kv update: too many compare-and-set rounds');
    }
    return out;
  }
}

function checkKey(argument: string, key: unknown): string {
  return checkText(argument, key, { maxBytes: MAX_KV_KEY_BYTES });
}

function checkValue(argument: string, value: unknown): string {
  return checkText(argument, value, { maxBytes: MAX_KV_VALUE_BYTES, allowEmpty: true });
}

function checkKeys(argument: string, keys: unknown): void {
  checkTextArray(argument, keys, { maxBytes: MAX_KV_KEY_BYTES, maxLength: MAX_KV_BATCH });
}

function checkTtl(ttlMs: unknown, argument = 'options.ttlMs'): number | undefined {
  return ttlMs === undefined ? undefined : checkInt(argument, ttlMs, { min: 1, max: MAX_TTL_MS });
}
