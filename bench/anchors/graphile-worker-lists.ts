// graphile-worker anchor for lists-import / lists-claim / lists-work, run on Node >= 22.12 (0.18
// needs it). Usage: graphile-worker-lists.ts <add|work|work-1ms|latency> <connectionString> <count>
// Prints one JSON line: { items_per_s, count, ms } (latency: { samples }).
import { Logger, makeWorkerUtils, run, type Task } from 'graphile-worker';
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
const ADD_CHUNK = 5_000;

const utils = await makeWorkerUtils({ connectionString: url });
await utils.migrate();
const quiet = new Logger(() => () => undefined);

async function addAll(): Promise<void> {
  await addInChunks(count, ADD_CHUNK, (names) =>
    utils.addJobs(names.map((item) => ({ identifier: 'noop', payload: { item } }))),
  );
}

/**
 * Runs graphile-worker's runner over the `count` queued jobs with `task`, until all ran. The
 * configuration of its published performance figures (worker.graphile.org/docs/performance): a
 * local queue of 500 so one query locks a batch, batched completion; pool 12 rather than 25 (the
 * server is shared).
 */
async function drain(concurrentJobs: number, task: (done: () => void) => Task): Promise<void> {
  const processed = countdown(count);
  const worker: GraphileConfig.WorkerOptions = {
    connectionString: url,
    concurrentJobs,
    maxPoolSize: 12,
    pollInterval: 100,
    localQueue: { size: 500 },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
  };
  const runner = await run({
    noHandleSignals: true,
    taskList: { noop: task(() => processed.add(1)) },
    preset: { worker },
    logger: quiet,
  });
  await processed.done;
  await runner.stop();
}

let result;
if (mode === 'add') {
  result = await timeItems(count, addAll);
} else if (mode === 'latency') {
  // Idle runner woken by its LISTEN on jobs:insert (no local queue: it would batch the fetch).
  const probe = latencyProbe();
  const runner = await run({
    noHandleSignals: true,
    taskList: { noop: async () => probe.started() },
    preset: { worker: { connectionString: url, concurrentJobs: 10, maxPoolSize: 12 } },
    logger: quiet,
  });
  result = await probe.run(count, 30, (i) =>
    utils.addJob('noop', { item: `item-${String(i).padStart(9, '0')}` }),
  );
  await runner.stop();
} else {
  await addAll();
  await analyzeDatabase(url!);
  if (mode === 'work-1ms') {
    result = await timeItems(count, () =>
      drain(50, (done) => async () => {
        await asyncWork(1);
        done();
      }),
    );
  } else {
    result = await timeItems(count, () => drain(24, (done) => async () => done()));
  }
}
await utils.release();
console.log(JSON.stringify(result));
