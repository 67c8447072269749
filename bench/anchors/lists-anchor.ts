// Pieces shared by the lists anchors (pg-boss, graphile-worker), run on Node >= 22.12; kept free of
// pgcoord and vitest imports so an anchor loads only its own system and pg.
import pg from 'pg';

/** Deterministic item names, as every system in a scenario gets the same rows. */
export function itemName(i: number): string {
  return `item-${String(i).padStart(9, '0')}`;
}

/** What a lists anchor (bench/anchors/*-lists.ts) prints as its last line. */
export interface AnchorResult {
  items_per_s: number;
  count: number;
  ms: number;
}

/** Runs `fn` (which handles `count` items) and measures its rate, as an anchor reports it. */
export async function timeItems(count: number, fn: () => Promise<void>): Promise<AnchorResult> {
  const t0 = performance.now();
  await fn();
  const ms = performance.now() - t0;
  return { items_per_s: (count / ms) * 1000, count, ms };
}

/** Hands `count` items (named by itemName) to `add` in calls of `chunk`: how anchors fill a queue. */
export async function addInChunks(
  count: number,
  chunk: number,
  add: (names: string[]) => Promise<unknown>,
): Promise<void> {
  for (let i = 0; i < count; i += chunk) {
    const n = Math.min(chunk, count - i);
    await add(Array.from({ length: n }, (_, j) => itemName(i + j)));
  }
}

/**
 * ANALYZE on the database at `url` (a short-lived connection): fresh statistics before the
 * clock starts, as pgcoord's import leaves them, so the planner does not take a just-filled
 * queue for an empty one.
 */
export async function analyzeDatabase(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('ANALYZE');
  } finally {
    await client.end();
  }
}

/** A promise that resolves once `add` has counted `count` processed items. */
export function countdown(count: number): { add(n: number): void; done: Promise<void> } {
  let processed = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  return {
    add(n) {
      processed += n;
      if (processed >= count) resolveDone();
    },
    done,
  };
}

/** What a latency mode prints as its last line: insert -> handler start, in ms, per sample. */
export interface LatencyResult {
  samples: number[];
}

/**
 * Idle insert -> handler start latency, on one process clock: `send(i)` inserts one item while the
 * workers sit idle (LISTENing), and the handler calls `started()` first thing. Each sample waits
 * for its handler, then `gapMs` of quiet. The first `warmUp` samples are dropped.
 */
export function latencyProbe(): {
  started(): void;
  run(
    samples: number,
    gapMs: number,
    send: (i: number) => Promise<unknown>,
    warmUp?: number,
  ): Promise<LatencyResult>;
} {
  let sentAt = 0;
  let resolveStart: ((ms: number) => void) | undefined;
  return {
    started() {
      const r = resolveStart;
      resolveStart = undefined;
      r?.(performance.now() - sentAt);
    },
    async run(samples, gapMs, send, warmUp = 5) {
      const out: number[] = [];
      for (let i = 0; i < samples + warmUp; i++) {
        const started = new Promise<number>((r) => (resolveStart = r));
        sentAt = performance.now();
        await send(i);
        const ms = await started;
        if (i >= warmUp) out.push(ms);
        await new Promise((r) => setTimeout(r, gapMs));
      }
      return { samples: out };
    },
  };
}

/** A handler's 1 ms of async work (a timer, as an I/O wait would be). */
export function asyncWork(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Sizes of `keys` keys holding `count` items, Zipf-skewed (s = 1: key k holds about 1/(k+1) of
 * the first key's share), each at least 1, summing to `count`: the lists-limits backlog.
 */
export function zipfSizes(count: number, keys: number): number[] {
  const weights = Array.from({ length: keys }, (_, k) => 1 / (k + 1));
  const total = weights.reduce((a, b) => a + b, 0);
  const sizes = weights.map((w) => Math.max(1, Math.floor((w / total) * count)));
  let left = count - sizes.reduce((a, b) => a + b, 0);
  for (let k = 0; left !== 0; k = (k + 1) % keys) {
    const step = left > 0 ? 1 : -1;
    if (sizes[k]! + step >= 1) {
      sizes[k]! += step;
      left -= step;
    }
  }
  return sizes;
}

/** The key (`key-<k>`) of each item of a Zipf backlog, in insert order: keys interleaved. */
export function zipfKeys(count: number, keys: number): string[] {
  const sizes = zipfSizes(count, keys);
  const out: string[] = [];
  const left = [...sizes];
  while (out.length < count) {
    for (let k = 0; k < keys; k++) {
      if (left[k]! > 0) {
        out.push(`key-${k}`);
        left[k]!--;
      }
    }
  }
  return out;
}
