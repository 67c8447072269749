// Keys and limits of attempt lists (migration 0014): the stored settings of a list, their
// validation, and the statements that read and write them.
import {
  checkInt,
  checkOneOf,
  checkOptions,
  checkText,
  describe,
  quoteIdent,
  ValidationError,
  type Queryable,
} from '../core/index.js';
import {
  ALGORITHM_CODE,
  MAX_PERIOD_MS,
  MAX_RATE_LIMIT_UNITS,
  RATE_LIMIT_ALGORITHMS,
  type RateLimitAlgorithm,
} from '../coordination/index.js';
import { ATTEMPT_LIST_LIMITS } from './attempt-list-limits.js';

/** Most items of one key (per-key) or of one list (list-wide) leased at once that a limit may allow. */
export const MAX_LIST_CONCURRENCY = 10_000;
/** Longest key rule (a regular expression), in UTF-8 bytes. */
export const MAX_KEY_REGEX_BYTES = 1024;
/** Largest key weight (items a key gets per round-robin turn). */
export const MAX_KEY_WEIGHT = 1000;
/** Algorithm of a per-key rate that names none: one claim every periodMs / limit. */
export const DEFAULT_KEY_RATE_ALGORITHM: RateLimitAlgorithm = 'gcra';

/** A per-key rate: at most `limit` claims of one key per `periodMs`, on the server clock. */
export interface KeyRate {
  /** Claims per period. Integer, 1 .. 1e9. */
  limit: number;
  /** Length of the period in milliseconds. Integer, 1 .. 366 days. */
  periodMs: number;
  /**
   * One of the rate limiter's algorithms (see docs/coordination.md). Default `'gcra'`: one claim
   * every `periodMs / limit`, so no window of `periodMs` holds more than `limit` claims.
   */
  algorithm?: RateLimitAlgorithm;
  /**
   * Claims at once for `gcra`, `token-bucket` and `leaky-bucket`. Integer, 1 .. limit. Default
   * 1 (evenly spaced). A larger burst lets a window of `periodMs` hold up to `limit + burst - 1`.
   */
  burst?: number;
}

/** Limits of one list, stored with it: every worker, CLI and HTTP claim of the list obeys them. */
export interface ListLimits {
  /**
   * The key rule: a PostgreSQL regular expression (POSIX ARE, not JavaScript) applied on insert to
   * items given without a key; its first capture group (else the whole match) is the key. An item
   * it does not match gets no key.
   */
  keyRegex?: string;
  /** Limits of each key. */
  perKey?: {
    /** At most this many items of one key leased at once, fleet-wide. 1 .. 10,000. */
    concurrency?: number;
    /** At most `limit` claims of one key per `periodMs`. */
    rate?: KeyRate;
  };
  /** At most this many items of the whole list leased at once, fleet-wide. 1 .. 10,000. */
  concurrency?: number;
}

/** A list's limits as {@link AttemptList.limits} reads them (every default applied). */
export interface StoredListLimits {
  keyRegex?: string;
  perKey?: { concurrency?: number; rate?: Required<KeyRate> };
  concurrency?: number;
}

/** Options of a claim on a list with limits: tighter limits for this claim only. */
export interface ClaimLimits {
  /** Take an item of a key only while fewer than this many of its items are leased. */
  perKeyConcurrency?: number;
  /** Take items only while fewer than this many of the list's items are leased. */
  concurrency?: number;
}

const concurrencyRule = { min: 1, max: MAX_LIST_CONCURRENCY };

/** Validates {@link ListLimits}; returns them resolved (defaults applied), nothing else kept. */
export function checkLimits(value: unknown, argument = 'limits'): StoredListLimits {
  const o = checkOptions(argument, value as ListLimits);
  const out: StoredListLimits = {};
  if (o.keyRegex !== undefined) {
    out.keyRegex = checkText(`${argument}.keyRegex`, o.keyRegex, {
      maxBytes: MAX_KEY_REGEX_BYTES,
    });
  }
  if (o.perKey !== undefined) {
    const p = checkOptions(`${argument}.perKey`, o.perKey);
    const perKey: NonNullable<StoredListLimits['perKey']> = {};
    if (p.concurrency !== undefined) {
      perKey.concurrency = checkInt(
        `${argument}.perKey.concurrency`,
        p.concurrency,
        concurrencyRule,
      );
    }
    if (p.rate !== undefined) perKey.rate = checkRate(p.rate, `${argument}.perKey.rate`);
    if (perKey.concurrency !== undefined || perKey.rate !== undefined) out.perKey = perKey;
  }
  if (o.concurrency !== undefined) {
    out.concurrency = checkInt(`${argument}.concurrency`, o.concurrency, concurrencyRule);
  }
  return out;
}

function checkRate(value: unknown, argument: string): Required<KeyRate> {
  const r = checkOptions(argument, value as KeyRate);
  const limit = checkInt(`${argument}.limit`, r.limit, { min: 1, max: MAX_RATE_LIMIT_UNITS });
  const periodMs = checkInt(`${argument}.periodMs`, r.periodMs, { min: 1, max: MAX_PERIOD_MS });
  const algorithm = checkOneOf(
    `${argument}.algorithm`,
    r.algorithm,
    RATE_LIMIT_ALGORITHMS,
    DEFAULT_KEY_RATE_ALGORITHM,
  );
  const windowed = algorithm === 'fixed-window' || algorithm === 'sliding-window';
  if (windowed && r.burst !== undefined) {
    throw new ValidationError(`${argument}.burst`, `has no meaning for ${algorithm}`);
  }
  const burst = windowed
    ? limit
    : r.burst === undefined
      ? 1
      : checkInt(`${argument}.burst`, r.burst, { min: 1, max: limit });
  return { limit, periodMs, algorithm, burst };
}

/**
 * Parses a CLI rate `LIMIT/PERIOD_MS` (say `10/1000`: 10 claims per second) into a {@link KeyRate}.
 */
export function parseKeyRate(text: string, argument = 'rate'): KeyRate {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  if (!m) {
    throw new ValidationError(
      argument,
      `must be LIMIT/PERIOD_MS (say 10/1000), got ${describe(text)}`,
    );
  }
  return { limit: Number(m[1]), periodMs: Number(m[2]) };
}

/** A key: non-empty text of at most {@link ATTEMPT_LIST_LIMITS}.maxKeyBytes. */
export function checkKey(value: unknown, argument = 'key'): string {
  return checkText(argument, value, { maxBytes: ATTEMPT_LIST_LIMITS.maxKeyBytes });
}

/** Optional tighter limits of one claim. */
export function checkClaimLimits(o: { perKeyConcurrency?: unknown; concurrency?: unknown }): {
  perKey: number | null;
  list: number | null;
} {
  return {
    perKey:
      o.perKeyConcurrency === undefined
        ? null
        : checkInt('options.perKeyConcurrency', o.perKeyConcurrency, concurrencyRule),
    list:
      o.concurrency === undefined
        ? null
        : checkInt('options.concurrency', o.concurrency, concurrencyRule),
  };
}

interface SettingsRow {
  key_regex: string | null;
  key_concurrency: number | null;
  key_rate_limit: number | null;
  key_rate_period_ms: number | null;
  key_rate_algorithm: number | null;
  key_rate_burst: number | null;
  concurrency: number | null;
}

const ALGORITHM_BY_CODE = new Map(
  Object.entries(ALGORITHM_CODE).map(([name, code]) => [code, name as RateLimitAlgorithm]),
);

/** The statements of a schema's list settings. */
export function settingsSql(schema: string) {
  const s = quoteIdent(schema);
  return {
    set: `SELECT ${s}.list_set_limits($1::text, $2::text, $3::int, $4::float8, $5::float8, $6::int,
      $7::float8, $8::int)`,
    get: `SELECT key_regex, key_concurrency, key_rate_limit, key_rate_period_ms, key_rate_algorithm,
        key_rate_burst, concurrency
      FROM ${s}.list_settings WHERE list = $1::text`,
    // A key row that does not exist yet has nothing to claim: 'infinity' until an insert.
    weight: `INSERT INTO ${s}.list_keys AS k (list, key, next_at, weight)
      VALUES ($1::text, $2::text, 'infinity', $3::int)
      ON CONFLICT (list, key) DO UPDATE SET weight = EXCLUDED.weight`,
    // Per-key counts of a list with keys, biggest keys first. O(items of the list).
    keyStats: `SELECT key, count(*) AS total,
        count(*) FILTER (WHERE run_at <= statement_timestamp()
          AND (leased_until IS NULL OR leased_until <= statement_timestamp())) AS claimable,
        count(*) FILTER (WHERE token IS NOT NULL
          AND coalesce(leased_until, run_at) > statement_timestamp()) AS leased
      FROM ${s}.list_items WHERE list = $1::text AND key IS NOT NULL
      GROUP BY key ORDER BY count(*) DESC, key LIMIT $2::int`,
    // The regex is compiled by the server that will apply it: a bad one fails here, before the
    // fence of list_set_limits.
    checkRegex: `SELECT '' ~ $1::text AS ok`,
  };
}

/** Writes a list's limits (undefined fields: no such limit). Runs on `q` (a transaction or pool). */
export async function writeLimits(
  q: Queryable,
  sql: ReturnType<typeof settingsSql>,
  list: string,
  limits: StoredListLimits,
): Promise<void> {
  if (limits.keyRegex !== undefined) {
    try {
      await q.query(sql.checkRegex, [limits.keyRegex]);
    } catch (err) {
      if ((err as { code?: unknown }).code === '2201B') {
        throw new ValidationError(
          'limits.keyRegex',
          `is not a valid PostgreSQL regular expression: ${(err as Error).message}`,
        );
      }
      throw err;
    }
  }
  const rate = limits.perKey?.rate;
  await q.query(sql.set, [
    list,
    limits.keyRegex ?? null,
    limits.perKey?.concurrency ?? null,
    rate?.limit ?? null,
    rate?.periodMs ?? null,
    rate ? ALGORITHM_CODE[rate.algorithm] : null,
    rate?.burst ?? null,
    limits.concurrency ?? null,
  ]);
}

/** Reads a list's limits; `{}` when it has none. */
export async function readLimits(
  q: Queryable,
  sql: ReturnType<typeof settingsSql>,
  list: string,
): Promise<StoredListLimits> {
  const { rows } = await q.query<SettingsRow>(sql.get, [list]);
  const r = rows[0];
  const out: StoredListLimits = {};
  if (r === undefined) return out;
  if (r.key_regex !== null) out.keyRegex = r.key_regex;
  if (r.key_concurrency !== null || r.key_rate_limit !== null) {
    out.perKey = {};
    if (r.key_concurrency !== null) out.perKey.concurrency = r.key_concurrency;
    if (r.key_rate_limit !== null) {
      out.perKey.rate = {
        limit: r.key_rate_limit,
        periodMs: r.key_rate_period_ms!,
        algorithm: ALGORITHM_BY_CODE.get(r.key_rate_algorithm!) ?? DEFAULT_KEY_RATE_ALGORITHM,
        burst: r.key_rate_burst!,
      };
    }
  }
  if (r.concurrency !== null) out.concurrency = r.concurrency;
  return out;
}

/** One key of a list: its items, how many are claimable now and how many are leased. */
export interface KeyStats {
  key: string;
  total: number;
  claimable: number;
  leased: number;
}

/** The `count` biggest keys of a list (none on a list whose items have no keys). */
export async function readKeyStats(
  q: Queryable,
  sql: ReturnType<typeof settingsSql>,
  list: string,
  count: number,
): Promise<KeyStats[]> {
  const { rows } = await q.query<Record<keyof KeyStats, string>>(sql.keyStats, [list, count]);
  return rows.map((r) => ({
    key: r.key,
    total: Number(r.total),
    claimable: Number(r.claimable),
    leased: Number(r.leased),
  }));
}
