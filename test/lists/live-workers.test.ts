// The live-workers table (issue 15): a row per running worker, refreshed, removed on stop,
// pruned after its horizon when the worker dies without stopping.
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AttemptList, ValidationError, type LiveWorker } from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { runReadmeExample } from '../helpers/readme-example.js';
import { nextEvent, waitFor } from '../helpers/wait-for.js';
import { deferred } from '../helpers/worker-test.js';

const db = useTestDatabase();
const here = path.dirname(fileURLToPath(import.meta.url));

let n = 0;
const fresh = (label: string) => `${label}-${++n}`;

async function serverNow(): Promise<Date> {
  const { rows } = await db.pool.query<{ now: Date }>('SELECT clock_timestamp() AS now');
  return rows[0]!.now;
}

/** Every row of the table, expired or not. */
async function rawRows(): Promise<Array<{ id: string; pid: number }>> {
  const { rows } = await db.pool.query<{ id: string; pid: number }>(
    'SELECT id::text AS id, pid FROM pgcoord.list_workers ORDER BY id',
  );
  return rows;
}

describe('live workers', () => {
  it('a running worker has a row with its fields, in flight kept fresh, removed on stop', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('fields');
    const gate = deferred();
    const before = await serverNow();
    const worker = list.work(name, () => gate.promise, {
      concurrency: 5,
      pollIntervalMs: 20,
      liveTtlMs: 1_500, // refreshed every 500 ms
    });
    const first = await waitFor(async () => (await list.workers(name))[0]);
    const after = await serverNow();
    expect(first).toEqual({
      id: worker.id,
      list: name,
      host: os.hostname(),
      pid: process.pid,
      concurrency: 5,
      inFlight: 0,
      startedAt: expect.any(Date),
      heartbeatAt: expect.any(Date),
    } satisfies Record<keyof LiveWorker, unknown>);
    expect(worker.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    // Server clock: between two readings of it around the first write.
    expect(first.startedAt.getTime()).toBeGreaterThanOrEqual(before.getTime());
    expect(first.startedAt.getTime()).toBeLessThanOrEqual(after.getTime());

    await list.insertBatch(name, ['a', 'b', 'c']);
    const busy = await waitFor(async () => {
      const w = (await list.workers(name))[0];
      return w?.inFlight === 3 ? w : undefined;
    });
    expect(busy.startedAt).toEqual(first.startedAt);
    expect(busy.heartbeatAt.getTime()).toBeGreaterThan(first.heartbeatAt.getTime());
    gate.resolve();
    await waitFor(async () => (await list.workers(name))[0]?.inFlight === 0);
    expect(await list.workers()).toEqual([expect.objectContaining({ id: worker.id })]);

    await worker.stop();
    expect(await list.workers(name)).toEqual([]);
    expect(await rawRows()).toEqual([]);
  });

  it('lists every worker of every list, or of one; refuses a bad list name', async () => {
    const list = new AttemptList(db.pool);
    const [x, y] = [fresh('x'), fresh('y')];
    const idle = async () => undefined;
    const w1 = list.work(x, idle, { concurrency: 1 });
    const w2 = list.work(x, idle, { concurrency: 2 });
    const w3 = list.work(y, idle, { concurrency: 3 });
    try {
      await waitFor(async () => (await list.workers()).length === 3);
      const all = await list.workers();
      expect(all.map((w) => w.list)).toEqual([x, x, y]);
      expect(new Set(all.map((w) => w.id))).toEqual(new Set([w1.id, w2.id, w3.id]));
      expect((await list.workers(y)).map((w) => w.id)).toEqual([w3.id]);
      expect(await list.workers('nobody-works-here')).toEqual([]);
      await expect(list.workers('')).rejects.toBeInstanceOf(ValidationError);
      await expect(list.workers(42 as never)).rejects.toMatchObject({ argument: 'list' });
    } finally {
      await Promise.all([w1.stop(), w2.stop(), w3.stop()]);
    }
    expect(await rawRows()).toEqual([]);
  });

  it('refuses a bad liveTtlMs before anything starts', () => {
    const list = new AttemptList(db.pool);
    for (const liveTtlMs of [0, -1, 29, Number.NaN, 1e12, '60000']) {
      expect(() =>
        list.work('l', async () => undefined, { liveTtlMs: liveTtlMs as number }),
      ).toThrow(ValidationError);
    }
  });

  it("a SIGKILLed worker's row stops counting at its horizon and the next refresh prunes it", async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('killed');
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        path.join(here, '../fixtures/worker-process.ts'),
        db.url,
        name,
        '2',
        '30000',
        '300',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.on('exit', (_code, signal) => resolve(signal)),
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const seen = await waitFor(
      async () => (await list.workers(name)).find((w) => w.pid === child.pid),
      { timeoutMs: 30_000, message: "the child's live row" },
    );
    expect(out).toContain(JSON.stringify({ id: seen.id }));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    // No one refreshes it: once its 300 ms horizon passes it is no longer live ...
    await waitFor(async () => (await list.workers(name)).length === 0);
    // ... but nobody has pruned it yet: no worker of this schema runs.
    expect((await rawRows()).map((r) => r.id)).toEqual([seen.id]);
    // The first refresh of any worker (another list, default horizon) deletes it.
    const other = list.work(fresh('pruner'), async () => undefined);
    const firstRefresh = nextEvent<{ pruned: number }>(other, 'live');
    try {
      expect(await firstRefresh).toEqual({ pruned: 1 });
      expect((await rawRows()).map((r) => r.id)).toEqual([other.id]);
    } finally {
      await other.stop();
    }
    expect(await rawRows()).toEqual([]);
  });

  it('failed refreshes never stop the worker: it keeps working, and writes its row again', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('outage');
    const handled: string[] = [];
    const errors: Error[] = [];
    const worker = list.work(name, async ({ item }) => void handled.push(item), {
      pollIntervalMs: 20,
      liveTtlMs: 600, // refreshed every 200 ms
    });
    worker.on('error', (err) => errors.push(err));
    const first = await waitFor(async () => (await list.workers(name))[0]);
    // The table goes away under it: every refresh fails (undefined_table), and is reported.
    await db.pool.query('ALTER TABLE pgcoord.list_workers RENAME TO list_workers_away');
    try {
      await waitFor(() => errors.length >= 2);
      expect(errors[0]!.message).toMatch(/list_workers/);
      await list.insertBatch(name, ['during-1', 'during-2']);
      await waitFor(() => handled.length === 2);
      await db.pool.query('DELETE FROM pgcoord.list_workers_away');
    } finally {
      await db.pool.query('ALTER TABLE pgcoord.list_workers_away RENAME TO list_workers');
    }
    // Back: the next refresh writes the row again, keeping its start time.
    const again = await waitFor(async () => (await list.workers(name))[0]);
    expect(again.id).toBe(worker.id);
    expect(again.startedAt).toEqual(first.startedAt);
    // A stop whose delete fails still stops (the row expires by itself).
    await db.pool.query('ALTER TABLE pgcoord.list_workers RENAME TO list_workers_away');
    try {
      const reported = errors.length;
      await worker.stop();
      expect(errors.length).toBeGreaterThan(reported);
      expect(errors.at(-1)!.message).toMatch(/list_workers/);
    } finally {
      await db.pool.query('ALTER TABLE pgcoord.list_workers_away RENAME TO list_workers');
      await db.pool.query('DELETE FROM pgcoord.list_workers');
    }
    expect(worker.metrics()).toMatchObject({ completed: 2, inFlight: 0 });
  });

  it('docs: the live-workers example runs as written and prints what its comments say', async () => {
    const { stdout } = await runReadmeExample('live-workers', db.url);
    expect(stdout.trim()).toBe('true true true 4\n[]');
  });
});
