// Scheduling on insert (runAt / delayMs) and priorities: stored on the server clock, respected
// by claims (higher priority first, then due time), kept through fail and release, refused
// before any SQL when out of range.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AttemptList, ATTEMPT_LIST_LIMITS, ValidationError } from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait-for.js';

const db = useTestDatabase();

let n = 0;
const fresh = (label: string) => `${label}-${++n}`;

interface Row {
  item: string;
  priority: number;
  /** run_at as the server's epoch ms ('-infinity' is -Infinity), or null when dead. */
  due: number | null;
}

/** Every row of a list, by item. */
async function rows(list: string): Promise<Row[]> {
  const { rows } = await db.pool.query<{ item: string; priority: number; due: number | null }>(
    `SELECT item, priority, extract(epoch FROM run_at) * 1000 AS due
       FROM pgcoord.list_items WHERE list = $1 ORDER BY item`,
    [list],
  );
  return rows.map((r) => ({ ...r, due: r.due === null ? null : Number(r.due) }));
}

/** Claims one at a time until nothing is claimable; returns the items in claim order. */
async function drainOrder(list: AttemptList, name: string): Promise<string[]> {
  const order: string[] = [];
  for (;;) {
    const [c] = await list.claim(name, { limit: 1, leaseMs: 60_000 });
    if (c === undefined) return order;
    order.push(c.item);
  }
}

/** The server clock, epoch ms. */
async function serverNow(): Promise<number> {
  const { rows } = await db.pool.query<{ t: string }>(
    'SELECT extract(epoch FROM statement_timestamp()) * 1000 AS t',
  );
  return Number(rows[0]!.t);
}

describe('scheduling on insert', () => {
  it('delayMs counts on the server clock from the insert statement; not claimable before', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('delay');
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      const before = Number(
        (await client.query('SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t')).rows[0].t,
      );
      await list.insertOne(name, 'later', { delayMs: 3_600_000, tx: client });
      const after = Number(
        (await client.query('SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t')).rows[0].t,
      );
      await client.query('COMMIT');
      const [row] = await rows(name);
      expect(row!.due! - 3_600_000).toBeGreaterThanOrEqual(Math.floor(before));
      expect(row!.due! - 3_600_000).toBeLessThanOrEqual(Math.ceil(after));
    } finally {
      client.release();
    }
    expect(await list.claim(name, { limit: 10, leaseMs: 1000 })).toEqual([]);
    expect(await list.stats(name)).toMatchObject({ total: 1, claimable: 0, delayed: 1 });
    // delayMs 0 is ready, the same key as a plain insert ('-infinity').
    await list.insertOne(name, 'now', { delayMs: 0 });
    expect((await rows(name)).find((r) => r.item === 'now')!.due).toBe(-Infinity);
  });

  it('an item with a short delay becomes claimable once it is due, not before', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('due');
    await list.insertOne(name, 'soon', { delayMs: 300 });
    const [row] = await rows(name);
    const claimed = await waitFor(async () => {
      const c = await list.claim(name, { limit: 1, leaseMs: 60_000 });
      return c.length > 0 ? await serverNow() : undefined;
    });
    // The claim that took it ran at or after its due time, on the server clock.
    expect(claimed).toBeGreaterThanOrEqual(row!.due!);
  });

  it('runAt: a future time waits, a past one is claimable at once, after ready items', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('runat');
    const now = Math.floor(await serverNow());
    await list.insertOne(name, 'past', { runAt: new Date(now - 60_000) });
    await list.insertOne(name, 'future', { runAt: new Date(now + 3_600_000) });
    await list.insertOne(name, 'ready');
    const r = await rows(name);
    expect(r.find((x) => x.item === 'future')!.due).toBe(now + 3_600_000);
    expect(await drainOrder(list, name)).toEqual(['ready', 'past']);
    expect(await list.stats(name)).toMatchObject({ delayed: 1, leased: 2 });
  });

  it('claims take higher priorities first, then by due time, in one claim or many', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('prio');
    const now = await serverNow();
    await list.insertBatch(name, [
      'p0-a',
      { item: 'p5-due', priority: 5, runAt: new Date(now - 1000) },
      { item: 'p5-ready', priority: 5 },
      { item: 'm7', priority: -7 },
      { item: 'p9-future', priority: 9, delayMs: 3_600_000 },
      { item: 'max', priority: ATTEMPT_LIST_LIMITS.maxPriority },
      { item: 'min', priority: ATTEMPT_LIST_LIMITS.minPriority },
    ]);
    const expected = ['max', 'p5-ready', 'p5-due', 'p0-a', 'm7', 'min'];
    const copy = fresh('prio-copy');
    await db.pool.query(
      `INSERT INTO pgcoord.list_items (list, item, run_at, priority)
       SELECT $2, item, run_at, priority FROM pgcoord.list_items WHERE list = $1`,
      [name, copy],
    );
    expect(await drainOrder(list, name)).toEqual(expected);
    const all = await list.claim(copy, { limit: 100, leaseMs: 60_000 });
    expect(all.map((c) => c.item)).toEqual(expected);
  });

  it('priority is kept through fail and release; a released item is ready at once', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('keep');
    await list.insertBatch(name, ['low-1', 'low-2'], { priority: -1 });
    await list.insertOne(name, 'high', { priority: 3 });
    const [high] = await list.claim(name, { limit: 1, leaseMs: 60_000 });
    expect(high!.item).toBe('high');
    await list.fail(name, [high!]);
    const [again] = await list.claim(name, { limit: 1, leaseMs: 60_000 });
    expect(again).toMatchObject({ item: 'high', attempts: 1 });
    await list.release(name, [again!]);
    const r = await rows(name);
    expect(r.find((x) => x.item === 'high')).toMatchObject({ priority: 3, due: -Infinity });
    expect(await drainOrder(list, name)).toEqual(['high', 'low-1', 'low-2']);
    // A failure with a retry delay waits it out at its priority.
    const name2 = fresh('keep-delay');
    await list.insertBatch(name2, ['a', { item: 'b', priority: 2 }]);
    const [b] = await list.claim(name2, { limit: 1, leaseMs: 60_000 });
    await list.fail(name2, [b!], { retryDelayMs: 3_600_000 });
    expect(await drainOrder(list, name2)).toEqual(['a']);
    expect((await rows(name2)).find((x) => x.item === 'b')!.priority).toBe(2);
  });

  it('an existing item keeps its schedule and priority; in a batch the first occurrence wins', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('conflict');
    expect(await list.insertOne(name, 'x', { priority: 4 })).toBe(1);
    expect(await list.insertOne(name, 'x', { priority: 9, delayMs: 60_000 })).toBe(0);
    expect(
      await list.insertBatch(name, ['x', { item: 'y', priority: 1 }, { item: 'y', priority: 2 }], {
        delayMs: 60_000,
      }),
    ).toBe(1);
    const r = await rows(name);
    expect(r[0]).toMatchObject({ item: 'x', priority: 4, due: -Infinity });
    expect(r[1]).toMatchObject({ item: 'y', priority: 1 });
    expect(r[1]!.due).toBeGreaterThan(0);
  });

  it('item objects override the batch-wide schedule field by field; a time replaces the time', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('override');
    const at = new Date(Date.UTC(2031, 0, 2, 3, 4, 5, 6));
    await list.insertBatch(
      name,
      [
        'plain',
        { item: 'own-prio', priority: -2 },
        { item: 'own-time', runAt: at },
        { item: 'now', delayMs: 0 },
      ],
      { delayMs: 3_600_000, priority: 7 },
    );
    const r = Object.fromEntries((await rows(name)).map((x) => [x.item, x]));
    expect(r['plain']!.priority).toBe(7);
    expect(r['plain']!.due).toBeGreaterThan(Date.UTC(2020, 0, 1));
    expect(r['own-prio']).toMatchObject({ priority: -2, due: r['plain']!.due });
    expect(r['own-time']).toMatchObject({ priority: 7, due: at.getTime() });
    expect(r['now']).toMatchObject({ priority: 7, due: -Infinity });
  });

  it('refuses bad schedules before any SQL, naming the field; a batch writes nothing', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('bad');
    const bad: Array<[unknown, RegExp]> = [
      [{ runAt: new Date(), delayMs: 1 }, /options\.runAt.*together with options\.delayMs/],
      [{ delayMs: -1 }, /options\.delayMs.*between 0/],
      [{ delayMs: Number.NaN }, /options\.delayMs.*integer/],
      [{ delayMs: 1.5 }, /options\.delayMs.*integer/],
      [{ delayMs: ATTEMPT_LIST_LIMITS.maxDelayMs + 1 }, /options\.delayMs/],
      [{ priority: 32_768 }, /options\.priority.*-32768 and 32767/],
      [{ priority: -32_769 }, /options\.priority/],
      [{ priority: '1' }, /options\.priority.*integer/],
      [{ runAt: new Date(Number.NaN) }, /options\.runAt.*valid Date/],
      [{ runAt: '2030-01-01T00:00:00Z' }, /options\.runAt.*must be a Date/],
      [{ runAt: new Date('+010000-01-01T00:00:00Z') }, /options\.runAt.*9999/],
      [{ runAt: new Date('0000-12-31T00:00:00Z') }, /options\.runAt.*0001/],
    ];
    for (const [options, message] of bad) {
      const err = await list.insertOne(name, 'a', options as never).catch((e: unknown) => e);
      expect(err, JSON.stringify(options)).toBeInstanceOf(ValidationError);
      expect((err as Error).message).toMatch(message);
      await expect(list.insertBatch(name, ['a', 'b'], options as never)).rejects.toThrow(
        ValidationError,
      );
      await expect(list.import(name, ['a'], options as never)).rejects.toThrow(ValidationError);
    }
    const items: Array<[unknown, RegExp]> = [
      [{ item: 'x', priority: 40_000 }, /items\[1\]\.priority/],
      [{ item: 'x', runAt: new Date(), delayMs: 5 }, /items\[1\]\.runAt/],
      [{ item: '' }, /items\[1\]\.item.*empty/],
      [{ item: 'x', delay: 5 }, /items\[1\].*unknown field "delay"/],
      [null, /items\[1\].*string or an object/],
      [5, /items\[1\].*string or an object/],
    ];
    for (const [item, message] of items) {
      await expect(list.insertBatch(name, ['ok', item as never, 'ok2'])).rejects.toThrow(message);
    }
    expect(await list.count(name)).toBe(0);
  });

  it('any schedule values: stored as given, or refused with nothing written (fuzz)', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('fuzz');
    const value = fc.oneof(
      fc.constant(undefined),
      fc.integer({ min: -40_000, max: 40_000 }),
      fc.double(),
      fc.constantFrom(Number.NaN, Infinity, -1, 0, -0, ATTEMPT_LIST_LIMITS.maxDelayMs, '5', null),
    );
    const runAt = fc.oneof(
      fc.constant(undefined),
      fc.date({ noInvalidDate: false }),
      fc.date({ min: new Date('1999-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z') }),
      fc.constant('2030-01-01'),
    );
    let i = 0;
    await fc.assert(
      fc.asyncProperty(runAt, value, value, async (r, delayMs, priority) => {
        const item = `i${++i}`;
        const options = { runAt: r, delayMs, priority } as never;
        const validTime =
          r === undefined ||
          (r instanceof Date &&
            !Number.isNaN(r.getTime()) &&
            r.getTime() >= Date.parse('0001-01-01T00:00:00Z') &&
            r.getTime() <= Date.parse('9999-12-31T23:59:59.999Z'));
        const validDelay =
          delayMs === undefined ||
          (Number.isSafeInteger(delayMs) &&
            (delayMs as number) >= 0 &&
            (delayMs as number) <= ATTEMPT_LIST_LIMITS.maxDelayMs);
        const validPriority =
          priority === undefined ||
          (Number.isSafeInteger(priority) &&
            (priority as number) >= -32_768 &&
            (priority as number) <= 32_767);
        const valid =
          validTime && validDelay && validPriority && (r === undefined || delayMs === undefined);
        const batch = i % 2 === 0;
        const write = batch
          ? list.insertBatch(name, [{ item, ...(options as object) } as never])
          : list.insertOne(name, item, options);
        if (!valid) {
          await expect(write).rejects.toThrow(ValidationError);
          expect(await list.getOne(name, item)).toBeUndefined();
          return;
        }
        expect(await write).toBe(1);
        const { rows: got } = await db.pool.query<{ priority: number; due: string | null }>(
          `SELECT priority, (extract(epoch FROM run_at) * 1000)::text AS due
             FROM pgcoord.list_items WHERE list = $1 AND item = $2`,
          [name, item],
        );
        // `+ 0`: a priority of -0 is stored as 0.
        expect(got[0]!.priority).toBe(((priority as number | undefined) ?? 0) + 0);
        if (r !== undefined) expect(Number(got[0]!.due)).toBe((r as Date).getTime());
        else if (!delayMs) expect(got[0]!.due).toBe('-Infinity');
      }),
      { numRuns: 150 },
    );
  });

  it('import writes the schedule on the COPY path and on the INSERT path after a duplicate', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('import');
    const items = Array.from({ length: 3000 }, (_, k) => `it-${k}`);
    const before = await serverNow();
    expect(await list.import(name, items, { delayMs: 3_600_000, priority: -3 })).toEqual({
      read: 3000,
      inserted: 3000,
    });
    const after = await serverNow();
    const r = await rows(name);
    expect(new Set(r.map((x) => x.priority))).toEqual(new Set([-3]));
    const dues = new Set(r.map((x) => x.due));
    expect(dues.size).toBe(1); // one due time: the import's start
    const due = [...dues][0]!;
    expect(due - 3_600_000).toBeGreaterThanOrEqual(Math.floor(before));
    expect(due - 3_600_000).toBeLessThanOrEqual(Math.ceil(after));
    // A duplicate in the first chunk sends it (and the rest) down the INSERT path.
    const name2 = fresh('import-dup');
    await list.insertOne(name2, 'it-0');
    const at = new Date(Date.UTC(2032, 5, 6, 7, 8, 9, 10));
    const res = await list.import(name2, items, { runAt: at, priority: 11, chunkSize: 1000 });
    expect(res).toEqual({ read: 3000, inserted: 2999 });
    const r2 = await rows(name2);
    expect(r2.find((x) => x.item === 'it-0')).toMatchObject({ priority: 0, due: -Infinity });
    const rest = r2.filter((x) => x.item !== 'it-0');
    expect(rest.every((x) => x.priority === 11 && x.due === at.getTime())).toBe(true);
    // An item with a tab or a backslash survives the extra COPY fields.
    const name3 = fresh('import-escape');
    await list.import(name3, ['a\tb', 'c\\d'], { priority: 1 });
    expect((await rows(name3)).map((x) => [x.item, x.priority])).toEqual([
      ['a\tb', 1],
      ['c\\d', 1],
    ]);
  });

  it('a claim reaches claimable items under more than 8 levels holding only future or leased rows', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('levels');
    await list.insertBatch(
      name,
      Array.from({ length: 12 }, (_, k) => ({
        item: `future-${k}`,
        priority: 100 + k,
        delayMs: 3_600_000,
      })),
    );
    await list.insertBatch(name, ['held-1', 'held-2'], { priority: 50 });
    await list.claim(name, { limit: 2, leaseMs: 60_000 });
    await list.insertBatch(name, [
      { item: 'low-b', priority: -5 },
      { item: 'low-a', priority: 1 },
      { item: 'low-c', priority: -5, runAt: new Date(Date.UTC(2000, 0, 1)) },
    ]);
    expect((await list.claim(name, { limit: 10, leaseMs: 60_000 })).map((c) => c.item)).toEqual([
      'low-a',
      'low-b',
      'low-c',
    ]);
  });

  it('a big scheduled backlog is not walked by claims: each level stops at its first future row', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('backlog');
    const now = await serverNow();
    // Distinct due times: no posting lists to skip, every entry its own.
    await db.pool.query(
      `INSERT INTO pgcoord.list_items (list, item, run_at)
       SELECT $1, 'f' || g, to_timestamp(($2::float8 + 3600000 + g) / 1000)
         FROM generate_series(1, 100000) g`,
      [name, now],
    );
    await list.insertBatch(name, ['r1', 'r2', 'r3']);
    await db.pool.query('VACUUM ANALYZE pgcoord.list_items');
    const client = await db.pool.connect();
    try {
      const call = `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
        SELECT * FROM pgcoord.list_complete_and_claim($1, '{}', '{}', '{}', 100, 60000, 1000)`;
      await client.query(call, [name]); // warms the function's plans and the catalog caches
      await list.insertBatch(name, ['r4', 'r5']);
      const plan = (await client.query(call, [name])).rows[0]['QUERY PLAN'][0];
      const pages = plan.Plan['Shared Hit Blocks'] + plan.Plan['Shared Read Blocks'];
      // The 100,000 future entries fill ~300 index pages; a walk over them would read them all.
      expect(pages).toBeLessThan(60);
    } finally {
      client.release();
    }
  });

  it('a worker starts a delayed item only once it is due, after ready items inserted later, higher priority first', async () => {
    const list = new AttemptList(db.pool);
    const name = fresh('worker');
    await list.insertOne(name, 'delayed', { delayMs: 400 });
    await list.insertBatch(name, ['low', { item: 'high', priority: 5 }]);
    const order: string[] = [];
    const dueWhenStarted: boolean[] = [];
    const worker = list.work(
      name,
      async ({ item }) => {
        order.push(item);
        // On the server clock: the row keeps its run_at while leased.
        const { rows } = await db.pool.query<{ due: boolean }>(
          `SELECT statement_timestamp() >= run_at AS due
             FROM pgcoord.list_items WHERE list = $1 AND item = $2`,
          [name, item],
        );
        dueWhenStarted.push(rows[0]!.due);
      },
      { concurrency: 1, pollIntervalMs: 50 },
    );
    await waitFor(async () => (await list.count(name)) === 0);
    await worker.stop();
    expect(order).toEqual(['high', 'low', 'delayed']);
    expect(dueWhenStarted).toEqual([true, true, true]);
  });
});
