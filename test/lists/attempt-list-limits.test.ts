// Keys and limits of attempt lists (migration 0014): exactness under real concurrency with worker
// processes and SIGKILLs, measured from server timestamps; rates; fairness; bad input.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { AttemptList, ValidationError, DatabaseError, type Claim } from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait-for.js';

const db = useTestDatabase();
const here = path.dirname(fileURLToPath(import.meta.url));

let n = 0;
const fresh = (label: string) => `${label}-${++n}`;

/** Lease of every claim whose intervals are analysed (the lease log derives starts from it). */
const LEASE_MS = 1500;

beforeAll(async () => {
  // Instruments, not pgcoord: every lease's start and end as the server saw them. A lease starts
  // at its claim's clock (its end minus the lease) and ends at its settlement's clock, or at its
  // lease end when it ran out first (an expired lease taken over, completed late, or killed).
  await db.pool.query(`
    CREATE TABLE pgcoord.lease_log (list text, item text, key text, token bigint, event text,
      at timestamptz);
    CREATE TABLE pgcoord.handler_log (list text, item text, token bigint, event text,
      at timestamptz);
    CREATE FUNCTION pgcoord.log_leases() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'DELETE' THEN
        IF OLD.token IS NOT NULL THEN
          INSERT INTO pgcoord.lease_log VALUES (OLD.list, OLD.item, OLD.key, OLD.token, 'end',
            least(OLD.leased_until, clock_timestamp()));
        END IF;
        RETURN OLD;
      END IF;
      IF OLD.token IS NOT NULL AND NEW.token IS DISTINCT FROM OLD.token THEN
        INSERT INTO pgcoord.lease_log VALUES (OLD.list, OLD.item, OLD.key, OLD.token, 'end',
          least(OLD.leased_until, clock_timestamp()));
      END IF;
      IF NEW.token IS NOT NULL AND NEW.token IS DISTINCT FROM OLD.token THEN
        INSERT INTO pgcoord.lease_log VALUES (NEW.list, NEW.item, NEW.key, NEW.token, 'start',
          NEW.leased_until - ${LEASE_MS} * interval '1 millisecond');
      ELSIF NEW.token IS NOT NULL AND NEW.leased_until IS DISTINCT FROM OLD.leased_until THEN
        INSERT INTO pgcoord.lease_log VALUES (NEW.list, NEW.item, NEW.key, NEW.token, 'extend',
          NEW.leased_until);
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER log_leases AFTER UPDATE OR DELETE ON pgcoord.list_items
      FOR EACH ROW EXECUTE FUNCTION pgcoord.log_leases();
  `);
});

interface Interval {
  item: string;
  key: string;
  token: string;
  /** Microseconds since the epoch, server clock. */
  start: number;
  end: number;
}

const micros = (column: string) => `(extract(epoch FROM ${column}) * 1000000)::bigint::text`;

/** Every lease of `list` as an interval (an unsettled live lease ends at its lease end). */
async function leases(list: string): Promise<Interval[]> {
  const { rows } = await db.pool.query<{
    item: string;
    key: string;
    token: string;
    start: string;
    settled: string | null;
    last: string;
  }>(
    `SELECT item, key, token::text,
        ${micros(`min(at) FILTER (WHERE event = 'start')`)} AS start,
        ${micros(`min(at) FILTER (WHERE event = 'end')`)} AS settled,
        ${micros(`greatest(max(at) FILTER (WHERE event = 'extend'),
          min(at) FILTER (WHERE event = 'start') + ${LEASE_MS} * interval '1 millisecond')`)} AS last
      FROM pgcoord.lease_log WHERE list = $1 GROUP BY item, key, token`,
    [list],
  );
  return rows.map((r) => ({
    item: r.item,
    key: r.key,
    token: r.token,
    start: Number(r.start),
    end: Number(r.settled ?? r.last),
  }));
}

/** The most intervals open at one instant (half-open: an end at t comes before a start at t). */
function maxOverlap(intervals: Interval[]): number {
  const events = intervals.flatMap((i) => [
    { t: i.start, d: 1 },
    { t: i.end, d: -1 },
  ]);
  events.sort((a, b) => a.t - b.t || a.d - b.d);
  let open = 0;
  let max = 0;
  for (const e of events) {
    open += e.d;
    max = Math.max(max, open);
  }
  return max;
}

function byKey(intervals: Interval[]): Map<string, Interval[]> {
  const m = new Map<string, Interval[]>();
  for (const i of intervals) m.set(i.key, [...(m.get(i.key) ?? []), i]);
  return m;
}

interface Child {
  process: ChildProcess;
  starts: number;
  exited: Promise<NodeJS.Signals | null>;
}

function spawnWorker(list: string, concurrency: number, mode: 'work' | 'hang'): Child {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      path.join(here, '../fixtures/limits-worker.ts'),
      db.url,
      list,
      String(concurrency),
      String(LEASE_MS),
      mode,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const c: Child = {
    process: child,
    starts: 0,
    exited: new Promise((resolve) => child.on('exit', (_code, signal) => resolve(signal))),
  };
  child.stdout!.on('data', (d: Buffer) => (c.starts += d.toString().split('\n').length - 1));
  return c;
}

async function kill(c: Child): Promise<void> {
  c.process.kill('SIGKILL');
  expect(await c.exited).toBe('SIGKILL');
}

async function stop(c: Child): Promise<void> {
  if (c.process.exitCode !== null || c.process.signalCode !== null) return;
  c.process.kill('SIGTERM');
  await c.exited;
}

/** Items of `sizes[i]` for key `k<i>` (skewed sizes: the fairness a claim must keep). */
function keyedItems(label: string, sizes: number[]) {
  return sizes.flatMap((size, k) =>
    Array.from({ length: size }, (_, i) => ({ item: `${label}-k${k}-${i}`, key: `k${k}` })),
  );
}

describe('attempt list limits: exact under concurrent worker processes and SIGKILLs', () => {
  it('never more than perKey.concurrency leases of a key, nor concurrency of the list, at any instant (killed workers included)', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('exact');
    await list.setLimits(l, { perKey: { concurrency: 2 }, concurrency: 5 });
    await list.insertBatch(l, keyedItems('x', [60, 30, 15, 10, 5]));
    // A worker that hangs on everything it takes, killed while it holds its leases.
    const victim = spawnWorker(l, 3, 'hang');
    const workers: Child[] = [];
    try {
      await waitFor(() => victim.starts >= 3, { timeoutMs: 30_000, message: 'victim claims' });
      await kill(victim);
      workers.push(spawnWorker(l, 4, 'work'), spawnWorker(l, 4, 'work'), spawnWorker(l, 4, 'work'));
      // A busy worker killed mid-run (whichever has run the most: with the list at its limit,
      // the workers that complete refill first), and a replacement.
      const busy = await waitFor(() => workers.find((w) => w.starts >= 10), {
        timeoutMs: 60_000,
        message: 'progress',
      });
      await kill(busy);
      workers.push(spawnWorker(l, 4, 'work'));
      await waitFor(async () => (await list.count(l)) === 0, {
        timeoutMs: 120_000,
        intervalMs: 100,
        message: 'every item completed',
      });
    } finally {
      await Promise.all([...workers, victim].map(stop));
    }
    const all = await leases(l);
    expect(new Set(all.map((i) => i.item)).size).toBe(120);
    for (const [key, intervals] of byKey(all)) {
      expect(maxOverlap(intervals), `leases of ${key} at once`).toBeLessThanOrEqual(2);
    }
    expect(maxOverlap(all), 'leases of the list at once').toBeLessThanOrEqual(5);
    // The limits were reached (the test can fail): some key held 2 at once, the list 5.
    expect(Math.max(...[...byKey(all).values()].map(maxOverlap))).toBe(2);
    expect(maxOverlap(all)).toBe(5);
    // Handlers (what the user's code saw) too: a killed worker's run until its lease end.
    const { rows } = await db.pool.query<{
      item: string;
      token: string;
      start: string;
      end: string | null;
    }>(
      `SELECT item, token::text, ${micros(`min(at) FILTER (WHERE event = 'start')`)} AS start,
          ${micros(`min(at) FILTER (WHERE event = 'end')`)} AS end
        FROM pgcoord.handler_log WHERE list = $1 GROUP BY item, token`,
      [l],
    );
    const lease = new Map(all.map((i) => [`${i.item} ${i.token}`, i]));
    const handlers = rows.map((r) => {
      const i = lease.get(`${r.item} ${r.token}`)!;
      expect(i, `lease of handler ${r.item}`).toBeDefined();
      return { ...i, start: Number(r.start), end: r.end === null ? i.end : Number(r.end) };
    });
    for (const [key, intervals] of byKey(handlers)) {
      expect(maxOverlap(intervals), `handlers of ${key} at once`).toBeLessThanOrEqual(2);
    }
    // The victim's items came back only after its leases ended, each taken over once.
    const takenOver = all.filter((i) => all.some((j) => j.item === i.item && j.token !== i.token));
    expect(takenOver.length).toBeGreaterThanOrEqual(3);
  }, 240_000);

  it('a per-key rate: no window of periodMs holds more than limit claims of a key (server clock)', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('rate');
    await list.setLimits(l, { perKey: { rate: { limit: 4, periodMs: 400 } } });
    await list.insertBatch(l, keyedItems('r', [10, 8, 6]));
    const workers = [spawnWorker(l, 4, 'work'), spawnWorker(l, 4, 'work')];
    try {
      await waitFor(async () => (await list.count(l)) === 0, {
        timeoutMs: 60_000,
        intervalMs: 100,
        message: 'every item completed',
      });
    } finally {
      await Promise.all(workers.map(stop));
    }
    const all = await leases(l);
    expect(all).toHaveLength(24);
    for (const [key, intervals] of byKey(all)) {
      const starts = intervals.map((i) => i.start).sort((a, b) => a - b);
      // Half-open windows [t, t + 400 ms): claims i .. i + 4 fit in one iff their gap < 400 ms.
      for (let i = 0; i + 4 < starts.length; i++) {
        expect(starts[i + 4]! - starts[i]!, `window of ${key} at ${i}`).toBeGreaterThanOrEqual(
          400_000 - 2,
        );
      }
      // gcra with burst 1 (the default): one claim every 100 ms.
      for (let i = 0; i + 1 < starts.length; i++) {
        expect(starts[i + 1]! - starts[i]!).toBeGreaterThanOrEqual(100_000 - 2);
      }
    }
  }, 120_000);

  it("a SIGKILLed worker's slots come back when its leases end, not before", async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('slots');
    await list.setLimits(l, { perKey: { concurrency: 2 } });
    await list.insertBatch(l, keyedItems('s', [5]));
    const victim = spawnWorker(l, 5, 'hang');
    try {
      await waitFor(() => victim.starts >= 2, { timeoutMs: 30_000, message: 'victim claims' });
      await kill(victim);
    } finally {
      await stop(victim);
    }
    const held = await leases(l);
    expect(held).toHaveLength(2);
    // Both slots are the dead worker's: nothing to claim, and the claim says when to come back.
    const first = await list.completeAndClaim(l, [], { limit: 5, leaseMs: LEASE_MS });
    expect(first.claims).toHaveLength(0);
    expect(first.nextSlotMs).toBeGreaterThan(0);
    expect(first.nextSlotMs).toBeLessThanOrEqual(LEASE_MS);
    const back = await waitFor(
      async () => {
        const r = await list.completeAndClaim(l, [], { limit: 5, leaseMs: LEASE_MS });
        return r.claims.length > 0 ? r.claims : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 25, message: 'the slots back' },
    );
    expect(back).toHaveLength(2);
    const ends = Math.max(
      ...(await leases(l)).filter((i) => held.some((h) => h.token === i.token)).map((i) => i.end),
    );
    const started = Math.min(
      ...(await leases(l)).filter((i) => i.token === back[0]!.token).map((i) => i.start),
    );
    expect(started).toBeGreaterThanOrEqual(ends);
    // The dead worker's own items among them: its expired leases counted as attempts.
    expect(back.map((c) => c.item).sort()).toEqual(held.map((h) => h.item).sort());
    expect(back.every((c) => c.attempts === 1)).toBe(true);
  }, 60_000);
});

describe('attempt list limits: keys, fairness, settlements', () => {
  const claimAll = (list: AttemptList, l: string, limit: number, options = {}) =>
    list.claim(l, { limit, leaseMs: 60_000, ...options });
  const keysOf = (claims: Claim[]) => claims.map((c) => c.item.split('-')[1]!);
  const count = (keys: string[]) => {
    const m: Record<string, number> = {};
    for (const k of keys) m[k] = (m[k] ?? 0) + 1;
    return m;
  };

  it("limits set on a filled list key its items by the list's key rule, not all as ''", async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('late-rule');
    await list.insertBatch(l, ['a.example/1', 'a.example/2', 'b.example/1', 'c.example/1', 'x']);
    await list.setLimits(l, { keyRegex: '^([^/]+)/', perKey: { concurrency: 1 } });
    const claims = await claimAll(list, l, 10);
    // One per key: a.example, b.example, c.example, and 'x' (no match: the key '').
    expect(claims.map((c) => c.item).sort()).toEqual([
      'a.example/1',
      'b.example/1',
      'c.example/1',
      'x',
    ]);
    expect(await list.keyStats(l)).toEqual([
      { key: 'a.example', total: 2, claimable: 1, leased: 1 },
      { key: '', total: 1, claimable: 0, leased: 1 },
      { key: 'b.example', total: 1, claimable: 0, leased: 1 },
      { key: 'c.example', total: 1, claimable: 0, leased: 1 },
    ]);
  });

  it('round-robin: a key with 900 items waiting does not starve one with 10', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('fair');
    await list.setLimits(l, { concurrency: 10_000 });
    await list.insertBatch(l, keyedItems('f', [900, 10]));
    const first = await claimAll(list, l, 10);
    expect(count(keysOf(first))).toEqual({ k0: 5, k1: 5 });
    const second = await claimAll(list, l, 10);
    expect(count(keysOf(second))).toEqual({ k0: 5, k1: 5 });
    // k1 is drained; k0 takes the rest.
    expect(count(keysOf(await claimAll(list, l, 10)))).toEqual({ k0: 10 });
  });

  it('round-robin across many keys: each claim serves the least recently served keys first', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('rr');
    await list.setLimits(l, { perKey: { concurrency: 100 } });
    await list.insertBatch(l, keyedItems('rr', [20, 20, 20, 20, 20, 20]));
    const seen: string[][] = [];
    for (let i = 0; i < 3; i++) seen.push(keysOf(await claimAll(list, l, 4)).sort());
    // 6 keys, 4 per claim: no key is served twice before every key was served once.
    expect(seen[0]).toEqual(['k0', 'k1', 'k2', 'k3']);
    // Then the two never served, then the least recently served (ties in key order).
    expect(seen[1]).toEqual(['k0', 'k1', 'k4', 'k5']);
    expect(seen[2]).toEqual(['k0', 'k1', 'k2', 'k3']);
  });

  it('weighted: a key of weight 3 gets three items per turn where one of weight 1 gets one', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('weight');
    await list.setLimits(l, { perKey: { concurrency: 1000 } });
    await list.insertBatch(l, keyedItems('w', [50, 50]));
    await list.setKeyWeight(l, 'k0', 3);
    expect(count(keysOf(await claimAll(list, l, 8)))).toEqual({ k0: 6, k1: 2 });
  });

  it('settlements free slots at once: complete, release and fail; extend keeps the slot', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('settle');
    await list.setLimits(l, { perKey: { concurrency: 2 } });
    await list.insertBatch(l, keyedItems('t', [10]));
    let held = await claimAll(list, l, 10);
    expect(held).toHaveLength(2);
    expect(await claimAll(list, l, 10)).toHaveLength(0);
    const ext = await list.extend(l, held, { leaseMs: 60_000 });
    expect(ext.count).toBe(2);
    expect(await claimAll(list, l, 10)).toHaveLength(0);
    expect((await list.complete(l, [held[0]!])).count).toBe(1);
    const a = await claimAll(list, l, 10);
    expect(a).toHaveLength(1);
    expect((await list.release(l, [held[1]!])).count).toBe(1);
    const b = await claimAll(list, l, 10);
    expect(b).toHaveLength(1);
    expect((await list.fail(l, [a[0]!], { retryDelayMs: 60_000 })).count).toBe(1);
    const c = await claimAll(list, l, 10);
    expect(c).toHaveLength(1);
    held = [b[0]!, c[0]!];
    // completeAndClaim frees and refills in one call.
    const r = await list.completeAndClaim(l, held, { limit: 10, leaseMs: 60_000 });
    expect(r.count).toBe(2);
    expect(r.claims).toHaveLength(2);
    // A stale token frees nothing.
    expect((await list.complete(l, held)).count).toBe(0);
    expect(await claimAll(list, l, 10)).toHaveLength(0);
  });

  it('a completion neither locks nor waits for its key row: a claim in flight on the key does not hold it up (0015)', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('nowait');
    await list.setLimits(l, { perKey: { concurrency: 1 } });
    await list.insertBatch(l, keyedItems('n', [3]));
    const [held] = await claimAll(list, l, 10);
    // A transaction holding the key row, as a claim in flight does.
    const locker = await db.pool.connect();
    const events: string[] = [];
    try {
      await locker.query('BEGIN');
      const { rows } = await locker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await locker.query('SELECT 1 FROM pgcoord.list_keys WHERE list = $1 FOR UPDATE', [l]);
      const done = list.complete(l, [held!]).then((r) => {
        events.push('completed');
        return r;
      });
      // Whichever comes first: the completion ends, or it is seen waiting on the locker.
      await waitFor(async () => {
        if (events.length > 0) return true;
        const w = await db.pool.query<{ blocked: boolean }>(
          `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
             WHERE $1::int = ANY (pg_blocking_pids(pid))) AS blocked`,
          [rows[0]!.pid],
        );
        return w.rows[0]!.blocked;
      });
      events.push('checked');
      await locker.query('COMMIT');
      expect((await done).count).toBe(1);
    } finally {
      locker.release();
    }
    expect(events).toEqual(['completed', 'checked']);
    // The slot it freed is taken by the next claim.
    expect(await claimAll(list, l, 10)).toHaveLength(1);
  });

  it('under a list-wide limit a completion takes the list row before its items, as claims and extends do (no deadlock with an extend)', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('listfirst');
    await list.setLimits(l, { concurrency: 5 });
    await list.insertBatch(l, keyedItems('lf', [3]));
    const [held] = await claimAll(list, l, 1);
    // A transaction holding the list row, as an extend or a claim in flight does.
    const locker = await db.pool.connect();
    const events: string[] = [];
    try {
      await locker.query('BEGIN');
      const { rows } = await locker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await locker.query('SELECT 1 FROM pgcoord.list_settings WHERE list = $1 FOR UPDATE', [l]);
      const done = list.complete(l, [held!]).then((r) => {
        events.push('completed');
        return r;
      });
      await waitFor(async () => {
        if (events.length > 0) return true;
        const w = await db.pool.query<{ blocked: boolean }>(
          `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
             WHERE $1::int = ANY (pg_blocking_pids(pid))) AS blocked`,
          [rows[0]!.pid],
        );
        return w.rows[0]!.blocked;
      });
      // The completion waits for the list row and holds no lock on its item meanwhile.
      await locker.query(
        'SELECT 1 FROM pgcoord.list_items WHERE list = $1 AND item = $2 FOR UPDATE NOWAIT',
        [l, held!.item],
      );
      events.push('item free while waiting');
      await locker.query('COMMIT');
      expect((await done).count).toBe(1);
    } finally {
      locker.release();
    }
    expect(events).toEqual(['item free while waiting', 'completed']);
  });

  it('a leased item deleted frees its slot; one incremented keeps it', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('delinc');
    await list.setLimits(l, { perKey: { concurrency: 1 } });
    await list.insertBatch(l, keyedItems('d', [4]));
    const [a] = await claimAll(list, l, 10);
    expect(await list.incrementOne(l, a!.item)).toBe(1);
    expect(await claimAll(list, l, 10)).toHaveLength(0);
    expect(await list.deleteBatch(l, [a!.item])).toBe(1);
    expect(await claimAll(list, l, 10)).toHaveLength(1);
  });

  it('a claim tightens the stored limits, never loosens them; on a list without limits it is refused', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('tight');
    await list.setLimits(l, { perKey: { concurrency: 3 } });
    await list.insertBatch(l, keyedItems('g', [10]));
    expect(await claimAll(list, l, 10, { perKeyConcurrency: 1 })).toHaveLength(1);
    expect(await claimAll(list, l, 10, { perKeyConcurrency: 9 })).toHaveLength(2);
    const plain = fresh('plain');
    await list.insertBatch(plain, ['p']);
    await expect(claimAll(list, plain, 1, { perKeyConcurrency: 1 })).rejects.toThrow(
      /has no limits/,
    );
  });

  it('the key rule: a regular expression whose first group is the key; items it misses share the key "" ', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('regex');
    await list.setLimits(l, { keyRegex: '^https?://([^/]+)', perKey: { concurrency: 1 } });
    await list.insertBatch(l, [
      'http://a.example/1',
      'https://a.example/2',
      'http://b.example/1',
      'junk-1',
      'junk-2',
      { item: 'given-1', key: 'b.example' },
    ]);
    const claims = await claimAll(list, l, 10);
    expect(claims.map((c) => c.item).sort()).toEqual([
      'http://a.example/1',
      'http://b.example/1',
      'junk-1',
    ]);
    const { rows } = await db.pool.query<{ item: string; key: string }>(
      'SELECT item, key FROM pgcoord.list_items WHERE list = $1 ORDER BY item',
      [l],
    );
    expect(Object.fromEntries(rows.map((r) => [r.item, r.key]))).toEqual({
      'given-1': 'b.example',
      'http://a.example/1': 'a.example',
      'http://b.example/1': 'b.example',
      'https://a.example/2': 'a.example',
      'junk-1': '',
      'junk-2': '',
    });
    // An import with keys per line, and with the stored rule.
    const r = await list.import(l, ['c.example\tline-1', 'http://d.example/x'], {
      keySeparator: '\t',
    });
    expect(r.inserted).toBe(2);
    const { rows: more } = await db.pool.query<{ item: string; key: string }>(
      `SELECT item, key FROM pgcoord.list_items WHERE list = $1 AND item IN ('line-1', 'http://d.example/x')
        ORDER BY item`,
      [l],
    );
    expect(more).toEqual([
      { item: 'http://d.example/x', key: 'd.example' },
      { item: 'line-1', key: 'c.example' },
    ]);
  });

  it('limits set on a list with live leases count them (the change is fenced)', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('late');
    await list.insertBatch(l, keyedItems('late', [10]));
    const before = await claimAll(list, l, 3);
    expect(before).toHaveLength(3);
    await list.setLimits(l, { perKey: { concurrency: 4 } });
    expect(await list.limits(l)).toEqual({ perKey: { concurrency: 4 } });
    expect(await claimAll(list, l, 10)).toHaveLength(1);
    await list.complete(l, before);
    expect(await claimAll(list, l, 10)).toHaveLength(3);
    await list.clearLimits(l);
    expect(await list.limits(l)).toEqual({});
    expect(await claimAll(list, l, 10)).toHaveLength(3);
  });

  it('a key whose items all died is due again when they are requeued, or when an item arrives', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('requeue');
    await list.setLimits(l, { perKey: { concurrency: 5 } });
    await list.insertBatch(l, keyedItems('q', [2]));
    const claims = await claimAll(list, l, 10);
    expect((await list.fail(l, claims, { maxAttempts: 1 })).dead).toHaveLength(2);
    // Nothing claimable: the claim finds the key empty and parks it.
    expect(await claimAll(list, l, 10)).toHaveLength(0);
    expect(await list.requeue(l)).toBe(2);
    expect(await claimAll(list, l, 10)).toHaveLength(2);
    await list.insertBatch(l, [{ item: 'q-late', key: 'k0' }]);
    expect((await claimAll(list, l, 10)).map((c) => c.item)).toEqual(['q-late']);
  });

  it('a rate-limited key says when its next claim is allowed', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('next');
    await list.setLimits(l, { perKey: { rate: { limit: 1, periodMs: 5000 } } });
    await list.insertBatch(l, keyedItems('n', [3]));
    const r1 = await list.completeAndClaim(l, [], { limit: 3, leaseMs: 60_000 });
    expect(r1.claims).toHaveLength(1);
    expect(r1.nextSlotMs).toBeGreaterThan(4000);
    expect(r1.nextSlotMs).toBeLessThanOrEqual(5000);
    const r2 = await list.completeAndClaim(l, r1.claims, { limit: 3, leaseMs: 60_000 });
    expect(r2.claims).toHaveLength(0);
    expect(r2.nextSlotMs).toBeGreaterThan(4000);
    expect(await list.limits(l)).toEqual({
      perKey: { rate: { limit: 1, periodMs: 5000, algorithm: 'gcra', burst: 1 } },
    });
  });

  it('property: one claimer, any keys, any per-key concurrency: no key over its limit, and a key with room and items is always served', async () => {
    const list = new AttemptList(db.pool);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1, max: 3 }),
        fc.array(fc.tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 5 })), {
          minLength: 1,
          maxLength: 8,
        }),
        async (keys, limit, steps) => {
          const l = fresh('prop');
          await list.setLimits(l, { perKey: { concurrency: limit } });
          await list.insertBatch(
            l,
            keys.map((k, i) => ({ item: `p${i}`, key: `k${k}` })),
          );
          const keyOf = new Map(keys.map((k, i) => [`p${i}`, `k${k}`]));
          const waiting = new Map<string, number>();
          for (const k of keys) waiting.set(`k${k}`, (waiting.get(`k${k}`) ?? 0) + 1);
          let held: Claim[] = [];
          for (const [want, done] of steps) {
            const finished = held.slice(0, done);
            held = held.slice(done);
            const r = await list.completeAndClaim(l, finished, { limit: want, leaseMs: 60_000 });
            expect(r.count).toBe(finished.length);
            held.push(...r.claims);
            for (const c of r.claims)
              waiting.set(keyOf.get(c.item)!, waiting.get(keyOf.get(c.item)!)! - 1);
            const live = new Map<string, number>();
            for (const c of held)
              live.set(keyOf.get(c.item)!, (live.get(keyOf.get(c.item)!) ?? 0) + 1);
            for (const v of live.values()) expect(v).toBeLessThanOrEqual(limit);
            if (r.claims.length < want) {
              // Short: every key with items left is at its limit.
              for (const [k, w] of waiting) {
                if (w > 0) expect(live.get(k) ?? 0).toBe(limit);
              }
            }
          }
        },
      ),
      { numRuns: 40 },
    );
  }, 120_000);
});

describe('attempt list limits: bad input is refused before SQL', () => {
  const list = () => new AttemptList(db.pool);
  const bad = [0, -1, NaN, Infinity, 1.5, 10_001, 1e12, '2', null];

  it.each(bad)('concurrency %s', async (v) => {
    await expect(list().setLimits('x', { concurrency: v as number })).rejects.toThrow(
      ValidationError,
    );
    await expect(list().setLimits('x', { perKey: { concurrency: v as number } })).rejects.toThrow(
      ValidationError,
    );
    await expect(
      list().claim('x', { limit: 1, leaseMs: 1000, perKeyConcurrency: v as number }),
    ).rejects.toThrow(ValidationError);
  });

  it.each([0, -1, NaN, Infinity, 1.5, 2e9, '2'])('rate limit %s', async (v) => {
    await expect(
      list().setLimits('x', { perKey: { rate: { limit: v as number, periodMs: 1000 } } }),
    ).rejects.toThrow(ValidationError);
  });

  it.each([0, -1, NaN, Infinity, 1.5, 1e11, '2'])('rate period %s', async (v) => {
    await expect(
      list().setLimits('x', { perKey: { rate: { limit: 1, periodMs: v as number } } }),
    ).rejects.toThrow(ValidationError);
  });

  it('a rate with an unknown algorithm, a burst above the limit, or a burst on a window', async () => {
    await expect(
      list().setLimits('x', {
        perKey: { rate: { limit: 1, periodMs: 1, algorithm: 'nope' as 'gcra' } },
      }),
    ).rejects.toThrow(ValidationError);
    await expect(
      list().setLimits('x', { perKey: { rate: { limit: 2, periodMs: 1, burst: 3 } } }),
    ).rejects.toThrow(ValidationError);
    await expect(
      list().setLimits('x', {
        perKey: { rate: { limit: 2, periodMs: 1, algorithm: 'fixed-window', burst: 1 } },
      }),
    ).rejects.toThrow(ValidationError);
  });

  it('a key rule that does not compile is refused by name, and nothing is stored', async () => {
    const l = fresh('badregex');
    const err = await list()
      .setLimits(l, { keyRegex: '([a-z' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).message).toMatch(/keyRegex/);
    expect(await list().limits(l)).toEqual({});
  });

  it('keys: empty, over 2,048 bytes, not text', async () => {
    const l = fresh('badkey');
    for (const key of ['', 'x'.repeat(2049), 'é'.repeat(1025), 5, null]) {
      await expect(list().insertBatch(l, [{ item: 'i', key: key as string }])).rejects.toThrow(
        ValidationError,
      );
      await expect(list().insertOne(l, 'i', { key: key as string })).rejects.toThrow(
        ValidationError,
      );
    }
    await expect(list().insertBatch(l, [{ item: 'i', key: 'x'.repeat(2048) }])).resolves.toBe(1);
    expect(await list().count(l)).toBe(1);
  });

  it('property: any limits object is refused with a ValidationError or stored and read back as given', async () => {
    const l = fresh('fuzz');
    const num = fc.oneof(
      fc.integer({ min: -5, max: 20_000 }),
      fc.double(),
      fc.constant(undefined),
      fc.string(),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.record(
          {
            concurrency: num,
            perKey: fc.record(
              { concurrency: num, rate: fc.record({ limit: num, periodMs: num }) },
              {
                requiredKeys: [],
              },
            ),
          },
          { requiredKeys: [] },
        ),
        async (limits) => {
          try {
            await list().setLimits(l, limits as never);
          } catch (err) {
            expect(err).toBeInstanceOf(ValidationError);
            return;
          }
          const back = await list().limits(l);
          expect(back.concurrency).toBe(limits.concurrency);
          expect(back.perKey?.concurrency).toBe(limits.perKey?.concurrency);
          expect(back.perKey?.rate?.limit).toBe(limits.perKey?.rate?.limit);
        },
      ),
      { numRuns: 60 },
    );
  }, 60_000);

  it('the claim refusal on a list without limits is a DatabaseError with SQLSTATE 22023', async () => {
    const l = fresh('nolimits');
    const err = await list()
      .claim(l, { limit: 1, leaseMs: 1000, concurrency: 1 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DatabaseError);
    expect((err as DatabaseError).sqlState).toBe('22023');
  });
});
