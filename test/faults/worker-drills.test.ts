// Worker fault drills (issue 15): real worker processes under a real connection storm, and idle
// workers across a real PostgreSQL restart. The other worker faults (SIGKILL mid-batch, a
// handler running 10 leases long, stop() during a burst, bad input) are in test/lists/worker.test.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { AttemptList, Listener, migrate, type WorkItem } from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { killStorm } from '../helpers/kill-storm.js';
import { startInstance, type PgInstance } from '../helpers/pg-instance.js';
import { nextEvent, waitFor } from '../helpers/wait-for.js';

const db = useTestDatabase();
const here = path.dirname(fileURLToPath(import.meta.url));
const APP = 'pgcoord-drill-worker';

interface DrillChild {
  child: ChildProcess;
  out(): string;
  err(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function spawnDrillWorker(
  list: string,
  concurrency: number,
  leaseMs: number,
  mode = 'listening',
): DrillChild {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      path.join(here, '../fixtures/worker-drill-process.ts'),
      db.url,
      list,
      String(concurrency),
      String(leaseMs),
      APP,
      mode,
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  child.stdin!.on('error', () => undefined);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, out: () => out, err: () => err, exited };
}

function lastJson(text: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(text.trim().split('\n').pop() ?? '') as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

describe('worker fault drills', () => {
  it(
    'pg_terminate_backend on every worker connection every 300 ms for 30 s: workers recover by themselves, nothing lost, no stale completion applied',
    { timeout: 120_000 },
    async () => {
      const name = 'drill';
      // Effects of handlers, and every deletion of an item of the list with the token the row
      // had then (a trigger, in the deleting transaction), both on the server clock.
      await db.pool.query(`
        CREATE TABLE drill_effects (item text NOT NULL, token bigint NOT NULL, pid int NOT NULL,
          finished_at timestamptz NOT NULL DEFAULT clock_timestamp());
        CREATE TABLE drill_deletes (item text NOT NULL, token bigint,
          deleted_at timestamptz NOT NULL DEFAULT clock_timestamp());
        CREATE FUNCTION drill_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN INSERT INTO drill_deletes (item, token) VALUES (OLD.item, OLD.token); RETURN OLD; END $$;
        CREATE TRIGGER drill_deleted AFTER DELETE ON pgcoord.list_items
          FOR EACH ROW WHEN (OLD.list = 'drill') EXECUTE FUNCTION drill_deleted();`);
      const inserter = db.newPool({ application_name: 'drill-inserter', max: 2 });
      const list = new AttemptList(inserter);
      // The third listens for no 'error' event: failures must not crash it either.
      const children = ['listening', 'listening', 'quiet'].map((mode) =>
        spawnDrillWorker(name, 4, 1_500, mode),
      );
      try {
        const ids = await Promise.all(
          children.map((c) =>
            waitFor(() => (lastJson(c.out())?.ready as string | undefined) ?? c.child.exitCode, {
              timeoutMs: 30_000,
              message: 'a drill worker to start',
            }),
          ),
        );
        expect(ids.every((id) => typeof id === 'string')).toBe(true);
        await waitFor(async () => (await list.workers(name)).length === 3, { timeoutMs: 15_000 });

        // Items arrive throughout the storm, 5 at a time, each batch once the list is down to
        // a small backlog again (paced by the workers' progress, not by a clock).
        let storming = true;
        const inserted: string[] = [];
        const feeding = (async () => {
          for (let batch = 0; storming; batch++) {
            const items = Array.from({ length: 5 }, (_, i) => `b${batch}-${i}`);
            await list.insertBatch(name, items);
            inserted.push(...items);
            await waitFor(async () => !storming || (await list.count(name)) < 20, {
              timeoutMs: 120_000,
            });
          }
        })();
        const exitedEarly = () => children.some((c) => c.child.exitCode !== null);
        const storm = await killStorm(db.name, {
          rounds: 100,
          maxMs: 30_000,
          everyMs: 300,
          applicationName: APP,
          until: exitedEarly,
        });
        storming = false;
        await feeding;
        expect(exitedEarly(), children.map((c) => c.err()).join('\n')).toBe(false);
        expect(storm.killed, 'the storm terminated worker connections').toBeGreaterThan(100);

        // No help from outside: the workers finish the list by themselves ...
        await waitFor(async () => (await list.count(name)) === 0, {
          timeoutMs: 60_000,
          message: 'the workers to finish the list after the storm',
        });
        // ... and their live rows are fresh again.
        await waitFor(async () => (await list.workers(name)).length === 3, { timeoutMs: 15_000 });

        for (const c of children) c.child.stdin!.end('stop\n');
        const exits = await Promise.all(children.map((c) => c.exited));
        const summaries = children.map((c) => lastJson(c.out()));
        for (const [i, c] of children.entries()) {
          const why = `${c.err().slice(0, 4000)}\n${c.out().slice(-1000)}`;
          expect(exits[i], why).toEqual({ code: 0, signal: null });
          expect(summaries[i]?.unhandled, why).toEqual([]);
          expect(summaries[i]?.metrics, why).toMatchObject({ inFlight: 0 });
        }
        // The storm reached the workers: they saw failures and recovered from them.
        const reported = summaries.reduce(
          (n, s) =>
            n + Object.values(s!.errors as Record<string, number>).reduce((a, b) => a + b, 0),
          0,
        );
        expect(reported).toBeGreaterThan(0);

        // Nothing lost: every item inserted was deleted exactly once, none is dead.
        expect(inserted.length).toBeGreaterThan(200);
        const { rows: deletes } = await db.pool.query<{ item: string; n: number }>(
          'SELECT item, count(*)::int AS n FROM drill_deletes GROUP BY item',
        );
        expect(deletes.filter((d) => d.n !== 1)).toEqual([]);
        expect(new Set(deletes.map((d) => d.item))).toEqual(new Set(inserted));
        expect(await list.dead(name)).toEqual([]);
        // Every deletion was a completion by the holder of the current token, after its handler
        // finished: a stale completion (a holder whose lease was lost completing the item while
        // another held it) would delete a row whose token's handler had not finished.
        const { rows: unearned } = await db.pool.query(`
          SELECT d.item, d.token FROM drill_deletes AS d
           WHERE NOT EXISTS (SELECT 1 FROM drill_effects AS e
                              WHERE e.item = d.item AND e.token = d.token
                                AND e.finished_at <= d.deleted_at)`);
        expect(unearned).toEqual([]);
        // Handlers ran at least once per item; retries ran some again (at-least-once).
        const { rows: effects } = await db.pool.query<{ n: number; items: number }>(
          'SELECT count(*)::int AS n, count(DISTINCT item)::int AS items FROM drill_effects',
        );
        expect(effects[0]!.items).toBe(inserted.length);
        // Every completion a worker sent got an answer once the storm was over: applied, or
        // refused as stale (its lease lost meanwhile, or an earlier send applied whose reply the
        // storm cut). None applied twice: applied ones never exceed the items.
        let completed = 0;
        let refused = 0;
        for (const s of summaries) {
          const m = s!.metrics as { completed: number; staleCompletions: number };
          expect(m.completed + m.staleCompletions).toBe(s!.handled);
          completed += m.completed;
          refused += m.staleCompletions;
        }
        expect(completed).toBeLessThanOrEqual(inserted.length);
        expect(completed + refused).toBeGreaterThanOrEqual(inserted.length);
      } finally {
        for (const c of children) if (c.child.exitCode === null) c.child.kill('SIGKILL');
        await Promise.all(children.map((c) => c.exited));
      }
    },
  );

  it('a handler running 10 leases long completes exactly once: heartbeats keep its lease', async () => {
    const list = new AttemptList(db.pool);
    const name = 'long-handler';
    await list.insertOne(name, 'slow');
    const other = new AttemptList(db.pool);
    let runs = 0;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const leaseMs = 1_000;
    const worker = list.work(
      name,
      async () => {
        runs++;
        await released;
      },
      { leaseMs, pollIntervalMs: 50 },
    );
    const started = await nextEvent<WorkItem>(worker, 'item:start');
    const lost: WorkItem[] = [];
    worker.on('lease:lost', (w) => lost.push(w));
    // Meanwhile other claimers find nothing, probe after probe, for 10 lease lengths.
    const stolen: string[] = [];
    let probes = 0;
    const until = Date.now() + 10 * leaseMs;
    await waitFor(
      async () => {
        const got = await other.claim(name, { limit: 1, leaseMs: 60_000 });
        stolen.push(...got.map((c) => c.item));
        probes++;
        return Date.now() > until || stolen.length > 0;
      },
      { intervalMs: 100, timeoutMs: 30 * leaseMs },
    );
    release();
    await waitFor(async () => (await list.count(name)) === 0);
    await worker.stop();
    expect(stolen).toEqual([]);
    expect(lost).toEqual([]);
    expect(probes).toBeGreaterThan(10);
    expect(runs).toBe(1);
    expect(started.attempts).toBe(0);
    expect(worker.metrics()).toMatchObject({ completed: 1, leaseLost: 0, staleCompletions: 0 });
  });

  describe('a PostgreSQL restart while idle workers wait', () => {
    let inst: PgInstance | undefined;
    afterAll(() => inst?.destroy());

    it('they wake for items inserted after it, through their re-LISTENed channel', async () => {
      inst = await startInstance();
      const url = inst.url();
      const pool = new pg.Pool({ connectionString: url, max: 4 });
      pool.on('error', () => undefined);
      await migrate(pool);
      const list = new AttemptList(pool);
      const listener = new Listener({
        connectionString: url,
        reconnectDelayMs: 50,
        maxReconnectDelayMs: 200,
      });
      listener.on('error', () => undefined);
      await listener.start();
      const handled: Record<string, WorkItem[]> = { given: [], owned: [] };
      // A poll far longer than the test: only a wake-up explains a handled item.
      const options = { pollIntervalMs: 600_000, liveTtlMs: 60_000 };
      const given = list.work('given', async (w) => void handled.given!.push(w), {
        ...options,
        listener,
      });
      const owned = list.work('owned', async (w) => void handled.owned!.push(w), {
        ...options,
        connection: url,
      });
      for (const w of [given, owned]) w.on('error', () => undefined);
      try {
        await Promise.all([nextEvent(given, 'idle'), nextEvent(owned, 'idle')]);
        // Both wake before the restart (the owned listener LISTENs in the background).
        await listener.ready();
        await list.insertOne('given', 'before');
        await waitFor(() => handled.given!.length === 1);
        // The owned listener LISTENs in the background: insert until one wakes the worker.
        let tries = 0;
        await waitFor(
          async () => {
            await list.insertOne('owned', `before-${++tries}`);
            return handled.owned!.length > 0;
          },
          { intervalMs: 100 },
        );
        await waitFor(async () => handled.owned!.length === tries);
        await waitFor(async () => (await list.workers()).length === 2);
        const claimsBefore = { given: given.metrics().claims, owned: owned.metrics().claims };

        const reconnected = nextEvent<{ reconnected: boolean }>(listener, 'connect', 60_000);
        inst.stop('fast');
        inst.start();
        expect((await reconnected).reconnected).toBe(true);
        await listener.ready();
        // After each re-LISTEN the listener runs the channel's backlog hook, which wakes the
        // worker for one claim (it finds nothing). Once that claim went through, the worker
        // waits again, on its 10-minute poll: only a notification can wake it now.
        await waitFor(() => given.metrics().claims > claimsBefore.given, { timeoutMs: 30_000 });
        await waitFor(() => owned.metrics().claims > claimsBefore.owned, { timeoutMs: 30_000 });

        await list.insertOne('given', 'after');
        await list.insertOne('owned', 'after');
        await waitFor(() => handled.given!.length === 2 && handled.owned!.length === tries + 1, {
          timeoutMs: 15_000,
          message: 'both workers to handle the item inserted after the restart',
        });
        expect(handled.given!.map((w) => [w.item, w.attempts])).toEqual([
          ['before', 0],
          ['after', 0],
        ]);
        expect(handled.owned!.at(-1)!.item).toBe('after');
        // Their live rows came back too (refreshes failed while the server was down).
        await waitFor(async () => (await list.workers()).length === 2);
        expect(await list.count('given')).toBe(0);
      } finally {
        await Promise.all([given.stop(), owned.stop()]);
        await listener.stop();
        await pool.end();
      }
    });
  });
});
