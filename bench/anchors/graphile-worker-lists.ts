// graphile-worker anchor for lists-import / lists-claim, run on Node >= 22.12 (0.18 needs it).
// Usage: graphile-worker-lists.ts <add|work> <connectionString> <count>
// Prints one JSON line: { items_per_s, count, ms }.
import { makeWorkerUtils, run } from 'graphile-worker';
import { addInChunks, analyzeDatabase, countdown, timeItems } from './lists-anchor.js';

const [mode, url, countArg] = process.argv.slice(2);
const count = Number(countArg);
const ADD_CHUNK = 5_000;

const utils = await makeWorkerUtils({ connectionString: url });
await utils.migrate();

async function addAll(): Promise<void> {
  await addInChunks(count, ADD_CHUNK, (names) =>
    utils.addJobs(names.map((item) => ({ identifier: 'noop', payload: { item } }))),
  );
}

let result;
if (mode === 'add') {
  result = await timeItems(count, addAll);
} else {
  await addAll();
  await analyzeDatabase(url!);
  const processed = countdown(count);
  result = await timeItems(count, async () => {
    // The configuration of graphile-worker's published performance figures
    // (worker.graphile.org/docs/performance): 24 concurrent jobs, a local queue of 500 so one query
    // locks a batch, batched completion. Pool 12 rather than 25: the server is shared.
    const runner = await run({
      noHandleSignals: true,
      taskList: {
        noop: async () => processed.add(1),
      },
      preset: {
        worker: {
          connectionString: url,
          concurrentJobs: 24,
          maxPoolSize: 12,
          pollInterval: 100,
          localQueue: { size: 500 },
          completeJobBatchDelay: 0,
          failJobBatchDelay: 0,
        },
      },
      logger: new (await import('graphile-worker')).Logger(() => () => undefined),
    });
    await processed.done;
    await runner.stop();
  });
}
await utils.release();
console.log(JSON.stringify(result));
