import fc from 'fast-check';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  ConnectionError,
  MAX_PERIOD_MS,
  MAX_RATE_LIMIT_UNITS,
  RATE_LIMIT_ALGORITHMS,
  RateLimiter,
  ValidationError,
  type RateLimitAlgorithm,
  type RateLimitDecision,
  type RateLimitQuota,
} from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { noSql } from '../helpers/no-sql.js';

const db = useTestDatabase();

// ---- Reference model, written independently of the SQL: one state per quota. ----
interface ModelState {
  a?: number;
  b?: number;
  t?: number;
}

function modelDecide(
  algo: RateLimitAlgorithm,
  quotas: RateLimitQuota[],
  states: ModelState[],
  now: number,
  cost: number,
): RateLimitDecision {
  // A cost is allowed when it is at most available / (1 - eps); remaining is that, floored.
  const eps = 1e-12;
  const fits = (available: number) => available / (1 - eps);
  const pre: ModelState[] = [];
  let allowed = true;
  let retry = 0;
  quotas.forEach((q, i) => {
    const L = q.limit;
    const P = q.periodMs;
    const B = q.burst ?? q.limit;
    const s = { ...states[i] };
    let ok: boolean;
    let r = 0;
    switch (algo) {
      case 'fixed-window':
        if (s.t === undefined || now >= s.t + P) Object.assign(s, { a: 0, t: now });
        ok = s.a! + cost <= L;
        r = s.t! + P - now;
        break;
      case 'sliding-window': {
        if (s.t === undefined) Object.assign(s, { a: 0, b: 0, t: now });
        else if (now >= s.t + P) {
          const k = Math.floor((now - s.t) / P);
          Object.assign(s, { b: k === 1 ? s.a : 0, a: 0, t: s.t + k * P });
        }
        const est = s.b! * (1 - (now - s.t!) / P) + s.a!;
        ok = cost <= fits(L - est);
        if (ok) r = 0;
        else if (s.a! + cost <= L) r = s.t! + (1 - (L - s.a! - cost) / s.b!) * P - now;
        else r = s.t! + P + Math.max(0, 1 - (L - cost) / s.a!) * P - now;
        break;
      }
      case 'token-bucket': {
        const rate = L / P;
        s.a = s.t === undefined ? B : Math.min(B, s.a! + Math.max(0, now - s.t) * rate);
        s.t = now;
        ok = cost <= fits(s.a);
        r = (cost - s.a) / rate;
        break;
      }
      case 'leaky-bucket': {
        const rate = L / P;
        s.a = s.t === undefined ? 0 : Math.max(0, s.a! - Math.max(0, now - s.t) * rate);
        s.t = now;
        ok = cost <= fits(B - s.a);
        r = (s.a + cost - B) / rate;
        break;
      }
      case 'gcra': {
        const T = P / L;
        s.a = s.t === undefined ? 0 : Math.max(0, s.a! - Math.max(0, now - s.t));
        s.t = now;
        ok = cost <= fits(B - s.a / T);
        r = s.a + cost * T - B * T;
        break;
      }
    }
    pre.push(s);
    if (!ok) {
      allowed = false;
      retry = Math.max(retry, r);
    }
  });
  let remaining = Infinity;
  let reset = 0;
  quotas.forEach((q, i) => {
    const L = q.limit;
    const P = q.periodMs;
    const B = q.burst ?? q.limit;
    const s = pre[i]!;
    if (allowed) {
      if (algo === 'token-bucket') s.a = Math.max(0, s.a! - cost);
      else if (algo === 'gcra') s.a = s.a! + cost * (P / L);
      else s.a = s.a! + cost;
    }
    let rem: number;
    let rs: number;
    switch (algo) {
      case 'fixed-window':
        rem = L - s.a!;
        rs = s.a! > 0 ? s.t! + P - now : 0;
        break;
      case 'sliding-window':
        rem = Math.floor(fits(L - (s.b! * (1 - (now - s.t!) / P) + s.a!)));
        rs = s.a! > 0 ? s.t! + 2 * P - now : s.b! > 0 ? s.t! + P - now : 0;
        break;
      case 'token-bucket':
        rem = Math.floor(fits(s.a!));
        rs = (B - s.a!) / (L / P);
        break;
      case 'leaky-bucket':
        rem = Math.floor(fits(B - s.a!));
        rs = s.a! / (L / P);
        break;
      case 'gcra':
        rem = Math.floor(fits(B - s.a! / (P / L)));
        rs = s.a!;
        break;
    }
    remaining = Math.min(remaining, Math.max(0, rem));
    reset = Math.max(reset, rs);
    if (allowed) states[i] = s; // a denial writes nothing
  });
  // Whole ms, rounded up after rounding to the microsecond; a denial never says "retry now".
  const ms = (x: number) => Math.ceil(Math.round(Math.max(0, x) * 1000) / 1000);
  return {
    allowed,
    remaining,
    retryAfterMs: allowed ? 0 : Math.max(1, ms(retry)),
    resetAfterMs: ms(reset),
  };
}

function expectClose(actual: RateLimitDecision, expected: RateLimitDecision, where: string): void {
  expect({ allowed: actual.allowed, remaining: actual.remaining }, where).toEqual({
    allowed: expected.allowed,
    remaining: expected.remaining,
  });
  expect(
    Math.abs(actual.retryAfterMs - expected.retryAfterMs),
    `${where} retryAfterMs`,
  ).toBeLessThanOrEqual(1);
  expect(
    Math.abs(actual.resetAfterMs - expected.resetAfterMs),
    `${where} resetAfterMs`,
  ).toBeLessThanOrEqual(1);
}

const T0 = 1_800_000_000_000; // explicit decision times: no sleeps, no clock

// Hand-written decision tables: [dtMs from T0, cost, allowed, remaining, retryAfterMs].
type Row = [number, number, boolean, number, number];
const TABLES: Record<RateLimitAlgorithm, { quota: RateLimitQuota; rows: Row[] }> = {
  'fixed-window': {
    quota: { limit: 3, periodMs: 1000 },
    rows: [
      [0, 1, true, 2, 0],
      [10, 2, true, 0, 0],
      [20, 1, false, 0, 980],
      [999, 1, false, 0, 1],
      [1000, 1, true, 2, 0],
      [1500, 3, false, 2, 500],
      [1500, 2, true, 0, 0],
    ],
  },
  'sliding-window': {
    quota: { limit: 4, periodMs: 1000 },
    rows: [
      [0, 4, true, 0, 0],
      [500, 1, false, 0, 750],
      [1250, 1, true, 0, 0],
      [1250, 1, false, 0, 250],
      [1500, 1, true, 0, 0],
      [3100, 4, true, 0, 0],
    ],
  },
  'token-bucket': {
    quota: { limit: 2, periodMs: 1000, burst: 4 },
    rows: [
      [0, 4, true, 0, 0],
      [0, 1, false, 0, 500],
      [500, 1, true, 0, 0],
      [750, 2, false, 0, 750],
      [5000, 3, true, 1, 0],
    ],
  },
  'leaky-bucket': {
    quota: { limit: 2, periodMs: 1000, burst: 4 },
    rows: [
      [0, 4, true, 0, 0],
      [0, 1, false, 0, 500],
      [500, 1, true, 0, 0],
      [750, 2, false, 0, 750],
      [5000, 3, true, 1, 0],
    ],
  },
  gcra: {
    quota: { limit: 2, periodMs: 1000, burst: 4 },
    rows: [
      [0, 4, true, 0, 0],
      [0, 1, false, 0, 500],
      [500, 1, true, 0, 0],
      [600, 1, false, 0, 400],
      [5000, 3, true, 1, 0],
    ],
  },
};

describe.each(RATE_LIMIT_ALGORITHMS.map((a) => [a]))('%s', (algorithm) => {
  it('follows its decision table and the reference model', async () => {
    const { quota, rows } = TABLES[algorithm];
    const limiter = new RateLimiter(db.pool, { algorithm, name: `table-${algorithm}`, ...quota });
    const states: ModelState[] = [{}];
    for (const [dt, cost, allowed, remaining, retryAfterMs] of rows) {
      const got = await limiter.consume('k', { cost, nowMs: T0 + dt });
      const want = modelDecide(algorithm, [quota], states, T0 + dt, cost);
      const where = `${algorithm} t=${dt} cost=${cost}`;
      expect(
        { allowed: got.allowed, remaining: got.remaining, retryAfterMs: got.retryAfterMs },
        where,
      ).toEqual({
        allowed,
        remaining,
        retryAfterMs,
      });
      expectClose(got, want, where);
    }
  });

  it('matches the reference model on random sequences with two quotas', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 1500 }), fc.integer({ min: 1, max: 3 })), {
          minLength: 1,
          maxLength: 12,
        }),
        async (steps) => {
          const quotas: RateLimitQuota[] =
            algorithm === 'fixed-window' || algorithm === 'sliding-window'
              ? [
                  { limit: 3, periodMs: 1000 },
                  { limit: 7, periodMs: 5000 },
                ]
              : [
                  { limit: 3, periodMs: 1000, burst: 4 },
                  { limit: 7, periodMs: 5000, burst: 5 },
                ];
          const limiter = new RateLimiter(db.pool, {
            algorithm,
            name: `fuzz-${algorithm}`,
            quotas,
          });
          const key = `run-${run++}`;
          const states: ModelState[] = [{}, {}];
          let now = T0;
          for (const [dt, cost] of steps) {
            now += dt;
            const want = modelDecide(algorithm, quotas, states, now, cost);
            const got = await limiter.consume(key, { cost, nowMs: now });
            expectClose(got, want, `${algorithm} ${JSON.stringify(steps)} at ${now - T0}`);
          }
        },
      ),
      { numRuns: 12 },
    );
  });

  it.each([
    ['one cost per key (set-based statement)', (i: number) => (i % 3 === 2 ? 2 : 1)],
    ['mixed costs on one key (general path)', (i: number) => (i % 4 === 1 ? 2 : 1)],
  ])('decides a coalesced batch with repeated keys in order: %s', async (_label, costOf) => {
    const quota: RateLimitQuota =
      algorithm === 'fixed-window' || algorithm === 'sliding-window'
        ? { limit: 5, periodMs: 1000 }
        : { limit: 5, periodMs: 1000, burst: 6 };
    const limiter = new RateLimiter(db.pool, {
      algorithm,
      name: `batch-${algorithm}-${costOf(1)}`,
      ...quota,
      maxInFlight: 1, // one batch at a time: submission order is decision order
    });
    const keys = ['x', 'y', 'z'];
    const states = new Map(keys.map((k) => [k, [{}] as ModelState[]]));
    for (const dt of [0, 300, 2500]) {
      const calls = Array.from({ length: 24 }, (_, i) => ({
        key: keys[(i * 7) % 3]!,
        cost: costOf(i),
      }));
      const got = await Promise.all(
        calls.map((c) => limiter.consume(c.key, { cost: c.cost, nowMs: T0 + dt })),
      );
      calls.forEach((c, i) => {
        const want = modelDecide(algorithm, [quota], states.get(c.key)!, T0 + dt, c.cost);
        expectClose(got[i]!, want, `${algorithm} t=${dt} call ${i} ${c.key}/${c.cost}`);
      });
    }
  });

  it('allows exactly N of 64 concurrent callers on one key (server clock, several limiters and connections)', async () => {
    const N = 10;
    const quota = { limit: N, periodMs: 3_600_000 };
    // Four limiters, each coalescing its own callers, plus direct statements on the pool:
    // batches from different connections race for the same row.
    const limiters = Array.from(
      { length: 4 },
      () => new RateLimiter(db.pool, { algorithm, name: `contention-${algorithm}`, ...quota }),
    );
    const results = await Promise.all(
      Array.from({ length: 64 }, (_, i) =>
        i % 8 === 7
          ? limiters[0]!.consume('hot', { tx: db.pool })
          : limiters[i % 4]!.consume('hot'),
      ),
    );
    expect(results.filter((r) => r.allowed)).toHaveLength(N);
    const peek = await limiters[0]!.peek('hot');
    expect(peek.allowed).toBe(false);
    expect(peek.remaining).toBe(0);
  });

  it('allows exactly floor(N / cost) of 64 concurrent callers at an explicit time', async () => {
    const limiter = new RateLimiter(db.pool, {
      algorithm,
      name: `contention-cost-${algorithm}`,
      limit: 10,
      periodMs: 1000,
    });
    const results = await Promise.all(
      Array.from({ length: 64 }, () => limiter.consume('hot', { cost: 3, nowMs: T0 })),
    );
    expect(results.filter((r) => r.allowed)).toHaveLength(3);
    expect(results.every((r) => r.allowed || r.retryAfterMs > 0)).toBe(true);
  });
});

describe('RateLimiter', () => {
  it('decides several quotas all or nothing', async () => {
    const limiter = new RateLimiter(db.pool, {
      name: 'multi',
      quotas: [
        { limit: 2, periodMs: 1000 },
        { limit: 3, periodMs: 10_000 },
      ],
    });
    const at = (dt: number) => ({ nowMs: T0 + dt });
    expect((await limiter.consume('k', at(0))).allowed).toBe(true);
    expect((await limiter.consume('k', at(1))).allowed).toBe(true);
    const third = await limiter.consume('k', at(2)); // denied by the 1 s quota
    expect(third).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 998 });
    expect((await limiter.consume('k', at(1000))).allowed).toBe(true); // hour quota now 3/3
    const denied = await limiter.consume('k', at(1001)); // denied by the 10 s quota only
    expect(denied.allowed).toBe(false);
    expect(denied.retryAfterMs).toBe(8999); // the 10 s window opened at 0
    // The denial took nothing from the 1 s quota: its window still has 1 of 2 used.
    const { rows } = await db.pool.query(`SELECT a FROM pgcoord.rate_limits WHERE key = $1`, [
      `5:multi:0:k`,
    ]);
    expect(rows[0]!.a).toBe(1);
  });

  it('peek writes nothing and reset forgets the key', async () => {
    const limiter = new RateLimiter(db.pool, { name: 'peek', limit: 2, periodMs: 60_000 });
    const count = async () =>
      Number(
        (await db.pool.query(`SELECT count(*) FROM pgcoord.rate_limits WHERE key LIKE '4:peek:%'`))
          .rows[0]!.count,
      );
    expect(await limiter.peek('p')).toMatchObject({ allowed: true, remaining: 1 });
    expect(await count()).toBe(0);
    await limiter.consume('p', { cost: 2 });
    expect(await limiter.peek('p')).toMatchObject({ allowed: false, remaining: 0 });
    expect(await limiter.reset('p')).toBe(true);
    expect(await count()).toBe(0);
    expect(await limiter.consume('p')).toMatchObject({ allowed: true, remaining: 1 });
  });

  it('uses the server clock: resetAfterMs is near the period', async () => {
    const limiter = new RateLimiter(db.pool, { name: 'clock', limit: 5, periodMs: 60_000 });
    const serverMs = async () =>
      (
        await db.pool.query<{ ms: number }>(
          `SELECT extract(epoch FROM clock_timestamp())::float8 * 1000 AS ms`,
        )
      ).rows[0]!.ms;
    const before = await serverMs();
    const d = await limiter.consume('c');
    const after = await serverMs();
    expect(d.resetAfterMs).toBeGreaterThan(55_000);
    expect(d.resetAfterMs).toBeLessThanOrEqual(60_000);
    // The window opened on the server's clock, between the readings taken before and after.
    const { rows } = await db.pool.query<{ t: number }>(
      `SELECT t FROM pgcoord.rate_limits WHERE key = '5:clock:0:c'`,
    );
    expect(rows[0]!.t).toBeGreaterThanOrEqual(before);
    expect(rows[0]!.t).toBeLessThanOrEqual(after);
  });

  it('keeps state in the UNLOGGED table when asked, and purges rows back to full', async () => {
    const limiter = new RateLimiter(db.pool, {
      name: 'u',
      limit: 1,
      periodMs: 1000,
      unlogged: true,
    });
    expect((await limiter.consume('x', { nowMs: T0 - 10_000 })).allowed).toBe(true);
    const { rows } = await db.pool.query(
      `SELECT c.relpersistence, (SELECT count(*) FROM pgcoord.rate_limits_unlogged WHERE key = '1:u:0:x')::int AS n
         FROM pg_class c WHERE c.oid = 'pgcoord.rate_limits_unlogged'::regclass`,
    );
    expect(rows[0]).toEqual({ relpersistence: 'u', n: 1 });
    // Decided far in the past (explicit time): its state is back to full now, so it is purgeable.
    // T0 is in 2027, so use a time before the server's clock for this one.
    const past = new RateLimiter(db.pool, { name: 'u2', limit: 1, periodMs: 1000, unlogged: true });
    await past.consume('y', { nowMs: 1_000_000_000_000 });
    expect(await past.purgeExpired()).toBeGreaterThanOrEqual(1);
    const left = await db.pool.query(
      `SELECT count(*)::int AS n FROM pgcoord.rate_limits_unlogged WHERE key = '2:u2:0:y'`,
    );
    expect(left.rows[0]!.n).toBe(0);
  });

  it('reports an unreachable database as a retryable ConnectionError, for every caller of the batch', async () => {
    const pool = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:1/x', max: 1 });
    pool.on('error', () => undefined);
    try {
      const limiter = new RateLimiter(pool, { name: 'down', limit: 1, periodMs: 1000 });
      const errors = await Promise.all(
        [1, 2, 3].map(() => limiter.consume('k').catch((e: unknown) => e)),
      );
      for (const err of errors) {
        expect(err).toBeInstanceOf(ConnectionError);
        expect((err as ConnectionError).retryable).toBe(true);
      }
    } finally {
      await pool.end();
    }
  });

  it('runs inside a caller transaction', async () => {
    const limiter = new RateLimiter(db.pool, { name: 'tx', limit: 1, periodMs: 60_000 });
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      expect((await limiter.consume('t', { tx: client })).allowed).toBe(true);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    expect((await limiter.consume('t')).allowed).toBe(true);
  });

  const rowCount = async () =>
    Number(
      (await db.pool.query(`SELECT count(*) FROM pgcoord.rate_limits WHERE key LIKE '3:bad:%'`))
        .rows[0]!.count,
    );

  it.each([
    ['empty key', () => bad.consume('')],
    ['over-long key', () => bad.consume('k'.repeat(513))],
    ['NUL in key', () => bad.consume('a\u0000b')],
    ['lone surrogate', () => bad.consume('a\ud800')],
    ['non-string key', () => bad.consume(42 as unknown as string)],
    ['non-integer cost', () => bad.consume('k', { cost: 1.5 })],
    ['zero cost', () => bad.consume('k', { cost: 0 })],
    ['negative cost', () => bad.consume('k', { cost: -1 })],
    ['NaN cost', () => bad.consume('k', { cost: Number.NaN })],
    ['cost above the limit', () => bad.consume('k', { cost: 6 })],
    ['cost above the burst', () => badBurst.consume('k', { cost: 4 })],
    ['bad nowMs', () => bad.consume('k', { nowMs: Number.POSITIVE_INFINITY })],
    ['peek with bad cost', () => bad.peek('k', { cost: -2 })],
    ['reset with empty key', () => bad.reset('')],
  ])('refuses %s with ValidationError and writes nothing', async (_label, call) => {
    await expect(call()).rejects.toBeInstanceOf(ValidationError);
    expect(await rowCount()).toBe(0);
  });

  const bad = new RateLimiter(noSql, { name: 'bad', limit: 5, periodMs: 1000 });
  const badBurst = new RateLimiter(noSql, {
    name: 'bad',
    algorithm: 'token-bucket',
    limit: 10,
    periodMs: 1000,
    burst: 3,
  });

  it('names the capacity when a cost could never be allowed', async () => {
    await expect(badBurst.consume('k', { cost: 4 })).rejects.toThrow(
      /capacity 3 .*burst.*never be allowed/,
    );
  });

  it.each([
    ['zero limit', { limit: 0, periodMs: 1000 }],
    ['negative limit', { limit: -5, periodMs: 1000 }],
    ['fractional limit', { limit: 2.5, periodMs: 1000 }],
    ['zero period', { limit: 5, periodMs: 0 }],
    ['negative period', { limit: 5, periodMs: -1000 }],
    ['missing period', { limit: 5 }],
    ['burst on a window', { limit: 5, periodMs: 1000, burst: 10 }],
    ['zero burst', { algorithm: 'gcra', limit: 5, periodMs: 1000, burst: 0 }],
    ['unknown algorithm', { algorithm: 'magic', limit: 5, periodMs: 1000 }],
    ['empty quotas', { quotas: [] }],
    ['both forms', { limit: 1, periodMs: 1, quotas: [{ limit: 1, periodMs: 1 }] }],
    ['too many quotas', { quotas: Array.from({ length: 9 }, () => ({ limit: 1, periodMs: 1 })) }],
    ['empty name', { name: '', limit: 1, periodMs: 1 }],
    ['NUL name', { name: 'a\u0000', limit: 1, periodMs: 1 }],
  ])('refuses options with %s', (_label, options) => {
    expect(() => new RateLimiter(db.pool, options as never)).toThrow(ValidationError);
  });
});

describe('at the extremes of the documented ranges', () => {
  const P = MAX_PERIOD_MS;
  const U = MAX_RATE_LIMIT_UNITS;
  const BURST_ALGORITHMS = RATE_LIMIT_ALGORITHMS.filter(
    (a) => a !== 'fixed-window' && a !== 'sliding-window',
  );

  /** `count` calls at one instant, spread over several limiters (each coalescing its own) and direct statements. */
  async function admittedAtOnce(
    options: ConstructorParameters<typeof RateLimiter>[1],
    count: number,
    cost = 1,
  ): Promise<RateLimitDecision[]> {
    const limiters = Array.from({ length: 4 }, () => new RateLimiter(db.pool, options));
    const results = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        i % 8 === 7
          ? limiters[0]!.consume('hot', { cost, nowMs: T0, tx: db.pool })
          : limiters[i % 4]!.consume('hot', { cost, nowMs: T0 }),
      ),
    );
    return results.filter((r) => r.allowed);
  }

  it.each(
    BURST_ALGORITHMS.flatMap((a) =>
      [1e9, 1e7].flatMap((limit) => [1, 5].map((burst) => [a, limit, burst] as const)),
    ),
  )(
    '%s at %d per 1 ms admits exactly its burst %d of 300 simultaneous calls',
    async (algorithm, limit, burst) => {
      const admitted = await admittedAtOnce(
        { algorithm, name: `fast-${algorithm}-${limit}-${burst}`, limit, periodMs: 1, burst },
        300,
      );
      expect(admitted).toHaveLength(burst);
    },
  );

  it.each(RATE_LIMIT_ALGORITHMS.map((a) => [a]))(
    '%s with the largest units admits exactly floor(capacity / cost) of 64 simultaneous calls',
    async (algorithm) => {
      const admitted = await admittedAtOnce(
        { algorithm, name: `big-${algorithm}`, limit: U, periodMs: P },
        64,
        U / 2 - 1,
      );
      expect(admitted).toHaveLength(2);
    },
  );

  it.each(RATE_LIMIT_ALGORITHMS.map((a) => [a]))(
    '%s at 1 per 366 days is not admitted 1 ms early',
    async (algorithm) => {
      const limiter = new RateLimiter(db.pool, {
        algorithm,
        name: `slow-${algorithm}`,
        limit: 1,
        periodMs: P,
      });
      expect((await limiter.consume('k', { nowMs: T0 })).allowed).toBe(true);
      // The sliding window weighs the previous window's count for one more period.
      const due = T0 + (algorithm === 'sliding-window' ? 2 * P : P);
      for (const early of [30_000, 1]) {
        const d = await limiter.consume('k', { nowMs: due - early });
        expect(d, `${early} ms early`).toEqual({
          allowed: false,
          remaining: 0,
          retryAfterMs: early,
          resetAfterMs: algorithm === 'fixed-window' ? early : expect.any(Number),
        });
      }
      expect(await limiter.consume('k', { nowMs: due })).toMatchObject({ allowed: true });
    },
  );

  it.each(BURST_ALGORITHMS.map((a) => [a]))(
    '%s at the smallest period decides fractions of a millisecond',
    async (algorithm) => {
      const limiter = new RateLimiter(db.pool, {
        algorithm,
        name: `tiny-${algorithm}`,
        limit: 1,
        periodMs: 1,
        burst: 1,
      });
      expect((await limiter.consume('k', { nowMs: T0 })).allowed).toBe(true);
      expect(await limiter.consume('k', { nowMs: T0 + 0.5 })).toMatchObject({
        allowed: false,
        remaining: 0,
        retryAfterMs: 1,
      });
      expect((await limiter.consume('k', { nowMs: T0 + 1 })).allowed).toBe(true);
    },
  );

  it('gcra never answers a denial of cost 1 with remaining 1', async () => {
    // 1 per 366 days, burst 2: spend both, then ask 1 ms before one unit is back.
    const limiter = new RateLimiter(db.pool, {
      algorithm: 'gcra',
      name: 'gcra-remaining',
      limit: 1,
      periodMs: P,
      burst: 2,
    });
    expect((await limiter.consume('k', { cost: 2, nowMs: T0 })).allowed).toBe(true);
    expect(await limiter.consume('k', { nowMs: T0 + P - 1 })).toMatchObject({
      allowed: false,
      remaining: 0,
      retryAfterMs: 1,
    });
  });

  it.each(RATE_LIMIT_ALGORITHMS.map((a) => [a]))(
    '%s: remaining is exactly the largest cost allowed at that instant',
    async (algorithm) => {
      const windows = algorithm === 'fixed-window' || algorithm === 'sliding-window';
      const quotas: RateLimitQuota[] = [
        { limit: 1, periodMs: P, burst: windows ? undefined : 2 },
        { limit: U, periodMs: 1, burst: windows ? undefined : 3 },
        { limit: U, periodMs: P },
        { limit: 7, periodMs: 1000, burst: windows ? undefined : 3 },
        { limit: 3, periodMs: 7, burst: windows ? undefined : 5 },
      ];
      let run = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...quotas),
          fc.array(
            fc.tuple(
              fc.double({ min: 0, max: 1, noNaN: true }),
              fc.double({ min: 0, max: 1, noNaN: true }),
            ),
            {
              minLength: 1,
              maxLength: 6,
            },
          ),
          async (quota, steps) => {
            const capacity = quota.burst ?? quota.limit;
            const limiter = new RateLimiter(db.pool, {
              algorithm,
              name: `consistent-${algorithm}`,
              ...quota,
            });
            const key = `run-${run++}`;
            let now = T0;
            for (const [dt, c] of steps) {
              now += Math.round(dt * 2 * quota.periodMs * 1000) / 1000;
              const cost = Math.max(1, Math.ceil(c * capacity));
              const d = await limiter.consume(key, { cost, nowMs: now });
              const where = `${JSON.stringify(quota)} ${key} cost ${cost} at +${now - T0}`;
              if (!d.allowed) {
                expect(d.remaining, where).toBeLessThan(cost);
                expect(d.retryAfterMs, where).toBeGreaterThan(0);
              }
              if (d.remaining >= 1) {
                expect(
                  (await limiter.peek(key, { cost: Math.min(d.remaining, capacity), nowMs: now }))
                    .allowed,
                  where,
                ).toBe(true);
              }
              if (d.remaining < capacity) {
                expect(
                  (await limiter.peek(key, { cost: d.remaining + 1, nowMs: now })).allowed,
                  where,
                ).toBe(false);
              }
            }
          },
        ),
        { numRuns: 25 },
      );
    },
  );
});

describe('retryAfterMs and resetAfterMs', () => {
  it.each([
    // 10 per second, burst 20: spend 20, ask for 1 at +74 ms: 26 ms to the next unit, 1926 ms to full.
    ['token-bucket', 26, 1926],
    ['leaky-bucket', 26, 1926],
    ['gcra', 26, 1926],
  ] as const)(
    '%s reports whole milliseconds exactly (no floating error before rounding up)',
    async (algorithm, retry, reset) => {
      const limiter = new RateLimiter(db.pool, {
        algorithm,
        name: `exact-${algorithm}`,
        limit: 10,
        periodMs: 1000,
        burst: 20,
      });
      expect((await limiter.consume('k', { cost: 20, nowMs: T0 })).allowed).toBe(true);
      const want = { allowed: false, remaining: 0, retryAfterMs: retry, resetAfterMs: reset };
      expect(await limiter.peek('k', { nowMs: T0 + 74 })).toEqual(want); // the general function
      expect(await limiter.consume('k', { nowMs: T0 + 74 })).toEqual(want); // the set-based statement
    },
  );

  it('a call denied by one fixed-window quota neither opens a window in another nor reports its period', async () => {
    const limiter = new RateLimiter(db.pool, {
      name: 'two-windows',
      quotas: [
        { limit: 1, periodMs: 1000 },
        { limit: 2, periodMs: 10_000 },
      ],
    });
    const at = (dt: number) => limiter.consume('k', { nowMs: T0 + dt });
    expect((await at(0)).allowed).toBe(true);
    expect((await at(1000)).allowed).toBe(true); // the 1 s quota's second window; 10 s quota full
    // Denied by the 10 s quota (300 ms left); the 1 s quota's window ended at 2000 and it is full.
    expect(await at(9700)).toEqual({
      allowed: false,
      remaining: 0,
      retryAfterMs: 300,
      resetAfterMs: 300,
    });
    const { rows } = await db.pool.query<{ a: number; t: number }>(
      `SELECT a, t FROM pgcoord.rate_limits WHERE key = $1`,
      ['11:two-windows:0:k'],
    );
    expect(rows[0]).toEqual({ a: 1, t: T0 + 1000 });
    // The next window of the 1 s quota opens at the next allowed call, not at the denial.
    expect((await at(10_000)).allowed).toBe(true);
    expect(await at(10_500)).toMatchObject({ allowed: false, retryAfterMs: 500 });
  });
});

describe('preparedStatements', () => {
  it('sends decisions as named prepared statements on a pool unless told not to, never on a client', async () => {
    const named = async (q: pg.Pool | pg.Client) =>
      Number(
        (
          await q.query<{ n: string }>(
            `SELECT count(*) AS n FROM pg_prepared_statements WHERE name LIKE 'pgcoord\\_%'`,
          )
        ).rows[0]!.n,
      );
    const quota = { limit: 5, periodMs: 60_000 };
    const prepared = db.newPool({ max: 1 });
    expect(
      (await new RateLimiter(prepared, { ...quota, name: 'named' }).consume('k')).allowed,
    ).toBe(true);
    expect(await named(prepared)).toBe(1);
    const unnamed = db.newPool({ max: 1 });
    await new RateLimiter(unnamed, { ...quota, name: 'plain', preparedStatements: false }).consume(
      'k',
    );
    expect(await named(unnamed)).toBe(0);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await new RateLimiter(client, { ...quota, name: 'client' }).consume('k');
      expect(await named(client)).toBe(0);
    } finally {
      await client.end();
    }
    expect(() => new RateLimiter(prepared, { ...quota, preparedStatements: 1 as never })).toThrow(
      ValidationError,
    );
  });
});
