// graphile-worker anchor for lists-import / lists-claim, run under Node 22 (0.18 needs it).
// Usage: graphile-worker-lists.ts <add|work> <connectionString> <count>
// Prints one JSON line: { items_per_s, count, ms }.
import { makeWorkerUtils, run } from 'graphile-worker';
import pg from 'pg';

const [mode, url, countArg] = process.argv.slice(2);
const count = Number(countArg);
const ADD_CHUNK = 5_000;

const utils = await makeWorkerUtils({ connectionString: url });
await utils.migrate();

async function addAll(): Promise<void> {
  for (let i = 0; i < count; i += ADD_CHUNK) {
    const n = Math.min(ADD_CHUNK, count - i);
    await utils.addJobs(
      Array.from({ length: n }, (_, j) => ({
        identifier: 'noop',
        payload: { item: `item-${String(i + j).padStart(9, '0')}` },
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
if (mode === 'add') {
  const t0 = performance.now();
  await addAll();
  const ms = performance.now() - t0;
  result = { items_per_s: (count / ms) * 1000, count, ms };
} else {
  await addAll();
  // Fresh statistics before the clock starts, as pgcoord's import leaves them: the planner must
  // not take a just-filled queue for an empty one.
  await analyze();
  let processed = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const t0 = performance.now();
  // The configuration of graphile-worker's published performance figures
  // (worker.graphile.org/docs/performance): 24 concurrent jobs, a local queue of 500 so one query
  // locks a batch, batched completion. Pool 12 rather than 25: the server is shared.
  const runner = await run({
    noHandleSignals: true,
    taskList: {
      noop: async () => {
        processed++;
        if (processed >= count) resolveDone();
      },
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
  await done;
  await runner.stop();
  const ms = performance.now() - t0;
  result = { items_per_s: (count / ms) * 1000, count, ms };
}
await utils.release();
console.log(JSON.stringify(result));
