// Rate-limit decisions per second and p99 latency: pgcoord (every algorithm, durable and
// UNLOGGED) against rate-limiter-flexible on PostgreSQL and on Redis, and a bare single-statement
// upsert through pg, at concurrency 16 and 64 over 1,000 keys, in one run on one database.
import { Redis } from 'ioredis';
import type pg from 'pg';
import { RateLimiterPostgres, RateLimiterRedis } from 'rate-limiter-flexible';
import { migrate, RATE_LIMIT_ALGORITHMS, RateLimiter } from '../../src/index.js';
import { packageVersion, quantile, type BenchResult, type Scenario } from '../lib.js';

const KEYS = 1000;
const POOL_SIZE = 10;
// Large enough that every decision is allowed: each one writes, the most expensive path.
const LIMIT = 1_000_000_000;
const PERIOD_MS = 60_000;

export interface DriveResult {
  perSecond: number;
  p99: number;
  count: number;
}

/** Runs `concurrency` callers (numbered `worker`) in a loop for `durationMs` after `warmMs`, each call on a random key. */
export async function drive(
  concurrency: number,
  warmMs: number,
  durationMs: number,
  call: (key: string, worker: number) => Promise<unknown>,
): Promise<DriveResult> {
  const latencies: number[] = [];
  let measuring = false;
  const start = performance.now();
  const measureFrom = start + warmMs;
  const end = measureFrom + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      for (;;) {
        const t = performance.now();
        if (t >= end) return;
        if (!measuring && t >= measureFrom) measuring = true;
        await call(`key-${Math.floor(Math.random() * KEYS)}`, worker);
        const done = performance.now();
        if (t >= measureFrom && done <= end) latencies.push(done - t);
      }
    }),
  );
  return {
    perSecond: latencies.length / (durationMs / 1000),
    p99: quantile(latencies, 0.99),
    count: latencies.length,
  };
}

const scenario: Scenario = {
  name: 'ratelimit',
  description:
    'rate-limit decisions/s and p99 at concurrency 16 and 64 over 1,000 keys: pgcoord (5 algorithms, durable and UNLOGGED) vs rate-limiter-flexible (PostgreSQL, Redis) vs a bare upsert',
  async run(ctx) {
    const warmMs = ctx.quick ? 250 : 1000;
    const durationMs = ctx.quick ? 1000 : 4000;
    const results: BenchResult[] = [];
    const rlfVersion = packageVersion('rate-limiter-flexible');
    const setup = ctx.pool({ max: 2 });
    await migrate(setup);
    await setup.query(
      `CREATE TABLE bare_counters (key text PRIMARY KEY, n bigint NOT NULL, expire bigint)`,
    );
    const redis = new Redis({
      host: '127.0.0.1',
      port: 6379,
      lazyConnect: true,
      maxRetriesPerRequest: 1,
    });
    redis.on('error', () => undefined);
    let redisOk = true;
    try {
      await redis.connect();
    } catch {
      redisOk = false;
      ctx.log('Redis at 127.0.0.1:6379 is not reachable: skipping rate-limiter-flexible on Redis');
    }
    const prefix = `pgcoord-bench-${process.pid}-${Date.now()}`;

    const record = (system: string, concurrency: number, r: DriveResult, note?: string) => {
      ctx.log(`c${concurrency} ${system}: ${Math.round(r.perSecond)}/s p99 ${r.p99.toFixed(2)} ms`);
      results.push({ system, metric: `decisions_per_s@c${concurrency}`, value: r.perSecond, note });
      results.push({ system, metric: `p99_ms@c${concurrency}`, value: r.p99 });
    };
    const withPool = async <T>(fn: (pool: pg.Pool) => Promise<T>): Promise<T> => {
      const pool = ctx.pool({ max: POOL_SIZE });
      try {
        return await fn(pool);
      } finally {
        await pool.end();
      }
    };

    for (const concurrency of [16, 64]) {
      await withPool(async (pool) => {
        // Fastest setup: table made once, no expiry sweeper, prepared statements (its default).
        const rlf = new RateLimiterPostgres({
          storeClient: pool,
          storeType: 'pool',
          tableName: `rlf_c${concurrency}`,
          tableCreated: false,
          clearExpiredByTimeout: false,
          points: LIMIT,
          duration: PERIOD_MS / 1000,
        });
        // The constructor creates the table in the background.
        for (let i = 0; i < 100; i++) {
          try {
            await rlf.consume('probe');
            break;
          } catch (err) {
            if (!(err instanceof Error) || !/not created/.test(err.message)) throw err;
            await new Promise((r) => setTimeout(r, 20));
          }
        }
        const r = await drive(concurrency, warmMs, durationMs, (k) => rlf.consume(k));
        record(
          'rate-limiter-flexible (PostgreSQL)',
          concurrency,
          r,
          `v${rlfVersion}, pool ${POOL_SIZE}`,
        );
      });

      await withPool(async (pool) => {
        const r = await drive(concurrency, warmMs, durationMs, (k) =>
          pool.query({
            name: 'bare-upsert',
            text: `INSERT INTO bare_counters VALUES ($1, 1, $2) ON CONFLICT (key)
                   DO UPDATE SET n = bare_counters.n + 1 RETURNING n, expire`,
            values: [k, Date.now() + PERIOD_MS],
          }),
        );
        record(
          'bare upsert (pg)',
          concurrency,
          r,
          `one INSERT .. ON CONFLICT .. RETURNING per decision, pool ${POOL_SIZE}`,
        );
      });

      if (redisOk) {
        const rlf = new RateLimiterRedis({
          storeClient: redis,
          keyPrefix: `${prefix}-c${concurrency}`,
          points: LIMIT,
          duration: PERIOD_MS / 1000,
        });
        const r = await drive(concurrency, warmMs, durationMs, (k) => rlf.consume(k));
        record(
          'rate-limiter-flexible (Redis)',
          concurrency,
          r,
          `v${rlfVersion}, ioredis, 127.0.0.1:6379`,
        );
      }

      for (const algorithm of RATE_LIMIT_ALGORITHMS) {
        for (const unlogged of [false, true]) {
          await withPool(async (pool) => {
            const limiter = new RateLimiter(pool, {
              algorithm,
              name: `bench-c${concurrency}`,
              limit: LIMIT,
              periodMs: PERIOD_MS,
              unlogged,
            });
            const r = await drive(concurrency, warmMs, durationMs, (k) => limiter.consume(k));
            record(
              `pgcoord ${algorithm}${unlogged ? ' (unlogged)' : ''}`,
              concurrency,
              r,
              `coalesced, maxInFlight ${limiter.options.maxInFlight}, pool ${POOL_SIZE}`,
            );
          });
        }
      }
    }
    if (redisOk) {
      // Leave nothing behind in the shared Redis.
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
    }
    return results;
  },
};

export default scenario;
