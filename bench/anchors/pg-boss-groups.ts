// pg-boss anchor for lists-limits, run on Node >= 22.12 (pg-boss 12 needs it): the Zipf backlog
// of jobs with a group per key, worked with groupConcurrency (at most N active jobs per group,
// across all nodes: pg-boss's nearest feature to a per-key concurrency limit).
// Usage: pg-boss-groups.ts <connectionString> <count> <keys> <groupConcurrency>
// Prints one JSON line: { items_per_s, count, ms }.
import { PgBoss } from 'pg-boss';
import { analyzeDatabase, countdown, itemName, timeItems, zipfKeys } from './lists-anchor.js';

const [url, countArg, keysArg, groupArg] = process.argv.slice(2);
const count = Number(countArg);
const keys = zipfKeys(count, Number(keysArg));
const queue = 'bench';
const INSERT_CHUNK = 5_000;

const boss = new PgBoss({ connectionString: url, max: 8, schedule: false, supervise: false });
boss.on('error', (err) => console.error('pg-boss error:', err));
await boss.start();
await boss.createQueue(queue);
for (let i = 0; i < count; i += INSERT_CHUNK) {
  const n = Math.min(INSERT_CHUNK, count - i);
  await boss.insert(
    queue,
    Array.from({ length: n }, (_, j) => ({
      data: { item: itemName(i + j) },
      group: { id: keys[i + j]! },
    })),
  );
}
await analyzeDatabase(url!);
const processed = countdown(count);
const result = await timeItems(count, async () => {
  // The fastest settings of lists-claim's pg-boss row, plus groupConcurrency.
  await boss.work(
    queue,
    {
      batchSize: 100,
      localConcurrency: 4,
      burstWhenBatchFull: true,
      pollingIntervalSeconds: 0.5,
      groupConcurrency: Number(groupArg),
    },
    async (jobs) => processed.add(jobs.length),
  );
  await processed.done;
});
await boss.stop({ graceful: true });
console.log(JSON.stringify(result));
