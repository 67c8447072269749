// lists-limits: a Zipf-skewed backlog over many keys (100,000 items over 1,000 keys; --quick
// 3,000 over 30), 4 workers x 100 in flight, claim + complete with no work in between.
// pgcoord with a per-key concurrency of 2, pgcoord with no limit (same items, same loop), and
// pg-boss with groupConcurrency 2, alternating round by round. Also measures fairness: in each
// second, among the keys that still had items waiting at its end, the most claims one key got
// over the fewest.
import { AttemptList, migrate, type ClaimRef } from '../../src/index.js';
import { itemName, zipfKeys, zipfSizes, type AnchorResult } from '../anchors/lists-anchor.js';
import {
  packageVersion,
  quantile,
  requireAnchorNode,
  runAnchor,
  type BenchResult,
  type Scenario,
  type ScenarioContext,
} from '../lib.js';
import { roundRatio, spread } from '../lists-workers.js';

const WORKERS = 4;
const BATCH = 100;
const PER_KEY = 2;

interface Drain {
  rate: number;
  /** Items per second over the first half of the items (before the biggest keys' tail). */
  firstHalfRate: number;
  /** Max/min claims per key in each full second, among keys still waiting at its end. */
  fairness: number[];
}

/**
 * `WORKERS` loops of completeAndClaim until every item is done. A claim that comes back empty
 * while items remain (every key with items is at its limit, held by the other workers) waits for
 * the next slot the claim reports, at most 2 ms, then tries again.
 */
async function drain(list: AttemptList, name: string, keys: string[]): Promise<Drain> {
  const count = keys.length;
  const keyOf = (item: string) => keys[Number(item.slice(5))]!;
  const left = new Map<string, number>();
  for (const k of keys) left.set(k, (left.get(k) ?? 0) + 1);
  let done = 0;
  let halfAt = 0;
  // Claims per key in the current second, and the fairness of each full second.
  let second = 0;
  let perKey = new Map<string, number>();
  const fairness: number[] = [];
  await Promise.all(Array.from({ length: WORKERS }, () => list.count('warm-up')));
  const t0 = performance.now();
  const closeSecond = () => {
    const waiting = [...left].filter(([, n]) => n > 0).map(([k]) => k);
    if (waiting.length >= 2) {
      const counts = waiting.map((k) => perKey.get(k) ?? 0);
      fairness.push(Math.max(...counts) / Math.max(Math.min(...counts), 1e-9));
    }
    perKey = new Map();
  };
  await Promise.all(
    Array.from({ length: WORKERS }, async () => {
      let held: ClaimRef[] = [];
      for (;;) {
        const r = await list.completeAndClaim(name, held, { limit: BATCH, leaseMs: 60_000 });
        done += r.count;
        if (halfAt === 0 && done >= count / 2) halfAt = performance.now();
        const now = Math.floor((performance.now() - t0) / 1000);
        while (second < now) {
          closeSecond();
          second++;
        }
        for (const c of r.claims) {
          const k = keyOf(c.item);
          perKey.set(k, (perKey.get(k) ?? 0) + 1);
          left.set(k, left.get(k)! - 1);
        }
        held = r.claims;
        if (held.length > 0) continue;
        if (done >= count) return;
        await new Promise((resolve) => setTimeout(resolve, Math.min(r.nextSlotMs ?? 2, 2)));
      }
    }),
  );
  const ms = performance.now() - t0;
  if (done !== count) throw new Error(`${count - done} items were not processed`);
  return {
    rate: (count / ms) * 1000,
    firstHalfRate: (count / 2 / (halfAt - t0)) * 1000,
    fairness,
  };
}

async function pgcoordRound(
  ctx: ScenarioContext,
  label: string,
  keys: string[],
  limited: boolean,
): Promise<Drain> {
  const url = await ctx.freshDatabase(label);
  const pool = ctx.pool({ connectionString: url, max: WORKERS + 1 });
  await migrate(pool);
  const list = new AttemptList(pool);
  if (limited) await list.setLimits('bench', { perKey: { concurrency: PER_KEY } });
  await list.insertBatch(
    'bench',
    keys.map((key, i) => ({ item: itemName(i), key })),
  );
  await pool.query('VACUUM ANALYZE pgcoord.list_items');
  await pool.query('VACUUM ANALYZE pgcoord.list_keys');
  const r = await drain(list, 'bench', keys);
  await pool.end();
  return r;
}

/**
 * One key alone, one loop: how fast a key drains at per-key concurrency 2 when nothing else runs.
 * Its items go one claim -> complete round trip after another, 2 at a time, whatever the
 * scheduler: so the biggest key of the backlog cannot drain faster than this, and no drain of
 * the whole backlog under this limit can finish before the biggest key does. `limited` false:
 * the same chain on a list without limits, each call asking for 2 (what the chain would cost if
 * keeping the limit were free).
 */
async function chainRound(ctx: ScenarioContext, items: number, limited: boolean): Promise<number> {
  const url = await ctx.freshDatabase('lists_limits_chain');
  const pool = ctx.pool({ connectionString: url, max: 2 });
  await migrate(pool);
  const list = new AttemptList(pool);
  if (limited) await list.setLimits('chain', { perKey: { concurrency: PER_KEY } });
  await list.insertBatch(
    'chain',
    Array.from({ length: items }, (_, i) => ({ item: itemName(i), key: 'k' })),
  );
  await pool.query('VACUUM ANALYZE pgcoord.list_items');
  let done = 0;
  let held: ClaimRef[] = [];
  const t0 = performance.now();
  while (done < items) {
    const r = await list.completeAndClaim('chain', held, {
      limit: limited ? BATCH : PER_KEY,
      leaseMs: 60_000,
    });
    done += r.count;
    held = r.claims;
  }
  const ms = performance.now() - t0;
  await pool.end();
  return (items / ms) * 1000;
}

const fmt = (x: number) => Math.round(x).toLocaleString('en-US');

const scenario: Scenario = {
  name: 'lists-limits',
  description:
    'claim + complete a Zipf backlog (100,000 items over 1,000 keys; --quick 3,000 over 30), 4 workers x 100: pgcoord with per-key concurrency 2 vs without limits vs pg-boss groupConcurrency 2; fairness per second',
  async run(ctx) {
    requireAnchorNode();
    const n = ctx.quick ? 3_000 : 100_000;
    const keyCount = ctx.quick ? 30 : 1_000;
    // pg-boss's groupConcurrency drains 100,000 items in about 20 minutes here: a full run of 3
    // rounds takes an hour. LISTS_LIMITS_ROUNDS picks fewer.
    const rounds = ctx.quick ? 1 : Number(process.env.LISTS_LIMITS_ROUNDS ?? 3);
    const keys = zipfKeys(n, keyCount);
    const sizes = zipfSizes(n, keyCount);
    const size = `${fmt(n)} items over ${fmt(keyCount)} keys (Zipf: ${fmt(sizes[0]!)} .. ${fmt(sizes.at(-1)!)} per key), ${WORKERS} workers x ${BATCH}`;
    const limited: Drain[] = [];
    const plain: Drain[] = [];
    const boss: number[] = [];
    const chain: number[] = [];
    const bareChain: number[] = [];
    const chainItems = ctx.quick ? 200 : 2_000;
    for (let round = 0; round < rounds; round++) {
      chain.push(await chainRound(ctx, chainItems, true));
      bareChain.push(await chainRound(ctx, chainItems, false));
      limited.push(await pgcoordRound(ctx, 'lists_limits_limited', keys, true));
      plain.push(await pgcoordRound(ctx, 'lists_limits_plain', keys, false));
      ctx.log(
        `round ${round + 1}: limited ${fmt(limited[round]!.rate)} (first half ${fmt(limited[round]!.firstHalfRate)}), no limit ${fmt(plain[round]!.rate)} (first half ${fmt(plain[round]!.firstHalfRate)}) items/s; pg-boss next`,
      );
      const url = await ctx.freshDatabase('lists_limits_pgboss');
      // pg-boss's groupConcurrency takes 10-20 minutes over the full backlog here (its tail:
      // the biggest groups, 2 jobs at a time, one poll each).
      const r = await runAnchor<AnchorResult>(
        'bench/anchors/pg-boss-groups.ts',
        [url, String(n), String(keyCount), String(PER_KEY)],
        3_600_000,
      );
      boss.push(r.items_per_s);
      ctx.log(
        `round ${round + 1}: limited ${fmt(limited[round]!.rate)}, no limit ${fmt(plain[round]!.rate)}, pg-boss ${fmt(r.items_per_s)} items/s`,
      );
    }
    const rates = (d: Drain[]) => d.map((x) => x.rate);
    // The most any drain under the limit could reach in each round: all n items in the time the
    // biggest key alone needs at that round's chain rate (capped by the unlimited drain).
    const ceilingAt = (rates: number[]) =>
      rates.map((c, i) => Math.min(n / (sizes[0]! / c), plain[i]!.rate));
    const ceiling = ceilingAt(chain);
    const bareCeiling = ceilingAt(bareChain);
    const fairnessOf = (d: Drain[]) => d.flatMap((x) => x.fairness);
    const within2 = (f: number[]) => f.filter((x) => x <= 2).length / Math.max(f.length, 1);
    const describeFairness = (f: number[]) =>
      `${f.length} seconds: median ${quantile(f, 0.5).toFixed(2)}, worst ${Math.max(...f).toFixed(2)}, ${(within2(f) * 100).toFixed(0)}% within 2x`;
    const results: BenchResult[] = [
      {
        system: 'pgcoord (per-key limit)',
        metric: 'items_per_s',
        value: quantile(rates(limited), 0.5),
        note: `${size}, perKey.concurrency ${PER_KEY}; median of ${rounds} (${spread(rates(limited))})`,
      },
      {
        system: 'pgcoord (no limit)',
        metric: 'items_per_s',
        value: quantile(rates(plain), 0.5),
        note: `same items and loop, no limits; median of ${rounds} (${spread(rates(plain))})`,
      },
      {
        system: 'pg-boss',
        metric: 'items_per_s',
        value: quantile(boss, 0.5),
        note: `pg-boss ${packageVersion('pg-boss')}: groupConcurrency ${PER_KEY} (a group per key), batchSize 100, localConcurrency 4, burstWhenBatchFull; Node ${process.versions.node}; median of ${rounds} (${spread(boss)})`,
      },
      roundRatio(rates(limited), rates(plain), 'pgcoord (no limit)'),
      {
        system: 'pgcoord (per-key limit), one key alone',
        metric: 'items_per_s',
        value: quantile(chain, 0.5),
        note: `${fmt(chainItems)} items of one key, one loop, perKey.concurrency ${PER_KEY}: each item a claim -> complete round trip, ${PER_KEY} at a time; median of ${rounds} (${spread(chain)})`,
      },
      {
        system: 'ceiling under the limit',
        metric: 'items_per_s',
        value: quantile(ceiling, 0.5),
        note: `${fmt(n)} items in the time the biggest key (${fmt(sizes[0]!)} items) needs at the one-key rate: no scheduler can drain this backlog under per-key concurrency ${PER_KEY} faster; median of ${rounds} (${spread(ceiling)})`,
      },
      {
        system: 'one key alone, no limit logic',
        metric: 'items_per_s',
        value: quantile(bareChain, 0.5),
        note: `the same chain on a list without limits, ${PER_KEY} items per claim -> complete round trip; median of ${rounds} (${spread(bareChain)})`,
      },
      {
        system: 'ceiling with a free limiter',
        metric: 'items_per_s',
        value: quantile(bareCeiling, 0.5),
        note: `as the ceiling under the limit, at the chain rate without limit logic: what any drain could reach if keeping the limit cost nothing; median of ${rounds} (${spread(bareCeiling)})`,
      },
      roundRatio(ceiling, rates(plain), 'pgcoord (no limit)', 'ceiling under the limit'),
      roundRatio(bareCeiling, rates(plain), 'pgcoord (no limit)', 'ceiling with a free limiter'),
      roundRatio(rates(limited), ceiling, 'ceiling under the limit'),
      roundRatio(rates(limited), boss, 'pg-boss'),
      {
        system: 'pgcoord (per-key limit), first half',
        metric: 'items_per_s',
        value: quantile(
          limited.map((x) => x.firstHalfRate),
          0.5,
        ),
        note: 'the first 50% of the items: before the biggest keys are all that is left and the limit itself bounds the rate (2 in flight per key)',
      },
      {
        system: 'pgcoord (no limit), first half',
        metric: 'items_per_s',
        value: quantile(
          plain.map((x) => x.firstHalfRate),
          0.5,
        ),
        note: 'the first 50% of the items',
      },
      {
        system: 'pgcoord (per-key limit)',
        metric: 'fairness_max_over_min',
        value: quantile(fairnessOf(limited), 0.5),
        note: `claims per key per second, among keys with items waiting: ${describeFairness(fairnessOf(limited))}`,
      },
      {
        system: 'pgcoord (no limit)',
        metric: 'fairness_max_over_min',
        value: quantile(fairnessOf(plain), 0.5),
        note: `same measure without limits (claims in insert order): ${describeFairness(fairnessOf(plain))}`,
      },
    ];
    return results;
  },
};

export default scenario;
