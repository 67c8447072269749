// npm run bench:ab -- <old-checkout> [workload ...] [--rounds N] [--quick]
// Old code against new code, back to back, in one process: the same workload runs on pgcoord as
// imported from another checkout (a worktree of the old commit) and from this one, in alternating
// rounds on fresh databases, and each round pair gives a ratio (new / old). What a hot-path change
// needs to show; the machine is shared, so only ratios within one run count.
//
// Workloads: lists-claim (import, then 4 workers completeAndClaim in batches of 100),
// lists-work (import, then list.work with a no-op handler at the lists-work scenario's settings),
// lists-work-1ms (the same with 1 ms of async work per item, 50 in flight),
// lists-insert (8 callers, insertOne: one transaction each),
// lists-limits (a Zipf backlog over keys, per-key concurrency 2, 4 workers completeAndClaim in
// batches of 100: the limited claim and settlement of migrations 0014+),
// ratelimit (16 callers, fixed window, 1,000 keys), kv (16 callers, set then get). Writes
// bench/results/ab/<workload>.json.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { createDatabase, databaseUrl, dropDatabase } from '../test/helpers/db.js';
import { root, type BenchResult } from './lib.js';
import { itemName, zipfKeys } from './anchors/lists-anchor.js';
import { items } from './lists-workers.js';
import { FAST_WORKER, SLOW_WORKER } from './scenarios/lists-work.js';

type Pgcoord = typeof import('../src/index.js');

const args = process.argv.slice(2);
const oldDir = args.find((a) => !a.startsWith('--'));
if (!oldDir || !fs.existsSync(path.join(oldDir, 'src/index.ts'))) {
  console.error(
    'usage: npm run bench:ab -- <old-checkout> [lists-claim|lists-work|lists-work-1ms|lists-insert|lists-limits|ratelimit|kv ...] [--rounds N] [--quick]',
  );
  process.exit(2);
}
const quick = args.includes('--quick');
const roundsArg = args.indexOf('--rounds');
const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : quick ? 2 : 4;
const known = [
  'lists-claim',
  'lists-work',
  'lists-work-1ms',
  'lists-insert',
  'lists-limits',
  'ratelimit',
  'kv',
];
const wanted = args.filter((a, i) => known.includes(a) && args[i - 1] !== '--rounds');
const workloads = wanted.length > 0 ? wanted : known;

const versions: Record<'old' | 'new', Pgcoord> = {
  old: (await import(pathToFileURL(path.resolve(oldDir, 'src/index.ts')).href)) as Pgcoord,
  new: (await import(pathToFileURL(path.join(root, 'src/index.ts')).href)) as Pgcoord,
};

async function onFreshDatabase<T>(label: string, fn: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const name = await createDatabase(`ab_${label}`);
  const pool = new pg.Pool({ connectionString: databaseUrl(name), max: 17 });
  pool.on('error', () => undefined);
  try {
    return await fn(pool);
  } finally {
    await pool.end();
    await dropDatabase(name);
  }
}

/** Runs `callers` loops of `call` for `ops` calls in all; returns calls per second. */
async function drive(
  callers: number,
  ops: number,
  call: (i: number) => Promise<unknown>,
): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (next < ops) await call(next++);
    }),
  );
  return (ops / (performance.now() - t0)) * 1000;
}

const run: Record<string, (p: Pgcoord, pool: pg.Pool) => Promise<number>> = {
  async 'lists-claim'(p, pool) {
    const n = quick ? 20_000 : 100_000;
    await p.migrate(pool);
    const list = new p.AttemptList(pool);
    await list.import('ab', items(n));
    await pool.query('VACUUM ANALYZE pgcoord.list_items');
    let remaining = n;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        let held: Awaited<ReturnType<typeof list.claim>> = [];
        for (;;) {
          const limit = Math.min(100, remaining);
          remaining -= limit;
          const r = await list.completeAndClaim('ab', held, { limit, leaseMs: 60_000 });
          remaining += limit - r.claims.length;
          held = r.claims;
          if (held.length === 0) return;
        }
      }),
    );
    if (remaining !== 0) throw new Error(`${remaining} items were not processed`);
    return (n / (performance.now() - t0)) * 1000;
  },
  // Options the old code does not know are ignored by it (its option checks take unknown keys).
  'lists-work': (p, pool) => work(p, pool, quick ? 20_000 : 100_000, FAST_WORKER, 0),
  'lists-work-1ms': (p, pool) => work(p, pool, quick ? 5_000 : 30_000, SLOW_WORKER, 1),
  async 'lists-insert'(p, pool) {
    await p.migrate(pool);
    const list = new p.AttemptList(pool);
    await list.insertOne('ab', 'warm');
    return drive(8, quick ? 5_000 : 20_000, (i) => list.insertOne('ab', `item-${i}`));
  },
  async 'lists-limits'(p, pool) {
    const n = quick ? 6_000 : 30_000;
    const keys = zipfKeys(n, quick ? 60 : 300);
    await p.migrate(pool);
    const list = new p.AttemptList(pool);
    await list.setLimits('ab', { perKey: { concurrency: 2 } });
    await list.insertBatch(
      'ab',
      keys.map((key, i) => ({ item: itemName(i), key })),
    );
    await pool.query('VACUUM ANALYZE pgcoord.list_items');
    let done = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        let held: Awaited<ReturnType<typeof list.claim>> = [];
        for (;;) {
          const r = await list.completeAndClaim('ab', held, { limit: 100, leaseMs: 60_000 });
          done += r.count;
          held = r.claims;
          if (held.length > 0) continue;
          if (done >= n) return;
          // Every key with items is full (held by the other loops): wait for a slot, at most 2 ms.
          await new Promise((resolve) => setTimeout(resolve, Math.min(r.nextSlotMs ?? 2, 2)));
        }
      }),
    );
    if (done !== n) throw new Error(`${n - done} items were not processed`);
    return (n / (performance.now() - t0)) * 1000;
  },
  async ratelimit(p, pool) {
    await p.migrate(pool);
    const limiter = new p.RateLimiter(pool, { name: 'ab', limit: 1_000_000, periodMs: 60_000 });
    await limiter.consume('warm');
    return drive(16, quick ? 10_000 : 40_000, (i) => limiter.consume(`key-${i % 1000}`));
  },
  async kv(p, pool) {
    await p.migrate(pool);
    const kv = new p.KvStore(pool);
    await kv.set('warm', 'v');
    return drive(16, quick ? 10_000 : 40_000, (i) =>
      i % 2 === 0 ? kv.set(`key-${i % 1000}`, 'v', { ttlMs: 600_000 }) : kv.get(`key-${i % 1000}`),
    );
  },
};

/** Imports `n` items and runs list.work over them with `options`; returns items per second. */
async function work(
  p: Pgcoord,
  pool: pg.Pool,
  n: number,
  options: object,
  handlerMs: number,
): Promise<number> {
  await p.migrate(pool);
  const list = new p.AttemptList(pool);
  await list.import('ab', items(n));
  await pool.query('VACUUM ANALYZE pgcoord.list_items');
  let processed = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const handler = async () => {
    if (handlerMs > 0) await new Promise((r) => setTimeout(r, handlerMs));
    if (++processed === n) resolveDone();
  };
  const t0 = performance.now();
  const worker = list.work('ab', handler, options);
  await done;
  await worker.stop();
  const rate = (n / (performance.now() - t0)) * 1000;
  if ((await list.count('ab')) !== 0) throw new Error('items left in the list');
  return rate;
}

for (const workload of workloads) {
  const rates: Record<'old' | 'new', number[]> = { old: [], new: [] };
  for (let round = 0; round < rounds; round++) {
    // Alternate which goes first, so neither always meets the warmer (or the noisier) machine.
    const order: ('old' | 'new')[] = round % 2 === 0 ? ['old', 'new'] : ['new', 'old'];
    for (const which of order) {
      rates[which].push(
        await onFreshDatabase(`${workload}_${which}`, (pool) =>
          run[workload]!(versions[which], pool),
        ),
      );
    }
    console.log(
      `${workload} round ${round + 1}: old ${Math.round(rates.old[round]!)}, new ${Math.round(rates.new[round]!)} /s, ratio ${(rates.new[round]! / rates.old[round]!).toFixed(2)}`,
    );
  }
  const ratios = rates.new.map((r, i) => r / rates.old[i]!);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const results: BenchResult[] = [
    {
      system: 'pgcoord (old)',
      metric: 'per_s',
      value: Math.round(median(rates.old)),
      note: `median of ${rounds}`,
    },
    {
      system: 'pgcoord (new)',
      metric: 'per_s',
      value: Math.round(median(rates.new)),
      note: `median of ${rounds}`,
    },
    {
      system: 'new / old',
      metric: 'round_ratio',
      value: Number(median(ratios).toFixed(3)),
      note: `by round: ${ratios.map((r) => r.toFixed(2)).join(' / ')}`,
    },
  ];
  console.log(`${workload}: ratio by round ${ratios.map((r) => r.toFixed(2)).join(' / ')}`);
  // Beside, not among, the scenario results: these compare two versions of pgcoord, not systems.
  const out = path.join(root, 'bench/results/ab');
  fs.mkdirSync(out, { recursive: true });
  const body = {
    workload,
    quick,
    old: oldCommit(oldDir),
    date: new Date().toISOString(),
    results,
  };
  fs.writeFileSync(path.join(out, `${workload}.json`), JSON.stringify(body, null, 2) + '\n');
}

/** The commit of the old checkout (its folder when it is not a git checkout). */
function oldCommit(dir: string): string {
  try {
    return execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], {
      encoding: 'utf8',
    }).trim();
  } catch {
    return path.resolve(dir);
  }
}
