// pg-boss anchor for lists-import / lists-claim, run under Node 22 (pg-boss 12 needs it).
// Usage: pg-boss-lists.ts <insert|work> <connectionString> <count>
// Prints one JSON line: { items_per_s, count, ms }.
import { PgBoss } from 'pg-boss';
import pg from 'pg';

const [mode, url, countArg] = process.argv.slice(2);
const count = Number(countArg);
const queue = 'bench';
const INSERT_CHUNK = 5_000;

const boss = new PgBoss({ connectionString: url, max: 8, schedule: false, supervise: false });
boss.on('error', (err) => console.error('pg-boss error:', err));
await boss.start();
await boss.createQueue(queue);

async function insertAll(): Promise<void> {
  for (let i = 0; i < count; i += INSERT_CHUNK) {
    const n = Math.min(INSERT_CHUNK, count - i);
    await boss.insert(
      queue,
      Array.from({ length: n }, (_, j) => ({
        data: { item: `item-${String(i + j).padStart(9, '0')}` },
      })),
    );
  }
}

async function analyze(): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('ANALYZE');
  } finally {
    await client.end();
  }
}

let result: Record<string, number>;
if (mode === 'insert') {
  const t0 = performance.now();
  await insertAll();
  const ms = performance.now() - t0;
  result = { items_per_s: (count / ms) * 1000, count, ms };
} else {
  await insertAll();
  // Fresh statistics before the clock starts, as pgcoord's import leaves them: the planner must
  // not take a just-filled queue for an empty one.
  await analyze();
  let processed = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const t0 = performance.now();
  // Fastest documented settings for many trivial jobs: 4 local workers, batches of 100, and
  // burstWhenBatchFull so a worker fetches again at once while batches come back full.
  await boss.work(
    queue,
    { batchSize: 100, localConcurrency: 4, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5 },
    async (jobs) => {
      processed += jobs.length;
      if (processed >= count) resolveDone();
    },
  );
  await done;
  // The batch is completed after the handler returns: wait for the last completions to land.
  const ms = performance.now() - t0;
  result = { items_per_s: (count / ms) * 1000, count, ms };
}
await boss.stop({ graceful: true });
console.log(JSON.stringify(result));
