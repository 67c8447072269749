// The worker's batchSize (several claims in flight) and prefetch (items claimed ahead of free
// slots): limits kept, leases of waiting items kept, nothing lost or run twice, stop gives back.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AttemptList, ValidationError, type Claim } from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { nextEvent, waitFor } from '../helpers/wait-for.js';
import { deferred, listRows } from '../helpers/worker-test.js';

const db = useTestDatabase();

let n = 0;
const fresh = (label: string) => `${label}-${++n}`;

const rows = (list: string) => listRows(db.pool, list);

/** Records the limit of every completeAndClaim the list's workers make, and the most at once. */
function watchClaims(list: AttemptList) {
  const seen = { limits: [] as number[], inFlight: 0, peak: 0 };
  const real = list.completeAndClaim.bind(list);
  list.completeAndClaim = async (name, done, options) => {
    seen.limits.push(options.limit);
    seen.peak = Math.max(seen.peak, ++seen.inFlight);
    try {
      return await real(name, done, options);
    } finally {
      seen.inFlight--;
    }
  };
  return seen;
}

const items = (count: number, prefix: string) =>
  Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(4, '0')}`);

describe('Worker batchSize and prefetch', () => {
  it('batchSize: claims at most batchSize per round trip, several at once, within concurrency', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('batch');
    const all = items(300, 'b');
    await list.insertBatch(name, all);
    const claims = watchClaims(list);
    const seen = new Map<string, number>();
    let inFlight = 0;
    let peak = 0;
    const worker = list.work(
      name,
      async ({ item }) => {
        peak = Math.max(peak, ++inFlight);
        seen.set(item, (seen.get(item) ?? 0) + 1);
        await new Promise<void>((resolve) => setImmediate(resolve));
        inFlight--;
      },
      { concurrency: 40, batchSize: 10, pollIntervalMs: 50 },
    );
    await waitFor(async () => (await list.count(name)) === 0);
    await worker.stop();
    expect([...seen.keys()].sort()).toEqual(all);
    expect([...seen.values()].every((c) => c === 1)).toBe(true);
    expect(peak).toBeLessThanOrEqual(40);
    expect(Math.max(...claims.limits)).toBe(10);
    // The first four go out together: 40 free slots in batches of 10.
    expect(claims.peak).toBe(4);
    expect(worker.metrics()).toMatchObject({ claimed: 300, started: 300, completed: 300 });
  });

  it('prefetch: claims ahead of free slots and starts them as slots free; stop gives back the unstarted', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('ahead');
    await list.insertBatch(name, items(20, 'p'));
    const gate = deferred();
    const started: string[] = [];
    const worker = list.work(
      name,
      async ({ item }) => {
        started.push(item);
        await gate.promise;
      },
      { concurrency: 2, prefetch: 3, pollIntervalMs: 20 },
    );
    await waitFor(() => worker.metrics().claimed === 5);
    expect(started).toHaveLength(2);
    expect(worker.metrics().inFlight).toBe(2);
    expect((await rows(name)).filter((r) => r.leased)).toHaveLength(5);
    const stopping = worker.stop();
    gate.resolve();
    await stopping;
    // The two running completed; the three claimed ahead went back, no attempt counted.
    expect(started).toHaveLength(2);
    const left = await rows(name);
    expect(left).toHaveLength(18);
    expect(left.every((r) => r.attempts === 0 && !r.leased)).toBe(true);
    expect(worker.metrics()).toMatchObject({ completed: 2, released: 3, inFlight: 0 });
  });

  it('prefetch: while items wait, claims go out in full batches', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('full');
    await list.insertBatch(name, items(400, 'f'));
    const claims = watchClaims(list);
    const worker = list.work(name, () => new Promise<void>((resolve) => setTimeout(resolve, 1)), {
      concurrency: 10,
      prefetch: 90,
      batchSize: 20,
      pollIntervalMs: 50,
    });
    await waitFor(async () => (await list.count(name)) === 0);
    await worker.stop();
    const partial = claims.limits.filter((l) => l > 0 && l < 20);
    const full = claims.limits.filter((l) => l === 20);
    expect(full.length).toBeGreaterThanOrEqual(400 / 20);
    expect(partial.length).toBeLessThan(full.length / 4);
    expect(worker.metrics()).toMatchObject({ claimed: 400, completed: 400 });
  });

  it('prefetch: completions held for a full batch are sent within the lease anyway', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('held');
    await list.insertBatch(name, items(22, 'h'));
    const gate = deferred();
    let started = 0;
    // The first two finish at once; the rest wait: 2 done, 2 running, 18 claimed ahead, so no
    // full batch of 20 frees up and only the lease bound sends the two completions.
    const worker = list.work(
      name,
      async () => {
        if (++started > 2) await gate.promise;
      },
      { concurrency: 2, prefetch: 20, batchSize: 20, leaseMs: 300, pollIntervalMs: 60_000 },
    );
    await waitFor(() => worker.metrics().completed === 2, { timeoutMs: 5_000 });
    const left = await rows(name);
    expect(left).toHaveLength(20);
    expect(left.every((r) => r.leased)).toBe(true);
    gate.resolve();
    await waitFor(async () => (await list.count(name)) === 0);
    await worker.stop();
    expect(worker.metrics()).toMatchObject({ completed: 22, leaseLost: 0 });
  });

  it('prefetch: a waiting item keeps its lease while a handler runs several leases long', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('keep');
    await list.insertBatch(name, ['a-first', 'b-second']);
    const other = new AttemptList(db.pool);
    const runs = new Map<string, number>();
    const gate = deferred();
    // Both claims go out at once, so either item may start first: the first one started waits.
    const worker = list.work(
      name,
      async ({ item }) => {
        runs.set(item, (runs.get(item) ?? 0) + 1);
        if (runs.size === 1) await gate.promise;
      },
      { concurrency: 1, prefetch: 1, leaseMs: 300, pollIntervalMs: 20 },
    );
    await waitFor(() => worker.metrics().claimed === 2);
    expect(runs.size).toBe(1);
    const start = Date.now();
    let probes = 0;
    await waitFor(
      async () => {
        expect(await other.claim(name, { limit: 2, leaseMs: 1_000 })).toEqual([]);
        probes++;
        return Date.now() - start > 5 * 300;
      },
      { intervalMs: 50 },
    );
    gate.resolve();
    await waitFor(async () => (await list.count(name)) === 0);
    await worker.stop();
    expect(probes).toBeGreaterThan(3);
    expect(Object.fromEntries(runs)).toEqual({ 'a-first': 1, 'b-second': 1 });
    expect(worker.metrics()).toMatchObject({ completed: 2, leaseLost: 0 });
  });

  it('prefetch: a waiting item whose lease is lost is dropped, never run', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('drop');
    await list.insertBatch(name, ['a-first', 'b-second']);
    const gate = deferred();
    const ran: string[] = [];
    const worker = list.work(
      name,
      async ({ item }) => {
        ran.push(item);
        await gate.promise;
      },
      { concurrency: 1, prefetch: 1, leaseMs: 300, pollIntervalMs: 60_000 },
    );
    await waitFor(() => worker.metrics().claimed === 2);
    expect(ran).toHaveLength(1);
    const waiting = ran[0] === 'a-first' ? 'b-second' : 'a-first';
    const lost = nextEvent<{ item: string }>(worker, 'lease:lost');
    // Another worker steals the waiting item: its lease made to look expired and claimed again,
    // in one transaction so no heartbeat slips in between.
    const client = await db.pool.connect();
    let thief: Claim[];
    try {
      await client.query('BEGIN');
      await client.query(
        `UPDATE pgcoord.list_items SET run_at = now() - interval '1 s', leased_until = now() - interval '1 s'
          WHERE list = $1 AND item = $2`,
        [name, waiting],
      );
      thief = await list.claim(name, { limit: 1, leaseMs: 60_000, tx: client });
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    expect(thief.map((c) => c.item)).toEqual([waiting]);
    expect((await lost).item).toBe(waiting);
    gate.resolve();
    await waitFor(() => worker.metrics().completed === 1);
    await worker.stop();
    expect(ran).toHaveLength(1);
    expect(worker.metrics()).toMatchObject({ leaseLost: 1, released: 0 });
    // The thief still holds it and can complete it.
    expect((await list.complete(name, thief)).count).toBe(1);
  });

  it('refuses a bad batchSize or prefetch before anything starts', () => {
    const list = new AttemptList(db.pool);
    const ok = async () => undefined;
    const bad = fc.oneof(
      fc.integer({ max: 0 }),
      fc.integer({ min: 10_001 }),
      fc.double({ noInteger: true }),
      fc.constant(Number.NaN),
      fc.string(),
    );
    fc.assert(
      fc.property(bad, fc.constantFrom('batchSize', 'prefetch'), (value, option) => {
        if (option === 'prefetch' && value === 0) return; // 0 is prefetch's default
        let error: unknown;
        try {
          list.work('l', ok, { [option]: value });
        } catch (err) {
          error = err;
        }
        expect(error).toBeInstanceOf(ValidationError);
        expect((error as ValidationError).argument).toBe(`options.${option}`);
      }),
    );
  });
});
