// pg-boss anchor for lists-import / lists-claim / lists-work, run on Node >= 22.12 (pg-boss 12
// needs it). Usage: pg-boss-lists.ts <insert|work|work-1ms|latency> <connectionString> <count>
// Prints one JSON line: { items_per_s, count, ms } (latency: { samples }).
import { PgBoss } from 'pg-boss';
import {
  addInChunks,
  analyzeDatabase,
  asyncWork,
  countdown,
  latencyProbe,
  timeItems,
} from './lists-anchor.js';

const [mode, url, countArg] = process.argv.slice(2);
const count = Number(countArg);
const queue = 'bench';
const INSERT_CHUNK = 5_000;

const boss = new PgBoss({
  connectionString: url,
  max: 8,
  schedule: false,
  supervise: false,
  // Its LISTEN/NOTIFY wake-up (12.x, opt-in per queue): only the latency mode's queue notifies.
  useListenNotify: mode === 'latency',
});
boss.on('error', (err) => console.error('pg-boss error:', err));
await boss.start();
await boss.createQueue(queue, { notify: mode === 'latency' });

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
} else if (mode === 'latency') {
  const probe = latencyProbe();
  await boss.work(queue, { pollingIntervalSeconds: 0.5 }, async () => probe.started());
  result = await probe.run(count, 30, (i) =>
    boss.send(queue, { item: `item-${String(i).padStart(9, '0')}` }),
  );
} else {
  await insertAll();
  await analyzeDatabase(url!);
  const processed = countdown(count);
  // Fastest documented settings for many short jobs: several local workers, batches, and
  // burstWhenBatchFull so a worker fetches again at once while batches come back full. With
  // 1 ms of work per job: 5 workers x 10, so 50 jobs in flight, as the others run.
  const slow = mode === 'work-1ms';
  result = await timeItems(count, async () => {
    await boss.work(
      queue,
      {
        batchSize: slow ? 10 : 100,
        localConcurrency: slow ? 5 : 4,
        burstWhenBatchFull: true,
        pollingIntervalSeconds: 0.5,
      },
      slow
        ? async (jobs) => {
            await Promise.all(jobs.map(() => asyncWork(1)));
            processed.add(jobs.length);
          }
        : async (jobs) => processed.add(jobs.length),
    );
    await processed.done;
    // The batch is completed after the handler returns: wait for the last completions to land.
  });
}
await boss.stop({ graceful: true });
console.log(JSON.stringify(result));
