import { quoteIdent } from '../core/index.js';

/**
 * The rate-limiting algorithms pgcoord decides in SQL (function `rate_limit_decide` of
 * `sql/0003_rate_limits.sql`, replaced by `sql/0009_rate_limits_set_based.sql`, then by
 * `sql/0010_leases_rate_limits_exact.sql`). Each quota allows `limit` units per `periodMs`; `burst` is the
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

/** Every algorithm, in the order of the table in docs/coordination.md. */
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

/** SQL fragments of one algorithm for the set-based statement (see {@link setDecideSql}). */
interface SetFragments {
  /** Normalized state at now: columns a0, b0, t0 (inputs A, B, T may be NULL = fresh; N now; nn = greatest(N, T)). */
  norm: { a0: string; b0: string; t0: string };
  /** How many `C`-unit items fit now, before clamping to [0, K] (uses x.a0, x.b0, x.t0). */
  room: string;
  /** State after `y.m` items: a1, b1, t1, and e1 when it is back to full. */
  next: { a1: string; b1: string; t1: string; e1: string };
  /** Per item: its state (`aj`, from u.a after undoing `uu` later items) then remaining, reset, retry. */
  item: { aj: string; rem: string; reset: string; retry: string };
}

/**
 * Shortfall forgiven, as a fraction of the cost: floating error, nothing more. A cost `c` is
 * allowed when `c <= available / (1 - EPS)`, and `remaining` is the floor of that same quotient,
 * so the two never disagree (sql/0010_leases_rate_limits_exact.sql, `eps`). k items of cost C
 * in a row: item j fits when `C <= (available - (j - 1) * C) / (1 - EPS)`, that is
 * `j <= available / C + EPS`, hence the rooms below.
 */
const EPS = '1e-12::float8';
/** `available / (1 - EPS)`, floored: remaining. */
const within = (available: string) => `floor((${available}) / (1 - ${EPS}))`;

// L, P, BU are $4, $5, $6 (limit, period, burst). Every formula matches rate_limit_decide in
// sql/0010_leases_rate_limits_exact.sql applied item after item; k equal-cost items on one key at one time
// reduce to "the first m fit", which is what makes a set-based statement exact.
const FRAGMENTS: Record<RateLimitAlgorithm, SetFragments> = {
  'fixed-window': {
    norm: {
      a0: `CASE WHEN T IS NULL OR N >= T + $5 THEN 0 ELSE A END`,
      b0: `NULL::float8`,
      t0: `CASE WHEN T IS NULL OR N >= T + $5 THEN N ELSE T END`,
    },
    room: `($4 - x.a0) / C`,
    next: { a1: `x.a0 + y.m * C`, b1: `NULL::float8`, t1: `x.t0`, e1: `x.t0 + $5` },
    item: {
      aj: `u.a - uu * u.c`,
      rem: `$4 - aj`,
      reset: `CASE WHEN aj > 0 THEN u.t + $5 - N ELSE 0 END`,
      retry: `u.t + $5 - N`,
    },
  },
  'sliding-window': {
    norm: {
      a0: `CASE WHEN T IS NULL OR N >= T + $5 THEN 0 ELSE A END`,
      b0: `CASE WHEN T IS NULL OR N >= T + 2 * $5 THEN 0 WHEN N >= T + $5 THEN A ELSE B END`,
      t0: `CASE WHEN T IS NULL THEN N WHEN N >= T + $5 THEN T + floor((N - T) / $5) * $5 ELSE T END`,
    },
    room: `($4 - (x.b0 * least(1, greatest(0, 1 - (N - x.t0) / $5)) + x.a0)) / C + ${EPS}`,
    next: { a1: `x.a0 + y.m * C`, b1: `x.b0`, t1: `x.t0`, e1: `x.t0 + 2 * $5` },
    item: {
      aj: `u.a - uu * u.c`,
      rem: within(`$4 - (u.b * least(1, greatest(0, 1 - (N - u.t) / $5)) + aj)`),
      reset: `CASE WHEN aj > 0 THEN u.t + 2 * $5 - N WHEN u.b > 0 THEN u.t + $5 - N ELSE 0 END`,
      retry: `CASE WHEN aj + u.c <= $4 THEN u.t + (1 - ($4 - aj - u.c) / nullif(u.b, 0)) * $5 - N
                   ELSE u.t + $5 + greatest(0, 1 - ($4 - u.c) / nullif(aj, 0)) * $5 - N END`,
    },
  },
  'token-bucket': {
    norm: {
      a0: `CASE WHEN T IS NULL THEN $6 ELSE least($6, A + (nn - T) * ($4 / $5)) END`,
      b0: `NULL::float8`,
      t0: `nn`,
    },
    room: `x.a0 / C + ${EPS}`,
    next: {
      a1: `greatest(0, x.a0 - y.m * C)`,
      b1: `NULL::float8`,
      t1: `x.t0`,
      e1: `x.t0 + ($6 - greatest(0, x.a0 - y.m * C)) / ($4 / $5)`,
    },
    item: {
      aj: `u.a + uu * u.c`,
      rem: within(`aj`),
      reset: `($6 - aj) / ($4 / $5)`,
      retry: `(u.c - aj) / ($4 / $5)`,
    },
  },
  'leaky-bucket': {
    norm: {
      a0: `CASE WHEN T IS NULL THEN 0 ELSE greatest(0, A - (nn - T) * ($4 / $5)) END`,
      b0: `NULL::float8`,
      t0: `nn`,
    },
    room: `($6 - x.a0) / C + ${EPS}`,
    next: {
      a1: `x.a0 + y.m * C`,
      b1: `NULL::float8`,
      t1: `x.t0`,
      e1: `x.t0 + (x.a0 + y.m * C) / ($4 / $5)`,
    },
    item: {
      aj: `u.a - uu * u.c`,
      rem: within(`$6 - aj`),
      reset: `aj / ($4 / $5)`,
      retry: `(aj + u.c - $6) / ($4 / $5)`,
    },
  },
  gcra: {
    norm: {
      a0: `CASE WHEN T IS NULL THEN 0 ELSE greatest(0, A - (nn - T)) END`,
      b0: `NULL::float8`,
      t0: `nn`,
    },
    room: `($6 - x.a0 / ($5 / $4)) / C + ${EPS}`,
    next: {
      a1: `x.a0 + y.m * C * ($5 / $4)`,
      b1: `NULL::float8`,
      t1: `x.t0`,
      e1: `x.t0 + x.a0 + y.m * C * ($5 / $4)`,
    },
    item: {
      aj: `u.a - uu * u.c * ($5 / $4)`,
      rem: within(`$6 - aj / ($5 / $4)`),
      reset: `aj`,
      retry: `aj + u.c * ($5 / $4) - $6 * ($5 / $4)`,
    },
  },
};

function substitute(sql: string, vars: Record<string, string>): string {
  return sql.replace(/\b(A|B|T|N|C|K|nn)\b/g, (m) => vars[m] ?? m);
}

/** The per-key step as a subquery over state expressions (A, B, T), now N, cost C, count K. */
function stepSql(f: SetFragments, vars: Record<string, string>): string {
  const v = { ...vars, nn: `greatest(${vars.N}, coalesce(${vars.T}, ${vars.N}))` };
  return substitute(
    `SELECT z.a1, z.b1, z.t1, z.e1, y.m
       FROM (SELECT ${f.norm.a0} AS a0, ${f.norm.b0} AS b0, ${f.norm.t0} AS t0) x
       CROSS JOIN LATERAL (SELECT greatest(0, least(K, floor(${f.room})))::float8 AS m) y
       CROSS JOIN LATERAL (SELECT ${f.next.a1} AS a1, ${f.next.b1} AS b1, ${f.next.t1} AS t1,
                                  ${f.next.e1} AS e1) z`,
    v,
  );
}

/**
 * The same step as plain expressions (no subquery), for ON CONFLICT DO UPDATE SET: a SubPlan
 * per conflicting row cost more than computing the shared parts several times.
 */
function stepExprs(f: SetFragments, vars: Record<string, string>): string[] {
  const v = { ...vars, nn: `greatest(${vars.N}, coalesce(${vars.T}, ${vars.N}))` };
  const x = {
    a0: `(${substitute(f.norm.a0, v)})`,
    b0: `(${substitute(f.norm.b0, v)})`,
    t0: `(${substitute(f.norm.t0, v)})`,
  };
  const withX = (e: string) => e.replace(/\bx\.(a0|b0|t0)\b/g, (_m, c: 'a0' | 'b0' | 't0') => x[c]);
  const m = `(greatest(0, least(${vars.K}, floor(${withX(substitute(f.room, v))})))::float8)`;
  const step = (e: string) => withX(substitute(e, v)).replace(/\by\.m\b/g, m);
  return [step(f.next.a1), step(f.next.b1), step(f.next.t1), step(f.next.e1), m];
}

/**
 * The set-based decision statement of one algorithm, for a batch with one quota where every
 * item of a key has the same cost (the common case): one INSERT .. ON CONFLICT DO UPDATE takes
 * each key's row lock in key order (the order rate_limit_decide uses too) and applies all of
 * that key's items at once; one write per key instead of a lock and a write, and no PL/pgSQL
 * loop. Parameters: $1 keys text[], $2 costs float8[] (one per item, in order), $3 now ms or
 * NULL, $4 limit, $5 period ms, $6 burst.
 */
export function setDecideSql(
  schema: string,
  unlogged: boolean,
  algorithm: RateLimitAlgorithm,
): string {
  const f = FRAGMENTS[algorithm];
  const table = stateTable(schema, unlogged);
  const insertStep = stepSql(f, {
    A: 'NULL::float8',
    B: 'NULL::float8',
    T: 'NULL::float8',
    N: 'clock.now',
    C: 'g.c',
    K: 'g.n',
  });
  const updateStep = stepExprs(f, {
    A: 'r.a',
    B: 'r.b',
    T: 'r.t',
    N: '(SELECT now FROM clock)',
    C: 'EXCLUDED.c',
    K: 'EXCLUDED.n',
  });
  const item = (expr: string) =>
    substitute(expr.replace(/\baj\b/g, `(${substitute(f.item.aj, {})})`), {
      N: 'clock.now',
    }).replace(/\buu\b/g, '(u.m - least(i.j, u.m))');
  return `WITH input AS (
      SELECT u.k, u.c, u.ord, row_number() OVER (PARTITION BY u.k ORDER BY u.ord) AS j
        FROM unnest($1::text[], $2::float8[]) WITH ORDINALITY AS u(k, c, ord)),
    clock AS (SELECT coalesce($3::float8, extract(epoch FROM clock_timestamp())::float8 * 1000) AS now,
                     $4::float8 AS lim, $5::float8 AS per, $6::float8 AS burst),
    grp AS (SELECT k, min(c) AS c, count(*)::int AS n FROM input GROUP BY k),
    up AS (
      INSERT INTO ${table} AS r (key, a, b, t, expires_ms, m, c, n)
      SELECT g.k, s.a1, s.b1, s.t1, s.e1, s.m, g.c, g.n
        FROM grp g CROSS JOIN clock CROSS JOIN LATERAL (${insertStep}) s
       ORDER BY g.k COLLATE "C"
      ON CONFLICT (key) DO UPDATE SET (a, b, t, expires_ms, m, c, n) =
        ROW(${updateStep.join(', ')}, EXCLUDED.c, EXCLUDED.n)
      RETURNING r.key, r.a, r.b, r.t, r.m, r.c)
    SELECT i.ord::int AS item, i.j <= u.m AS allowed,
           greatest(0, ${item(f.item.rem)}) AS remaining,
           CASE WHEN i.j <= u.m THEN 0 ELSE greatest(0, ${item(f.item.retry)}) END AS retry_after_ms,
           greatest(0, ${item(f.item.reset)}) AS reset_after_ms
      FROM input i JOIN up u ON u.key = i.k CROSS JOIN clock
     ORDER BY i.ord`;
}
