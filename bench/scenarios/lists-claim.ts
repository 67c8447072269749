// lists-claim: claim + complete with 4 workers in batches of 100. pgcoord's completeAndClaim
// loop against pg-boss, graphile-worker and the bare SKIP LOCKED DELETE loop; plus pgcoord's
// claim rate with 10k vs 1M items waiting, and after 500k were completed (dead tuples).
import { AttemptList, migrate } from '../../src/index.js';
import {
  packageVersion,
  quantile,
  requireAnchorNode,
  type BenchResult,
  type Scenario,
} from '../lib.js';
import {
  drainBare,
  drainWithPgcoord,
  items,
  roundRatio,
  runListsAnchor,
  spread,
} from '../lists-workers.js';

const WORKERS = 4;
const BATCH = 100;

const scenario: Scenario = {
  name: 'lists-claim',
  description:
    'claim + complete N items (200,000; --quick 10,000), 4 workers, batches of 100: pgcoord vs pg-boss, graphile-worker, bare SKIP LOCKED loop; claim rate at 10k vs 1M waiting',
  async run(ctx) {
    requireAnchorNode(); // before any work: the pg-boss and graphile-worker rows need it
    const n = ctx.quick ? 10_000 : 200_000;
    const results: BenchResult[] = [];
    const size = `${n.toLocaleString('en-US')} items, ${WORKERS} workers x ${BATCH}`;

    // pgcoord and the bare loop alternate, a fresh database per round, and report the median:
    // the machine is shared and its load swings within seconds.
    const rounds = 3;
    const ours: number[] = [];
    const bare: number[] = [];
    for (let round = 0; round < rounds; round++) {
      // pgcoord: each worker completes its batch and claims the next in one round trip.
      {
        const url = await ctx.freshDatabase('lists_claim_pgcoord');
        const pool = ctx.pool({ connectionString: url, max: WORKERS + 1 });
        await migrate(pool);
        const list = new AttemptList(pool);
        await list.import('bench', items(n));
        ours.push(await drainWithPgcoord(list, 'bench', n, WORKERS, BATCH));
        await pool.end();
      }
      // The bare loop: DELETE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING.
      {
        const url = await ctx.freshDatabase('lists_claim_bare');
        const pool = ctx.pool({ connectionString: url, max: WORKERS + 1 });
        await pool.query('CREATE TABLE bare_queue (id bigserial PRIMARY KEY, item text NOT NULL)');
        await pool.query(
          `INSERT INTO bare_queue (item)
           SELECT 'item-' || lpad(g::text, 9, '0') FROM generate_series(0, $1::int - 1) g`,
          [n],
        );
        await pool.query('VACUUM ANALYZE bare_queue');
        bare.push(await drainBare(pool, n, WORKERS, BATCH));
        await pool.end();
      }
      ctx.log(
        `round ${round + 1}: pgcoord ${Math.round(ours[round]!)}, bare ${Math.round(bare[round]!)} items/s`,
      );
    }
    results.push({
      system: 'pgcoord',
      metric: 'items_per_s',
      value: quantile(ours, 0.5),
      note: `${size}, completeAndClaim; median of ${rounds} rounds (${spread(ours)})`,
    });
    results.push({
      system: 'bare SQL loop',
      metric: 'items_per_s',
      value: quantile(bare, 0.5),
      note: `${size}, DELETE ... SKIP LOCKED ... RETURNING; median of ${rounds} (${spread(bare)})`,
    });
    results.push(roundRatio(ours, bare, 'bare SQL loop'));

    results.push(
      await runListsAnchor(
        ctx,
        {
          system: 'pg-boss',
          script: 'bench/anchors/pg-boss-lists.ts',
          mode: 'work',
          database: 'lists_claim_pgboss',
          note: `pg-boss ${packageVersion('pg-boss')}: work() batchSize 100, localConcurrency 4, burstWhenBatchFull; Node ${process.versions.node}`,
        },
        n,
      ),
      await runListsAnchor(
        ctx,
        {
          system: 'graphile-worker',
          script: 'bench/anchors/graphile-worker-lists.ts',
          mode: 'work',
          database: 'lists_claim_graphile',
          note: `graphile-worker ${packageVersion('graphile-worker')}: concurrentJobs 24, localQueue 500, completeJobBatchDelay 0 (its published perf setup); Node ${process.versions.node}`,
        },
        n,
      ),
    );

    // Claim rate against the backlog size and after heavy churn. A sample drains `sample` items
    // with the same 4-worker loop. Samples of a fresh 10k-item list and of the big list alternate
    // (median of each), so a swing in the machine's load hits both alike.
    {
      const url = await ctx.freshDatabase('lists_claim_scale');
      const pool = ctx.pool({ connectionString: url, max: WORKERS + 1 });
      await migrate(pool);
      const list = new AttemptList(pool);
      const sample = ctx.quick ? 2_000 : 5_000;
      const reps = 5;
      const small = ctx.quick ? 4_000 : 10_000;
      const big = ctx.quick ? 100_000 : 1_000_000;
      const churn = big / 2;
      let smallLists = 0;
      const smallRate = async () => {
        const name = `small-${++smallLists}`;
        await list.import(name, items(small));
        return drainWithPgcoord(list, name, sample, WORKERS, BATCH);
      };
      const alternate = async () => {
        const smallRates: number[] = [];
        const bigRates: number[] = [];
        for (let i = 0; i < reps; i++) {
          smallRates.push(await smallRate());
          bigRates.push(await drainWithPgcoord(list, 'big', sample, WORKERS, BATCH));
        }
        return { small: quantile(smallRates, 0.5), big: quantile(bigRates, 0.5) };
      };
      const fmt = (x: number) => x.toLocaleString('en-US');

      await list.import('big', items(big));
      const before = await alternate();
      results.push({
        system: `pgcoord, ${fmt(small)} waiting`,
        metric: 'claim_items_per_s',
        value: before.small,
        note: `median of ${reps} x ${fmt(sample)}, alternating with the next row`,
      });
      results.push({
        system: `pgcoord, ${fmt(big)} waiting`,
        metric: 'claim_items_per_s',
        value: before.big,
        note: `${((before.big / before.small) * 100).toFixed(0)}% of the ${fmt(small)}-waiting rate`,
      });

      // Complete half the big list (no VACUUM in between: the dead tuples are what is measured).
      const done = churn - reps * sample;
      const churnRate = await drainWithPgcoord(list, 'big', done, WORKERS, BATCH);
      ctx.log(`completed ${done} more at ${Math.round(churnRate)} items/s`);
      const after = await alternate();
      results.push({
        system: `pgcoord, ${fmt(small)} waiting (2nd phase)`,
        metric: 'claim_items_per_s',
        value: after.small,
        note: `median of ${reps} x ${fmt(sample)}, alternating with the next row`,
      });
      results.push({
        system: `pgcoord, after ${fmt(churn)} of ${fmt(big)} completed`,
        metric: 'claim_items_per_s',
        value: after.big,
        note: `${((after.big / after.small) * 100).toFixed(0)}% of the ${fmt(small)}-waiting rate of this phase; no VACUUM in between`,
      });
    }
    return results;
  },
};

export default scenario;
