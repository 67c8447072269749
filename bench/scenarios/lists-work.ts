// lists-work: the worker (list.work) against graphile-worker's runner and pg-boss's work(), each
// at its fastest documented settings, in its own process: throughput with a no-op async handler,
// throughput with 1 ms of async work per item at 50 in flight, and idle insert -> handler start
// latency through each one's LISTEN wake-up. Throughput rounds alternate the systems (a fresh
// database each), and each round gives pgcoord's ratio to each.
import type { WorkerOptions } from '../../src/index.js';
import type { AnchorResult, LatencyResult } from '../anchors/lists-anchor.js';
import {
  packageVersion,
  quantile,
  requireAnchorNode,
  runAnchor,
  type BenchResult,
  type Scenario,
  type ScenarioContext,
} from '../lib.js';
import { roundRatio, spread } from '../lists-workers.js';

/**
 * pgcoord's settings for many short items, as docs/attempt-lists.md (worker tuning) tells users:
 * a high concurrency, claimed in batches of 1,000, so two claims are in flight.
 */
export const FAST_WORKER: WorkerOptions = { concurrency: 2000, batchSize: 1000 };
/** 50 items in flight per process, 1 ms of async work each; 450 more claimed ahead (500 held, as graphile-worker's local queue), in claims of 100. */
export const SLOW_WORKER: WorkerOptions = { concurrency: 50, prefetch: 450, batchSize: 100 };

interface System {
  name: string;
  script: string;
  /** Extra arguments after `<mode> <url> <count>`. */
  args(mode: string): string[];
  note(mode: string): string;
}

const node = `Node ${process.versions.node}`;
const SYSTEMS: System[] = [
  {
    name: 'pgcoord',
    script: 'bench/fixtures/pgcoord-worker.ts',
    args: (mode) => [
      JSON.stringify(mode === 'work-1ms' ? SLOW_WORKER : mode === 'latency' ? {} : FAST_WORKER),
    ],
    note: (mode) =>
      mode === 'work-1ms'
        ? `list.work concurrency ${SLOW_WORKER.concurrency}, prefetch ${SLOW_WORKER.prefetch}, batchSize ${SLOW_WORKER.batchSize}`
        : mode === 'latency'
          ? 'list.work defaults, woken through its own Listener; insertOne'
          : `list.work concurrency ${FAST_WORKER.concurrency}, batchSize ${FAST_WORKER.batchSize}`,
  },
  {
    name: 'graphile-worker',
    script: 'bench/anchors/graphile-worker-lists.ts',
    args: () => [],
    note: (mode) =>
      `graphile-worker ${packageVersion('graphile-worker')}: ` +
      (mode === 'latency'
        ? 'run(), concurrentJobs 10, its LISTEN wake-up; addJob'
        : `run(), concurrentJobs ${mode === 'work-1ms' ? 50 : 24}, localQueue 500, completeJobBatchDelay 0 (its published perf setup)`),
  },
  {
    name: 'pg-boss',
    script: 'bench/anchors/pg-boss-lists.ts',
    args: () => [],
    note: (mode) =>
      `pg-boss ${packageVersion('pg-boss')}: ` +
      (mode === 'latency'
        ? 'work(), useListenNotify + queue notify (its LISTEN wake-up); send'
        : mode === 'work-1ms'
          ? 'work() localConcurrency 5 x batchSize 10, burstWhenBatchFull'
          : 'work() batchSize 100, localConcurrency 4, burstWhenBatchFull'),
  },
];

async function runSystem<T>(
  ctx: ScenarioContext,
  system: System,
  mode: string,
  count: number,
): Promise<T> {
  const url = await ctx.freshDatabase(`lists_work_${system.name.replace(/\W/g, '_')}`);
  return runAnchor<T>(system.script, [mode, url, String(count), ...system.args(mode)]);
}

/** Rounds of every system on `mode`, in a rotating order; rows of medians and round ratios. */
async function throughput(
  ctx: ScenarioContext,
  mode: string,
  metric: string,
  count: number,
  rounds: number,
): Promise<BenchResult[]> {
  const rates = new Map<string, number[]>(SYSTEMS.map((s) => [s.name, []]));
  for (let round = 0; round < rounds; round++) {
    const order = SYSTEMS.map((_, i) => SYSTEMS[(i + round) % SYSTEMS.length]!);
    for (const system of order) {
      const r = await runSystem<AnchorResult>(ctx, system, mode, count);
      rates.get(system.name)!.push(r.items_per_s);
    }
    ctx.log(
      `${metric} round ${round + 1}: ` +
        SYSTEMS.map((s) => `${s.name} ${Math.round(rates.get(s.name)![round]!)}`).join(', '),
    );
  }
  const size = `${count.toLocaleString('en-US')} items`;
  const results: BenchResult[] = SYSTEMS.map((s) => {
    const r = rates.get(s.name)!;
    return {
      system: s.name,
      metric,
      value: quantile(r, 0.5),
      note: `${size}; ${s.note(mode)}; median of ${rounds} (${spread(r)}); ${node}`,
    };
  });
  const ours = rates.get('pgcoord')!;
  for (const s of SYSTEMS.slice(1)) {
    const ratio = roundRatio(ours, rates.get(s.name)!, s.name);
    results.push({ ...ratio, metric: `${metric}_round_ratio` });
  }
  return results;
}

const scenario: Scenario = {
  name: 'lists-work',
  description:
    'list.work vs graphile-worker run() and pg-boss work(): no-op handler throughput (200,000 items; --quick 5,000), 1 ms handler at 50 in flight, idle insert -> handler start latency',
  async run(ctx) {
    requireAnchorNode(); // before any work: the pg-boss and graphile-worker rows need it
    const rounds = ctx.quick ? 1 : 3;
    const results: BenchResult[] = [];
    results.push(
      ...(await throughput(ctx, 'work', 'items_per_s', ctx.quick ? 5_000 : 200_000, rounds)),
    );
    results.push(
      ...(await throughput(
        ctx,
        'work-1ms',
        'items_per_s_1ms_handler',
        ctx.quick ? 2_000 : 30_000,
        rounds,
      )),
    );
    // Latency: one item at a time into an idle list, 30 ms apart, insert -> handler start.
    const samples = ctx.quick ? 20 : 300;
    for (const system of SYSTEMS) {
      const r = await runSystem<LatencyResult>(ctx, system, 'latency', samples);
      const p50 = quantile(r.samples, 0.5);
      const p99 = quantile(r.samples, 0.99);
      ctx.log(`${system.name} start latency: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms`);
      const note = `${r.samples.length} inserts 30 ms apart into an idle list; ${system.note('latency')}`;
      results.push(
        { system: system.name, metric: 'start_latency_p50_ms', value: p50, note },
        { system: system.name, metric: 'start_latency_p99_ms', value: p99, note },
      );
    }
    return results;
  },
};

export default scenario;
