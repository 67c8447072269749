// lists-import: bulk-load items. pgcoord's COPY import against pg-boss's batch insert,
// graphile-worker's addJobs and a bare COPY of the same rows; plus keyset paging on the result.
import { AttemptList, migrate } from '../../src/index.js';
import {
  packageVersion,
  quantile,
  requireAnchorNode,
  type BenchResult,
  type Scenario,
} from '../lib.js';
import { bareCopy, itemName, items, roundRatio, runListsAnchor, spread } from '../lists-workers.js';

const scenario: Scenario = {
  name: 'lists-import',
  description:
    'import N items (1,000,000; --quick 20,000): pgcoord COPY import vs pg-boss insert, graphile-worker addJobs, bare COPY; keyset page of 1,000 p50',
  async run(ctx) {
    requireAnchorNode(); // before any work: the pg-boss and graphile-worker rows need it
    const n = ctx.quick ? 20_000 : 1_000_000;
    const results: BenchResult[] = [];
    const size = `${n.toLocaleString('en-US')} items`;

    // pgcoord and the bare COPY alternate, a fresh database per round, and report the median:
    // the machine is shared and its load swings within seconds.
    const rounds = 3;
    const ours: number[] = [];
    const bare: number[] = [];
    for (let round = 0; round < rounds; round++) {
      // pgcoord: AttemptList.import from a generator, one transaction, COPY chunks.
      {
        const url = await ctx.freshDatabase('lists_import_pgcoord');
        const pool = ctx.pool({ connectionString: url, max: 4 });
        await migrate(pool);
        const list = new AttemptList(pool);
        await list.count('warm-up');
        const t0 = performance.now();
        const r = await list.import('bench', items(n));
        const ms = performance.now() - t0;
        if (r.inserted !== n) throw new Error(`pgcoord imported ${r.inserted} of ${n}`);
        ours.push((n / ms) * 1000);
        if (round === rounds - 1) results.push(...(await pagesAndDuplicates(list, n, ctx.quick)));
        await pool.end();
      }
      // Bare COPY of the same rows into a table with the same primary key.
      {
        const url = await ctx.freshDatabase('lists_import_bare');
        const pool = ctx.pool({ connectionString: url, max: 2 });
        bare.push(await bareCopy(pool, 'bench', n));
        await pool.end();
      }
      ctx.log(
        `round ${round + 1}: pgcoord ${Math.round(ours[round]!)}, bare COPY ${Math.round(bare[round]!)} items/s`,
      );
    }
    results.unshift(
      {
        system: 'pgcoord',
        metric: 'items_per_s',
        value: quantile(ours, 0.5),
        note: `${size}, AttemptList.import; median of ${rounds} rounds (${spread(ours)})`,
      },
      {
        system: 'bare COPY',
        metric: 'items_per_s',
        value: quantile(bare, 0.5),
        note: `pg-copy-streams into a (list, item) primary-key table; median of ${rounds} (${spread(bare)})`,
      },
      roundRatio(ours, bare, 'bare COPY'),
    );

    // pg-boss 12: batch insert, and graphile-worker 0.18: addJobs, 5,000 jobs per call.
    results.push(
      await runListsAnchor(
        ctx,
        {
          system: 'pg-boss',
          script: 'bench/anchors/pg-boss-lists.ts',
          mode: 'insert',
          database: 'lists_import_pgboss',
          note: `pg-boss ${packageVersion('pg-boss')} insert() of 5,000 per call, Node ${process.versions.node}`,
        },
        n,
      ),
      await runListsAnchor(
        ctx,
        {
          system: 'graphile-worker',
          script: 'bench/anchors/graphile-worker-lists.ts',
          mode: 'add',
          database: 'lists_import_graphile',
          note: `graphile-worker ${packageVersion('graphile-worker')} addJobs() of 5,000 per call, Node ${process.versions.node}`,
        },
        n,
      ),
    );
    return results;
  },
};

/** Keyset pages of 1,000 after random items, and a re-import of existing items. */
async function pagesAndDuplicates(
  list: AttemptList,
  n: number,
  quick: boolean,
): Promise<BenchResult[]> {
  const samples: number[] = [];
  for (let i = 0; i < (quick ? 50 : 300); i++) {
    const after = itemName(Math.floor(Math.random() * (n - 1000)));
    const t = performance.now();
    const page = await list.getBatch('bench', { after, count: 1000 });
    samples.push(performance.now() - t);
    if (page.length !== 1000) throw new Error(`page had ${page.length} entries`);
  }
  // Re-import the first 10%: every item a duplicate (the INSERT ... ON CONFLICT path).
  const dupN = Math.max(1000, Math.floor(n / 10));
  const t1 = performance.now();
  const d = await list.import('bench', items(dupN));
  const dupMs = performance.now() - t1;
  if (d.inserted !== 0) throw new Error('duplicates were inserted');
  return [
    {
      system: 'pgcoord',
      metric: 'page_1000_p50_ms',
      value: quantile(samples, 0.5),
      note: `keyset page of 1,000 from a ${n.toLocaleString('en-US')}-item list; p99 ${quantile(samples, 0.99).toFixed(2)} ms`,
    },
    {
      system: 'pgcoord',
      metric: 'duplicate_items_per_s',
      value: (dupN / dupMs) * 1000,
      note: `re-import of ${dupN.toLocaleString('en-US')} existing items, all skipped`,
    },
  ];
}

export default scenario;
