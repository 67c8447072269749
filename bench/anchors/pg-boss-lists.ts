// pg-boss anchor for lists-import / lists-claim, run on Node >= 22.12 (pg-boss 12 needs it).
// Usage: pg-boss-lists.ts <insert|work> <connectionString> <count>
// Prints one JSON line: { items_per_s, count, ms }.
import { PgBoss } from 'pg-boss';
import { addInChunks, analyzeDatabase, countdown, timeItems } from './lists-anchor.js';

const [mode, url, countArg] = process.argv.slice(2);
const count = Number(countArg);
const queue = 'bench';
const INSERT_CHUNK = 5_000;

const boss = new PgBoss({ connectionString: url, max: 8, schedule: false, supervise: false });
boss.on('error', (err) => console.error('pg-boss error:', err));
await boss.start();
await boss.createQueue(queue);

async function insertAll(): Promise<void> {
  await addInChunks(count, INSERT_CHUNK, (names) =>
    boss.insert(
      queue,
      names.map((item) => ({ data: { item } })),
    ),
  );
}

let result;
if (mode === 'insert') {
  result = await timeItems(count, insertAll);
} else {
  await insertAll();
  await analyzeDatabase(url!);
  const processed = countdown(count);
  result = await timeItems(count, async () => {
    // Fastest documented settings for many trivial jobs: 4 local workers, batches of 100, and
    // burstWhenBatchFull so a worker fetches again at once while batches come back full.
    await boss.work(
      queue,
      {
        batchSize: 100,
        localConcurrency: 4,
        burstWhenBatchFull: true,
        pollingIntervalSeconds: 0.5,
      },
      async (jobs) => processed.add(jobs.length),
    );
    await processed.done;
    // The batch is completed after the handler returns: wait for the last completions to land.
  });
}
await boss.stop({ graceful: true });
console.log(JSON.stringify(result));
