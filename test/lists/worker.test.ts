import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  AttemptList,
  Listener,
  PermanentError,
  TimeoutError,
  ValidationError,
  workChannel,
  type Claim,
  type WorkItem,
} from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { nextEvent, waitFor } from '../helpers/wait-for.js';
import { deferred, listRows } from '../helpers/worker-test.js';

const db = useTestDatabase();
const here = path.dirname(fileURLToPath(import.meta.url));

let n = 0;
const fresh = (label: string) => `${label}-${++n}`;

const rows = (list: string) => listRows(db.pool, list);

describe('Worker', () => {
  it('processes a list to completion exactly once with concurrency', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('all');
    const items = Array.from({ length: 200 }, (_, i) => `item-${String(i).padStart(3, '0')}`);
    await list.insertBatch(name, items);
    const seen = new Map<string, number>();
    let inFlight = 0;
    let peak = 0;
    const worker = list.work(
      name,
      async ({ item }) => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        seen.set(item, (seen.get(item) ?? 0) + 1);
        await new Promise<void>((resolve) => setImmediate(resolve));
        inFlight--;
      },
      { concurrency: 8, pollIntervalMs: 50 },
    );
    await waitFor(async () => (await list.count(name)) === 0);
    await worker.stop();
    expect([...seen.keys()].sort()).toEqual(items);
    expect([...seen.values()].every((c) => c === 1)).toBe(true);
    expect(peak).toBeGreaterThan(1);
    expect(peak).toBeLessThanOrEqual(8);
    const m = worker.metrics();
    expect(m.completed).toBe(200);
    expect(m.started).toBe(200);
    expect(m.inFlight).toBe(0);
    // Completions ride on the next claim: far fewer round trips than items.
    expect(m.claims).toBeLessThan(200);
  });

  it('retries a failing item with backoff, then retires it to dead at maxAttempts', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('retry');
    await list.insertOne(name, 'bad');
    const events: string[] = [];
    const attempts: number[] = [];
    const worker = list.work(
      name,
      async ({ attempts: a }) => {
        attempts.push(a);
        throw new Error('boom');
      },
      { maxAttempts: 3, retryDelayMs: 1, pollIntervalMs: 10 },
    );
    worker.on('item:fail', (e) => events.push(`fail:${e.attempts}`));
    worker.on('item:dead', (e) => events.push(`dead:${e.attempts}`));
    await nextEvent(worker, 'item:dead');
    await worker.stop();
    expect(attempts).toEqual([0, 1, 2]);
    expect(events).toEqual(['fail:0', 'fail:1', 'dead:2']);
    expect(await list.dead(name)).toEqual([{ item: 'bad', attempts: 3 }]);
    expect(worker.metrics()).toMatchObject({ failed: 3, dead: 1, completed: 0 });
  });

  it('uses a retry delay function of attempts and error', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('retryfn');
    await list.insertOne(name, 'x');
    const calls: Array<[number, string]> = [];
    const worker = list.work(
      name,
      async () => {
        throw new Error('nope');
      },
      {
        retryDelayMs: (a, e) => {
          calls.push([a, (e as Error).message]);
          return 3_600_000;
        },
      },
    );
    const failed = await nextEvent<{ retryDelayMs: number }>(worker, 'item:fail');
    await worker.stop();
    expect(calls).toEqual([[1, 'nope']]);
    expect(failed.retryDelayMs).toBe(3_600_000);
    expect((await list.stats(name)).delayed).toBe(1);
  });

  it('retires an item at once on PermanentError', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('perm');
    await list.insertOne(name, 'p');
    const worker = list.work(name, async () => {
      throw new PermanentError('404');
    });
    const dead = await nextEvent<{ error: unknown }>(worker, 'item:dead');
    await worker.stop();
    expect(dead.error).toBeInstanceOf(PermanentError);
    expect(await list.dead(name)).toEqual([{ item: 'p', attempts: 1 }]);
  });

  it('aborts a handler at timeoutMs and fails its item', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('timeout');
    await list.insertOne(name, 't');
    const reasons: unknown[] = [];
    const worker = list.work(
      name,
      ({ attempts }, { signal }) =>
        new Promise<void>((resolve) => {
          if (attempts > 0) return resolve();
          signal.addEventListener('abort', () => {
            reasons.push(signal.reason);
            // A late success after the abort must not be applied.
            resolve();
          });
        }),
      { timeoutMs: 100, retryDelayMs: 0, pollIntervalMs: 20 },
    );
    const failed = await nextEvent<{ error: unknown }>(worker, 'item:fail');
    expect(failed.error).toBeInstanceOf(TimeoutError);
    expect(reasons[0]).toBeInstanceOf(TimeoutError);
    // Retried (attempts 1) and completed then.
    await waitFor(async () => (await list.count(name)) === 0);
    await worker.stop();
    expect(worker.metrics()).toMatchObject({ timedOut: 1, failed: 1, completed: 1 });
  });

  it('keeps the lease of a handler running several leases long (heartbeats): completes once', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('long');
    await list.insertOne(name, 'slow');
    const other = new AttemptList(db.pool);
    let runs = 0;
    const release = deferred();
    // A lease long enough that a heartbeat (every third of it) delayed by a loaded machine still
    // lands in time; the 10x-lease drill in test/faults/worker-drills.test.ts goes further.
    const leaseMs = 1_500;
    const worker = list.work(
      name,
      async () => {
        runs++;
        await release.promise;
      },
      { leaseMs, pollIntervalMs: 20 },
    );
    await nextEvent(worker, 'item:start');
    // Meanwhile other claimers find nothing for several lease lengths (counted, not asserted
    // inside waitFor, which would retry past a failed expectation).
    const start = Date.now();
    let probes = 0;
    let stolen = 0;
    await waitFor(
      async () => {
        stolen += (await other.claim(name, { limit: 1, leaseMs: 60_000 })).length;
        probes++;
        return stolen > 0 || Date.now() - start > 3 * leaseMs;
      },
      { intervalMs: 50 },
    );
    release.resolve();
    expect(stolen).toBe(0);
    await waitFor(async () => (await list.count(name)) === 0);
    await worker.stop();
    expect(probes).toBeGreaterThan(3);
    expect(runs).toBe(1);
    expect(worker.metrics()).toMatchObject({ completed: 1, leaseLost: 0 });
  });

  it('aborts a handler whose lease is lost and never applies its late result', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('lost');
    await list.insertOne(name, 'gone');
    const started = deferred<AbortSignal>();
    const finish = deferred();
    const order: string[] = [];
    const worker = list.work(
      name,
      async (_item, { signal }) => {
        signal.addEventListener('abort', () => order.push('aborted'));
        started.resolve(signal);
        await finish.promise;
      },
      { leaseMs: 300, pollIntervalMs: 60_000 },
    );
    worker.on('lease:lost', () => order.push('lease:lost'));
    worker.on('item:complete', () => order.push('complete'));
    const signal = await started.promise;
    // Another worker steals it: in one transaction (so no heartbeat slips in between), its
    // lease is made to look expired and it is claimed again.
    const client = await db.pool.connect();
    let thief: Claim[];
    try {
      await client.query('BEGIN');
      await client.query(
        `UPDATE pgcoord.list_items SET run_at = now() - interval '1 s', leased_until = now() - interval '1 s'
          WHERE list = $1`,
        [name],
      );
      thief = await list.claim(name, { limit: 1, leaseMs: 60_000, tx: client });
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    expect(thief.map((c) => c.item)).toEqual(['gone']);
    await waitFor(() => signal.aborted);
    finish.resolve();
    await worker.stop();
    expect(order).toEqual(['lease:lost', 'aborted']);
    // The late result was not applied: the thief still holds the item, and can complete it.
    expect(await rows(name)).toEqual([{ item: 'gone', attempts: 1, leased: true }]);
    expect(await list.complete(name, thief)).toEqual({ count: 1, stale: [] });
    expect(worker.metrics()).toMatchObject({ leaseLost: 1, completed: 0 });
  });

  it('a completion that arrives after the lease was taken over is refused and counted stale', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('latecomplete');
    await list.insertOne(name, 'late');
    const gate = deferred();
    const started = deferred();
    const worker = list.work(
      name,
      async () => {
        started.resolve();
        await gate.promise;
      },
      { leaseMs: 60_000, pollIntervalMs: 60_000 },
    );
    await started.promise;
    // A thief takes the item over in a transaction it keeps open: the worker's completion,
    // sent once the handler returns, waits for the row, then finds another token.
    const client = await db.pool.connect();
    let thief: Claim[];
    try {
      await client.query('BEGIN');
      await client.query(
        `UPDATE pgcoord.list_items SET leased_until = now() - interval '1 s' WHERE list = $1`,
        [name],
      );
      thief = await list.claim(name, { limit: 1, leaseMs: 60_000, tx: client });
      gate.resolve();
      await waitFor(async () => {
        const { rows } = await db.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'`,
        );
        return rows[0]!.n > 0;
      });
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    await waitFor(() => worker.metrics().staleCompletions === 1);
    await worker.stop();
    expect(worker.metrics()).toMatchObject({ completed: 0, staleCompletions: 1 });
    // Never applied: the thief still holds the item.
    expect(await rows(name)).toEqual([{ item: 'late', attempts: 1, leased: true }]);
    expect(await list.complete(name, thief)).toEqual({ count: 1, stale: [] });
  });

  it('stop() during a burst: finishes in-flight, releases unstarted, loses nothing', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('burst');
    const items = Array.from({ length: 100 }, (_, i) => `b${String(i).padStart(3, '0')}`);
    await list.insertBatch(name, items);
    const done: string[] = [];
    const gate = deferred();
    let started = 0;
    const worker = list.work(
      name,
      async ({ item }) => {
        started++;
        await gate.promise;
        done.push(item);
      },
      { concurrency: 10, pollIntervalMs: 20 },
    );
    await waitFor(() => started === 10);
    const stopping = worker.stop();
    gate.resolve();
    await stopping;
    expect(done).toHaveLength(10);
    const left = await rows(name);
    expect(left).toHaveLength(90);
    expect(left.every((r) => r.attempts === 0 && !r.leased)).toBe(true);
    expect(left.map((r) => r.item).filter((i) => done.includes(i))).toEqual([]);
    expect(worker.metrics()).toMatchObject({ completed: 10, inFlight: 0 });
  });

  it('stop() in the middle of fast processing: each item done once or left untouched, none leased', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('midburst');
    const items = Array.from({ length: 300 }, (_, i) => `m${String(i).padStart(3, '0')}`);
    await list.insertBatch(name, items);
    const handled: string[] = [];
    let stopping: Promise<void> | undefined;
    const worker = list.work(
      name,
      async ({ item }) => {
        await new Promise<void>((resolve) => setImmediate(resolve));
        handled.push(item);
      },
      { concurrency: 8, pollIntervalMs: 20 },
    );
    // Stopped from inside the flow, whatever the claim loop is doing at that moment.
    worker.on('item:complete', () => {
      if (handled.length >= 50) stopping ??= worker.stop();
    });
    await waitFor(() => stopping !== undefined);
    await stopping;
    const left = await rows(name);
    expect(new Set(handled).size).toBe(handled.length);
    expect(left.filter((r) => handled.includes(r.item))).toEqual([]);
    expect([...handled, ...left.map((r) => r.item)].sort()).toEqual(items);
    expect(left.filter((r) => r.attempts !== 0 || r.leased)).toEqual([]);
    expect(handled.length).toBeLessThan(items.length);
    expect(worker.metrics()).toMatchObject({ completed: handled.length, inFlight: 0 });
  });

  it('stop() aborts handlers still running at stopTimeoutMs and releases their items', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('deadline');
    await list.insertOne(name, 'stuck');
    const started = deferred<AbortSignal>();
    const worker = list.work(
      name,
      (_i, { signal }) => {
        started.resolve(signal);
        return new Promise<void>(() => undefined);
      },
      { stopTimeoutMs: 50 },
    );
    const signal = await started.promise;
    await worker.stop();
    expect(signal.aborted).toBe(true);
    expect(await rows(name)).toEqual([{ item: 'stuck', attempts: 0, leased: false }]);
    expect(worker.metrics().released).toBe(1);
  });

  it('wakes an idle worker on insert, long before its poll interval', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('wake');
    const listener = new Listener({ connectionString: db.url });
    await listener.start();
    try {
      const handled: WorkItem[] = [];
      const worker = list.work(name, async (item) => void handled.push(item), {
        pollIntervalMs: 60_000,
        listener,
      });
      await nextEvent(worker, 'idle');
      await listener.ready();
      // Each wait is registered before the insert that ends it: the worker may be idle again
      // before the test looks.
      let idle = nextEvent(worker, 'idle', 5_000);
      await list.insertOne(name, 'first');
      await idle;
      expect(handled).toHaveLength(1);
      idle = nextEvent(worker, 'idle', 5_000);
      await list.insertBatch(name, ['a', 'b']);
      await waitFor(() => handled.length === 3, { timeoutMs: 5_000 });
      await idle;
      idle = nextEvent(worker, 'idle', 5_000);
      await list.import(name, ['c']);
      await idle;
      expect(handled).toHaveLength(4);
      await worker.stop();
      expect(handled.map((h) => h.item).sort()).toEqual(['a', 'b', 'c', 'first']);
    } finally {
      await listener.stop();
    }
  });

  it('wakes every worker sharing one listener, and the rest after one of them stops', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('shared');
    const listener = new Listener({ connectionString: db.url });
    await listener.start();
    try {
      const handledBy: string[] = [];
      const options = { pollIntervalMs: 600_000, listener };
      const first = list.work(name, async () => void handledBy.push('first'), options);
      const second = list.work(name, async () => void handledBy.push('second'), options);
      await Promise.all([nextEvent(first, 'idle'), nextEvent(second, 'idle')]);
      await listener.ready();
      await first.stop();
      // Only a notification can wake the second worker now (its poll is ten minutes away): the
      // first one's stop must not have taken the channel from it.
      const idle = nextEvent(second, 'idle', 10_000);
      await list.insertOne(name, 'after-stop');
      await idle;
      expect(handledBy).toEqual(['second']);
      await second.stop();
    } finally {
      await listener.stop();
    }
  });

  it('wakes through a listener it owns when given connection settings', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('own');
    const handled = deferred<string>();
    const worker = list.work(name, async ({ item }) => handled.resolve(item), {
      pollIntervalMs: 60_000,
      connection: db.url,
    });
    await nextEvent(worker, 'idle');
    // The owned listener LISTENs in the background: insert until one wakes the worker.
    const seen = await waitFor(
      async () => {
        await list.insertOne(name, 'x');
        return Promise.race([
          handled.promise,
          new Promise<undefined>((r) => setTimeout(() => r(undefined), 100)),
        ]);
      },
      { timeoutMs: 5_000 },
    );
    await worker.stop();
    expect(seen).toBe('x');
  });

  it('a stop while its own listener still connects is not an error', async () => {
    const list = new AttemptList(db.pool);
    const errors: Error[] = [];
    for (let i = 0; i < 5; i++) {
      const worker = list.work(fresh('quick-stop'), async () => undefined, {
        connection: db.url,
      });
      worker.on('error', (err) => errors.push(err));
      await worker.stop();
    }
    expect(errors.map((e) => e.message)).toEqual([]);
  });

  it('one insert call sends one notification, on a channel within 63 bytes', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('n'.repeat(200));
    const channel = workChannel('pgcoord', name);
    expect(Buffer.byteLength(channel)).toBeLessThanOrEqual(63);
    const listener = new Listener({ connectionString: db.url });
    const got: string[] = [];
    listener.handle(channel, (payload) => void got.push(payload));
    await listener.start();
    try {
      await list.insertBatch(
        name,
        Array.from({ length: 25_000 }, (_, i) => `i${i}`),
      );
      await waitFor(() => got.length === 1);
      // A claim never notifies: one more statement round trip and nothing new arrived.
      await list.claim(name, { limit: 10, leaseMs: 1_000 });
      await listener.ready();
      expect(got).toEqual(['']);
    } finally {
      await listener.stop();
    }
  });

  it('inserts made together coalesce their notifications, and one always follows the last of them', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('coalesce');
    const listener = new Listener({ connectionString: db.url });
    const got: string[] = [];
    listener.handle(workChannel('pgcoord', name), (payload) => void got.push(payload));
    await listener.start();
    const handled = new Set<string>();
    const worker = list.work(name, async ({ item }) => void handled.add(item), {
      pollIntervalMs: 60_000,
      connection: db.url,
    });
    try {
      await nextEvent(worker, 'idle');
      // Issued in one tick: the first notifies in its statement, the rest are within its
      // coalescing window and stay quiet; a trailing notification follows them.
      const items = Array.from({ length: 20 }, (_, i) => `c${i}`);
      await Promise.all(items.map((item) => list.insertOne(name, item)));
      const seen = got.length;
      // Whatever came before, one more is sent after the last insert returned (after its commit).
      await waitFor(() => got.length > seen, { timeoutMs: 15_000 });
      // Far below the 60 s poll: the notifications woke the worker for every item.
      await waitFor(() => handled.size === items.length, { timeoutMs: 15_000 });
    } finally {
      await worker.stop();
      await listener.stop();
    }
  });

  it("SIGKILL mid-batch: the dead worker's items run again after the lease, attempts + 1, none lost", async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('kill');
    const items = Array.from({ length: 20 }, (_, i) => `i${String(i).padStart(2, '0')}`);
    await list.insertBatch(name, items);
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        path.join(here, '../fixtures/worker-process.ts'),
        db.url,
        name,
        '4',
        '1000',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.on('exit', (_code, signal) => resolve(signal)),
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const lines = () =>
      out
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as { start?: string; done?: string });
    // Every slot of the child ends up on a hanging item: kill it then.
    const hung = await waitFor(
      () => {
        const h = lines().filter(
          (l) => l.start !== undefined && Number(l.start.slice(1)) % 4 === 0,
        );
        return h.length === 4 ? h.map((l) => l.start!) : undefined;
      },
      { timeoutMs: 30_000, message: 'the child to hang on 4 items' },
    );
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    const childDone = new Set(lines().flatMap((l) => (l.done ? [l.done] : [])));

    const seen = new Map<string, number>();
    const worker = list.work(name, async ({ item, attempts }) => void seen.set(item, attempts), {
      concurrency: 4,
      pollIntervalMs: 50,
    });
    await waitFor(async () => (await list.count(name)) === 0, { timeoutMs: 20_000 });
    await worker.stop();
    // Every item had its effect at least once; the ones the dead worker held came back with
    // the expired lease counted as an attempt.
    expect(items.filter((i) => !childDone.has(i) && !seen.has(i))).toEqual([]);
    for (const item of hung) expect(seen.get(item)).toBe(1);
    expect(await list.dead(name)).toEqual([]);
  });

  it('handleSignals: SIGTERM stops gracefully (in-flight completes, the rest untouched)', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('sig');
    await list.insertBatch(name, ['s1', 's2', 's3']);
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(here, '../fixtures/worker-signals.ts'), db.url, name],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise<number | null>((resolve) =>
      child.on('exit', (code) => resolve(code)),
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor(() => out.includes('"start"'), { timeoutMs: 30_000 });
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const lines = out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ stopped: { completed: 1, inFlight: 0 } });
    const left = await rows(name);
    expect(left).toHaveLength(2);
    expect(left.every((r) => r.attempts === 0 && !r.leased)).toBe(true);
  });

  it('refuses bad input before anything starts', () => {
    const list = new AttemptList(db.pool);
    const ok = async () => undefined;
    const bad: Array<[() => unknown, string]> = [
      [() => list.work('l', 'nope' as never), 'handler'],
      [() => list.work('l', ok, { concurrency: 0 }), 'options.concurrency'],
      [() => list.work('l', ok, { concurrency: Number.NaN }), 'options.concurrency'],
      [() => list.work('l', ok, { concurrency: 1e9 }), 'options.concurrency'],
      [() => list.work('l', ok, { concurrency: 1.5 }), 'options.concurrency'],
      [() => list.work('l', ok, { retryDelayMs: -1 }), 'options.retryDelayMs'],
      [() => list.work('l', ok, { maxRetryDelayMs: -1 }), 'options.maxRetryDelayMs'],
      [() => list.work('l', ok, { liveTtlMs: -1 }), 'options.liveTtlMs'],
      [() => list.work('l', ok, { pollIntervalMs: -5 }), 'options.pollIntervalMs'],
      [() => list.work('l', ok, { stopTimeoutMs: -1 }), 'options.stopTimeoutMs'],
      [() => list.work('l', ok, { timeoutMs: -1 }), 'options.timeoutMs'],
      [() => list.work('l', ok, { leaseMs: 0 }), 'options.leaseMs'],
      [() => list.work('l', ok, { handleSignals: 'yes' as never }), 'options.handleSignals'],
      [() => list.work('', ok), 'list'],
      [() => list.work('l', ok, { connection: 42 as never }), 'options.connection'],
    ];
    for (const [fn, argument] of bad) {
      let error: unknown;
      try {
        fn();
      } catch (err) {
        error = err;
      }
      expect(error, argument).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).argument, argument).toBe(argument);
    }
  });
});
