import { quoteIdent } from './db/identifier.js';

/**
 * The rate-limiting algorithms pgcoord decides in SQL (`sql/0003_rate_limits.sql`,
 * function `rate_limit_decide`). Each quota allows `limit` units per `periodMs`; `burst` is the
 * most units a key can take at once where the algorithm has a capacity separate from its rate.
 *
 * | algorithm | state | allows | capacity |
 * |---|---|---|---|
 * | `fixed-window` | count, window start (anchored at the key's first hit) | `limit` per window | `limit` |
 * | `sliding-window` | this and the previous window's counts | weighted estimate `prev * (1 - elapsed / period) + current <= limit` | `limit` |
 * | `token-bucket` | tokens, last update | refills `limit` tokens per period up to `burst` | `burst` |
 * | `leaky-bucket` | level, last update (a meter) | drains `limit` units per period; level stays `<= burst` | `burst` |
 * | `gcra` | theoretical arrival time | one unit every `periodMs / limit`, `burst` at once | `burst` |
 */
export type RateLimitAlgorithm =
  'fixed-window' | 'sliding-window' | 'token-bucket' | 'leaky-bucket' | 'gcra';

/** Every algorithm, in the order of the README table. */
export const RATE_LIMIT_ALGORITHMS: readonly RateLimitAlgorithm[] = [
  'fixed-window',
  'sliding-window',
  'token-bucket',
  'leaky-bucket',
  'gcra',
];

/** Code of each algorithm in `rate_limit_decide(p_algo)`. */
export const ALGORITHM_CODE: Record<RateLimitAlgorithm, number> = {
  'fixed-window': 1,
  'sliding-window': 2,
  'token-bucket': 3,
  'leaky-bucket': 4,
  gcra: 5,
};

/** Whether the algorithm has a capacity (`burst`) separate from its rate. */
export function hasBurst(algorithm: RateLimitAlgorithm): boolean {
  return algorithm !== 'fixed-window' && algorithm !== 'sliding-window';
}

/** The decision statement: one call decides a whole batch of one limiter. */
export function decideSql(schema: string): string {
  return `SELECT item, allowed, remaining, retry_after_ms, reset_after_ms
            FROM ${quoteIdent(schema)}.rate_limit_decide($1::boolean, $2::boolean, $3::int,
                   $4::float8[], $5::float8[], $6::float8[], $7::text[], $8::int[], $9::float8[],
                   $10::float8)`;
}

/** Table holding a limiter's state. */
export function stateTable(schema: string, unlogged: boolean): string {
  return `${quoteIdent(schema)}.${unlogged ? 'rate_limits_unlogged' : 'rate_limits'}`;
}
