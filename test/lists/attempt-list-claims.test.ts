import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { AttemptList, StaleTokenError, type Claim, type ClaimRef } from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/wait-for.js';

const db = useTestDatabase();
const here = path.dirname(fileURLToPath(import.meta.url));

let n = 0;
const fresh = (label: string) => `${label}-${++n}`;

/**
 * Runs `fn` and counts the index scans of list_items it made, from the client's own statistics
 * for its open transaction (not yet flushed): a claim walks list_items_claim once; a settle
 * through the primary key adds one probe per item, one by its ctid hint none.
 */
async function scansDuring<T>(
  client: pg.ClientBase,
  fn: () => Promise<T>,
): Promise<{ result: T; scans: number }> {
  const read = async () => {
    const { rows } = await client.query<{ idx_scan: string | null }>(
      `SELECT idx_scan FROM pg_stat_xact_user_tables
        WHERE schemaname = 'pgcoord' AND relname = 'list_items'`,
    );
    return Number(rows[0]?.idx_scan ?? 0);
  };
  const before = await read();
  const result = await fn();
  return { result, scans: (await read()) - before };
}

/** Runs `fn` in a transaction on a client of its own, committed if `fn` returns. */
async function inTransaction(fn: (client: pg.PoolClient) => Promise<void>): Promise<void> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    await fn(client);
    await client.query('COMMIT');
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    client.release();
  }
}

async function serverNow(): Promise<Date> {
  const { rows } = await db.pool.query('SELECT now() AS now');
  return rows[0].now as Date;
}

/** Claims until `items` come back (their lease must run out first); returns those claims. */
async function reclaim(
  list: AttemptList,
  l: string,
  items: string[],
  leaseMs = 60_000,
): Promise<Claim[]> {
  const got: Claim[] = [];
  await waitFor(
    async () => {
      got.push(...(await list.claim(l, { limit: 100, leaseMs })));
      return items.every((i) => got.some((c) => c.item === i));
    },
    { timeoutMs: 20_000, message: `items ${items.join(',')} to come back` },
  );
  return got;
}

describe('AttemptList claims', () => {
  it('claim hands out items with a token and a lease on the server clock; complete deletes them', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('claim');
    await list.insertBatch(l, ['a', 'b', 'c']);
    const before = await serverNow();
    const claims = await list.claim(l, { limit: 2, leaseMs: 60_000 });
    expect(claims).toHaveLength(2);
    for (const c of claims) {
      expect(c.token).toMatch(/^[0-9]+$/);
      expect(c.attempts).toBe(0);
      expect(c.leaseUntil.getTime()).toBeGreaterThanOrEqual(before.getTime() + 59_000);
    }
    // Leased items are not handed out again.
    const rest = await list.claim(l, { limit: 10, leaseMs: 60_000 });
    expect(rest.map((c) => c.item)).toEqual(
      ['a', 'b', 'c'].filter((i) => !claims.some((c) => c.item === i)),
    );
    expect(await list.claim(l, { limit: 10, leaseMs: 60_000 })).toEqual([]);
    expect(await list.complete(l, [...claims, ...rest])).toEqual({ count: 3, stale: [] });
    expect(await list.count(l)).toBe(0);
    // Completing again: the items are gone, so the tokens are stale; nothing happens.
    expect(await list.complete(l, claims)).toEqual({ count: 0, stale: claims.map((c) => c.item) });
  });

  it('an expired lease makes the item claimable again; the late complete is refused, never applied twice', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('expire');
    await list.insertBatch(l, ['x', 'y']);
    const expiredEvents: Array<{ list: string; items: string[] }> = [];
    list.on('claim:expired', (e) => expiredEvents.push(e));
    const first = await list.claim(l, { limit: 2, leaseMs: 150 });
    expect(first).toHaveLength(2);
    const second = await reclaim(list, l, ['x', 'y']);
    // The expired lease counted as a failed attempt, and was reported.
    expect(second.map((c) => c.attempts)).toEqual([1, 1]);
    expect(expiredEvents.flatMap((e) => e.items).sort()).toEqual(['x', 'y']);
    expect(expiredEvents.every((e) => e.list === l)).toBe(true);
    expect(second[0]!.token).not.toBe(first[0]!.token);

    const late = await list.complete(l, first);
    expect(late).toEqual({ count: 0, stale: ['x', 'y'] });
    await expect(list.complete(l, first, { strict: true })).rejects.toBeInstanceOf(StaleTokenError);
    await expect(list.fail(l, first)).resolves.toMatchObject({ count: 0, stale: ['x', 'y'] });
    await expect(list.release(l, first)).resolves.toEqual({ count: 0, stale: ['x', 'y'] });
    await expect(list.extend(l, first, { leaseMs: 1000 })).resolves.toMatchObject({ count: 0 });
    expect(await list.count(l)).toBe(2);
    expect(await list.getOne(l, 'x')).toBe(1); // the refused fail did not add an attempt

    // strict is all-or-nothing: one stale claim and the valid one is not applied either.
    const mixed: ClaimRef[] = [second[0]!, first[1]!];
    await expect(list.complete(l, mixed, { strict: true })).rejects.toBeInstanceOf(StaleTokenError);
    expect(await list.count(l)).toBe(2);
    expect(await list.complete(l, second)).toEqual({ count: 2, stale: [] });
    expect(await list.count(l)).toBe(0);
  });

  it('fail adds an attempt and releases the item, after an optional retry delay', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('fail');
    await list.insertBatch(l, ['a', 'b']);
    const claims = await list.claim(l, { limit: 2, leaseMs: 60_000 });
    const a = claims.find((c) => c.item === 'a')!;
    const b = claims.find((c) => c.item === 'b')!;
    expect(await list.fail(l, [a])).toEqual({ count: 1, stale: [], dead: [] });
    expect(await list.fail(l, [b], { retryDelayMs: 1500 })).toEqual({
      count: 1,
      stale: [],
      dead: [],
    });
    // a is claimable at once, b only after its delay.
    const now = await list.claim(l, { limit: 10, leaseMs: 60_000 });
    expect(now.map((c) => [c.item, c.attempts])).toEqual([['a', 1]]);
    const later = await reclaim(list, l, ['b']);
    expect(later.map((c) => [c.item, c.attempts])).toEqual([['b', 1]]);
    // The same token cannot fail twice.
    expect(await list.fail(l, [a])).toMatchObject({ count: 0, stale: ['a'] });
  });

  it('release gives items back untouched; extend renews the lease', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('release');
    await list.insertBatch(l, ['a', 'b']);
    const claims = await list.claim(l, { limit: 2, leaseMs: 60_000 });
    const a = claims.find((c) => c.item === 'a')!;
    const b = claims.find((c) => c.item === 'b')!;
    expect(await list.release(l, [a])).toEqual({ count: 1, stale: [] });
    const again = await list.claim(l, { limit: 10, leaseMs: 60_000 });
    expect(again.map((c) => [c.item, c.attempts])).toEqual([['a', 0]]);

    const ext = await list.extend(l, [b], { leaseMs: 3_600_000 });
    expect(ext.count).toBe(1);
    expect(ext.leaseUntil!.getTime()).toBeGreaterThan(b.leaseUntil.getTime() + 3_000_000);
    // The old claim of a (released, then claimed again) cannot extend.
    expect(await list.extend(l, [a], { leaseMs: 1000 })).toMatchObject({ count: 0, stale: ['a'] });
  });

  it('maxAttempts: items that reach it are dead, can be listed and requeued', async () => {
    const list = new AttemptList(db.pool, { maxAttempts: 2 });
    const l = fresh('dead');
    const deadEvents: string[] = [];
    list.on('claim:dead', (e) => deadEvents.push(...e.items));
    await list.insertBatch(l, ['a', 'b', 'c']);
    let claims = await list.claim(l, { limit: 3, leaseMs: 60_000 });
    await list.fail(l, claims);
    claims = await list.claim(l, { limit: 3, leaseMs: 60_000 });
    expect(claims.map((c) => c.attempts)).toEqual([1, 1, 1]);
    const a = claims.filter((c) => c.item !== 'c');
    const r = await list.fail(l, a);
    expect(r.dead.sort()).toEqual(['a', 'b']);
    // c's lease expires instead of failing: with maxAttempts 2 that second attempt retires it too.
    await list.release(
      l,
      claims.filter((c) => c.item === 'c'),
    );
    const c = await list.claim(l, { limit: 3, leaseMs: 100 });
    expect(c.map((x) => x.item)).toEqual(['c']);
    await waitFor(
      async () => {
        // Before the lease ends this claims nothing; after, it retires c instead of handing it out.
        expect(await list.claim(l, { limit: 3, leaseMs: 60_000 })).toEqual([]);
        return (await list.dead(l)).length === 3;
      },
      { timeoutMs: 20_000, message: 'c to die after its lease expired' },
    );
    expect(deadEvents).toEqual(['c']); // a and b died in fail(), c in a claim
    expect(await list.dead(l)).toEqual([
      { item: 'a', attempts: 2 },
      { item: 'b', attempts: 2 },
      { item: 'c', attempts: 2 },
    ]);
    expect(await list.dead(l, { after: 'a', count: 1 })).toEqual([{ item: 'b', attempts: 2 }]);
    expect(await list.claim(l, { limit: 3, leaseMs: 60_000 })).toEqual([]);
    expect(await list.count(l)).toBe(3); // dead items are still items of the list

    expect(await list.requeue(l, ['a', 'zz'])).toBe(1);
    expect(
      (await list.claim(l, { limit: 3, leaseMs: 60_000 })).map((x) => [x.item, x.attempts]),
    ).toEqual([['a', 0]]);
    expect(await list.requeue(l)).toBe(2);
    expect(await list.dead(l)).toEqual([]);
    // A per-call maxAttempts overrides the list's.
    const more = await list.claim(l, { limit: 3, leaseMs: 60_000, maxAttempts: 10 });
    expect(more).toHaveLength(2);
  });

  it('stats counts items by state on the server clock', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('stats');
    await list.insertBatch(l, ['a', 'b', 'c', 'd', 'e']);
    expect(await list.stats(l)).toEqual({ total: 5, claimable: 5, leased: 0, delayed: 0, dead: 0 });
    const claims = await list.claim(l, { limit: 3, leaseMs: 60_000 });
    await list.fail(l, [claims[0]!], { retryDelayMs: 3_600_000 });
    await list.fail(l, [claims[1]!], { maxAttempts: 1 });
    expect(await list.stats(l)).toEqual({ total: 5, claimable: 2, leased: 1, delayed: 1, dead: 1 });
    expect(await list.stats('no-such-list')).toEqual({
      total: 0,
      claimable: 0,
      leased: 0,
      delayed: 0,
      dead: 0,
    });
  });

  it('hasWork: claimable, leased or waiting out a retry; not dead, not scheduled for later', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('has-work');
    expect(await list.hasWork(l)).toBe(false);
    await list.insertBatch(l, ['a', 'b']);
    expect(await list.hasWork(l)).toBe(true); // claimable
    const [a, b] = await list.claim(l, { limit: 2, leaseMs: 60_000 });
    expect(await list.hasWork(l)).toBe(true); // leased
    await list.fail(l, [a!], { maxAttempts: 1 });
    expect(await list.hasWork(l)).toBe(true); // b still leased; a dead
    await list.fail(l, [b!], { retryDelayMs: 3_600_000 });
    expect(await list.hasWork(l)).toBe(true); // b waits out its retry delay
    await db.pool.query(
      `UPDATE pgcoord.list_items SET run_at = now() + interval '1 hour', attempts = 0
        WHERE list = $1 AND item = 'b'`,
      [l],
    );
    // Scheduled for later with no attempt yet (what a run-at insert leaves): not this pass' work.
    expect(await list.hasWork(l)).toBe(false);
    // An expired lease is work: the item is claimable again.
    await list.insertBatch(l, ['c']);
    const [c] = await list.claim(l, { limit: 1, leaseMs: 30 });
    await waitFor(async () => (await list.stats(l)).claimable === 1);
    expect(c!.item).toBe('c');
    expect(await list.hasWork(l)).toBe(true);
    await expect(list.hasWork('')).rejects.toThrow(/list/);
  });

  it('leases taken before migration 0007 (lease end in run_at) hold until they end, then count as an attempt', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('old-lease');
    await list.insertBatch(l, ['a', 'b', 'c']);
    // The state migration 0001 wrote for a claim: token set, run_at = lease end, no leased_until.
    await db.pool.query(
      `UPDATE pgcoord.list_items SET token = 424242,
         run_at = CASE item WHEN 'a' THEN now() + interval '1 hour' ELSE now() - interval '1 second' END
       WHERE list = $1 AND item IN ('a', 'b')`,
      [l],
    );
    expect(await list.stats(l)).toMatchObject({ claimable: 2, leased: 1 });
    const claims = await list.claim(l, { limit: 10, leaseMs: 60_000 });
    expect(claims.map((c) => [c.item, c.attempts]).sort()).toEqual([
      ['b', 1],
      ['c', 0],
    ]);
    // The live old lease can still be extended and completed with its token.
    const old: ClaimRef = { item: 'a', token: '424242' };
    const ext = await list.extend(l, [old], { leaseMs: 60_000 });
    expect(ext).toMatchObject({ count: 1, stale: [] });
    expect(await list.claim(l, { limit: 10, leaseMs: 60_000 })).toEqual([]);
    expect(await list.complete(l, [old, ...claims])).toEqual({ count: 3, stale: [] });
    expect(await list.count(l)).toBe(0);
  });

  it('completeAndClaim completes a batch and claims the next in one call', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('cac');
    await list.insertBatch(l, ['1', '2', '3', '4', '5']);
    let r = await list.completeAndClaim(l, [], { limit: 2, leaseMs: 60_000 });
    expect(r.count).toBe(0);
    expect(r.claims).toHaveLength(2);
    const seen = r.claims.map((c) => c.item);
    const stale: ClaimRef = { item: r.claims[0]!.item, token: '999999999' };
    r = await list.completeAndClaim(l, [...r.claims, { item: 'nope', token: '1' }], {
      limit: 2,
      leaseMs: 60_000,
    });
    expect(r.count).toBe(2);
    expect(r.stale).toEqual(['nope']);
    seen.push(...r.claims.map((c) => c.item));
    r = await list.completeAndClaim(l, r.claims, { limit: 2, leaseMs: 60_000 });
    seen.push(...r.claims.map((c) => c.item));
    r = await list.completeAndClaim(l, [...r.claims, stale], { limit: 0, leaseMs: 60_000 });
    expect(r.claims).toEqual([]);
    expect(r.stale).toEqual([stale.item]);
    expect(seen.sort()).toEqual(['1', '2', '3', '4', '5']);
    expect(await list.count(l)).toBe(0);
  });
});

describe('AttemptList claims under concurrency and faults', () => {
  it('a completion reaches its rows by the ctid the claim returned; copied or moved claims by the primary key', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('ctid');
    await list.insertBatch(
      l,
      Array.from({ length: 30 }, (_, i) => `c${i}`),
    );
    await inTransaction(async (tx) => {
      const held = await list.claim(l, { limit: 10, leaseMs: 60_000, tx });
      // The claim objects as handed out: the next claim's walk, no primary-key probe.
      const r1 = await scansDuring(tx, () =>
        list.completeAndClaim(l, held, { limit: 10, leaseMs: 60_000, tx }),
      );
      expect(r1.result.count).toBe(10);
      expect(r1.scans).toBeLessThan(5);
      // Rebuilt claims (say from JSON) carry no hint: same result through the primary key.
      const copies: ClaimRef[] = r1.result.claims.map((c) => ({ item: c.item, token: c.token }));
      const r2 = await scansDuring(tx, () =>
        list.completeAndClaim(l, copies, { limit: 10, leaseMs: 60_000, tx }),
      );
      expect(r2.result).toMatchObject({ count: 10, stale: [] });
      expect(r2.scans).toBeGreaterThanOrEqual(r1.scans + 10);
      // extend reaches its rows by the hints too, writes new row versions and moves the hints
      // to them: the completion after it still goes straight to the rows.
      const claims = r2.result.claims;
      const extended = await scansDuring(tx, () =>
        list.extend(l, claims, { leaseMs: 120_000, tx }),
      );
      expect(extended.result.count).toBe(10);
      expect(extended.scans).toBeLessThan(5);
      const completed = await scansDuring(tx, () => list.complete(l, claims, { tx }));
      expect(completed.result).toEqual({ count: 10, stale: [] });
      expect(completed.scans).toBeLessThan(5);
    });
    expect(await list.count(l)).toBe(0);
  });

  it('release and fail reach their rows by the hint; copies and outdated hints by the primary key', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('hint-settle');
    await list.insertBatch(
      l,
      Array.from({ length: 8 }, (_, i) => `h${i}`),
    );
    await inTransaction(async (tx) => {
      const held = await list.claim(l, { limit: 8, leaseMs: 60_000, tx });
      expect(held).toHaveLength(8);
      const [a, b, c, d] = [held.slice(0, 2), held.slice(2, 4), held.slice(4, 6), held.slice(6)];
      // Hinted: no primary-key probe (the read of the statistics is not an index scan).
      expect(await scansDuring(tx, () => list.fail(l, a!, { tx }))).toMatchObject({
        result: { count: 2 },
        scans: 0,
      });
      expect(await scansDuring(tx, () => list.release(l, b!, { tx }))).toMatchObject({
        result: { count: 2 },
        scans: 0,
      });
      // Copies carry no hint: one probe per item, same result.
      const copies = c!.map((x) => ({ item: x.item, token: x.token }));
      expect(await scansDuring(tx, () => list.fail(l, copies, { tx }))).toMatchObject({
        result: { count: 2 },
        scans: 2,
      });
      // A hint whose row moved (an increment wrote a new version, same token): the probe finds it.
      await list.incrementBatch(
        l,
        d!.map((x) => x.item),
        { tx },
      );
      const moved = await scansDuring(tx, () => list.release(l, d!, { tx }));
      expect(moved.result).toEqual({ count: 2, stale: [] });
      expect(moved.scans).toBeGreaterThanOrEqual(2);
    });
    const attempts = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => [`h${i}`, await list.getOne(l, `h${i}`)] as const),
    );
    expect(Object.fromEntries(attempts)).toEqual({
      h0: 1,
      h1: 1,
      h2: 0,
      h3: 0,
      h4: 1,
      h5: 1,
      h6: 1,
      h7: 1,
    });
  });

  it('the six-argument claim function of the previous release still claims and completes', async () => {
    // Processes still running the release before migration 0008 call this signature.
    const list = new AttemptList(db.pool);
    const l = fresh('old-fn');
    await list.insertBatch(l, ['p1', 'p2']);
    const call = (items: string[], tokens: string[], limit: number) =>
      db.pool.query(
        `SELECT * FROM pgcoord.list_complete_and_claim($1, $2::text[], $3::bigint[], $4, 60000, 100)`,
        [l, items, tokens, limit],
      );
    const first = (await call([], [], 2)).rows[0];
    expect([...first.o_items].sort()).toEqual(['p1', 'p2']);
    const token = String(first.o_token);
    const second = (await call(first.o_items, [token, token], 2)).rows[0];
    expect([...second.o_completed].sort()).toEqual(['p1', 'p2']);
    expect(second.o_items).toEqual([]);
    expect(await list.count(l)).toBe(0);
  });

  it('a completion waiting for a row lock holds none of its next claims (no deadlock between workers)', async () => {
    // A claim that meets a row another worker claimed after the claim's snapshot locks it,
    // finds it leased and skips it, but holds the lock to its commit; that worker's completion
    // of the row then waits. Here a transaction of the test plays that claim, holding a lock on
    // the item A completes, and then wants the item A's call would claim next. Had A claimed
    // before completing (the order of migrations 0001/0007), each would wait for the other.
    const list = new AttemptList(db.pool);
    const l = fresh('order');
    await list.insertBatch(l, ['o1', 'o2']);
    const [mine] = await list.claim(l, { limit: 1, leaseMs: 60_000 });
    const other = mine!.item === 'o1' ? 'o2' : 'o1';
    const x = await db.pool.connect();
    try {
      await x.query('BEGIN');
      const locked = await x.query(
        `SELECT 1 FROM pgcoord.list_items WHERE list = $1 AND item = $2 FOR UPDATE`,
        [l, mine!.item],
      );
      expect(locked.rowCount).toBe(1);
      const pending = list.completeAndClaim(l, [mine!], { limit: 1, leaseMs: 60_000 });

      const xPid = (await x.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      await waitFor(
        async () =>
          (
            await db.pool.query(
              `SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                WHERE NOT l.granted AND a.datname = current_database() AND l.pid <> $1`,
              [xPid],
            )
          ).rowCount! > 0,
        { timeoutMs: 10_000, message: 'the completion to wait for the row lock' },
      );
      // While A waits, the item it would claim next is free to lock.
      await x.query(
        `SELECT 1 FROM pgcoord.list_items WHERE list = $1 AND item = $2 FOR UPDATE NOWAIT`,
        [l, other],
      );
      await x.query('COMMIT');
      const r = await pending;
      expect(r).toMatchObject({ count: 1, stale: [] });
      expect(r.claims.map((c) => c.item)).toEqual([other]);
    } finally {
      await x.query('ROLLBACK').catch(() => undefined);
      x.release();
    }
  });

  it('a settlement the server picks as a deadlock victim is run again and applied', async () => {
    // The list's statements check for deadlocks after 50 ms, the test's transaction X after a
    // minute: when both wait on each other, the server always rolls the list's statement back.
    const pool = db.newPool({ max: 2, options: '-c deadlock_timeout=50' });
    const list = new AttemptList(pool);
    const l = fresh('victim');
    await list.insertBatch(l, ['v1', 'v2']);
    const claims = await list.claim(l, { limit: 2, leaseMs: 60_000 });
    const [first, second] = [...claims].sort((a, b) => a.item.localeCompare(b.item));
    const x = await db.pool.connect();
    try {
      await x.query('BEGIN');
      await x.query(`SET LOCAL deadlock_timeout = '1min'`);
      const lock = (item: string, wait = '') =>
        `SELECT 1 FROM pgcoord.list_items WHERE list = '${l}' AND item = '${item}' FOR UPDATE ${wait}`;
      await x.query(lock(second!.item));
      // The release locks v1, then waits for v2, which X holds.
      const pending = list.release(l, [first!, second!]);
      await waitFor(
        async () => {
          try {
            await db.pool.query(lock(first!.item, 'NOWAIT'));
            return false;
          } catch (err) {
            if ((err as { code?: string }).code !== '55P03') throw err;
            return true;
          }
        },
        { timeoutMs: 10_000, message: 'the release to hold v1 and wait for v2' },
      );
      // X now waits for v1: a deadlock, and the release is its victim.
      await x.query(lock(first!.item));
      await x.query('COMMIT');
      expect(await pending).toEqual({ count: 2, stale: [] });
      expect((await list.stats(l)).claimable).toBe(2);
    } finally {
      await x.query('ROLLBACK').catch(() => undefined);
      x.release();
    }
  });

  it('8 concurrent claimers: every item claimed exactly once, none lost', async () => {
    const pool = db.newPool({ max: 8 });
    const list = new AttemptList(pool);
    const l = fresh('conc');
    const total = 3_000;
    await list.insertBatch(
      l,
      Array.from({ length: total }, (_, i) => `item-${i}`),
    );
    const claimedBy = new Map<string, number>();
    const claimedTwice: string[] = [];
    await Promise.all(
      Array.from({ length: 8 }, async (_, worker) => {
        let held: Claim[] = [];
        for (;;) {
          // Half the workers use the one-round-trip loop, half claim and complete separately.
          if (worker % 2 === 0) {
            held = (await list.completeAndClaim(l, held, { limit: 25, leaseMs: 60_000 })).claims;
          } else {
            if (held.length > 0) expect((await list.complete(l, held)).count).toBe(held.length);
            held = await list.claim(l, { limit: 25, leaseMs: 60_000 });
          }
          if (held.length === 0) return;
          for (const c of held) {
            if (claimedBy.has(c.item)) claimedTwice.push(c.item);
            claimedBy.set(c.item, worker);
          }
        }
      }),
    );
    expect(claimedTwice).toEqual([]);
    expect(claimedBy.size).toBe(total);
    expect(await list.count(l)).toBe(0);
    // Every worker got a share (SKIP LOCKED spreads the work rather than serializing it).
    expect(new Set(claimedBy.values()).size).toBeGreaterThan(1);
  });

  it('a worker whose connection is terminated after claiming: its items come back after the lease, processed once', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('term');
    await list.insertBatch(l, ['t1', 't2', 't3']);
    const appName = `al-victim-${process.pid}-${n}`;
    const victim = new pg.Client({ connectionString: db.url, application_name: appName });
    victim.on('error', () => undefined);
    await victim.connect();
    try {
      const claims = await new AttemptList(victim).claim(l, { limit: 2, leaseMs: 300 });
      expect(claims).toHaveLength(2);
      const { rows } = await db.pool.query(
        `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
         WHERE application_name = $1 AND datname = current_database()`,
        [appName],
      );
      expect(rows).toEqual([{ ok: true }]);
      await expect(victim.query('SELECT 1')).rejects.toThrow();

      // The third item was never claimed: it is available now, the dead worker's after the lease.
      const processed: string[] = [];
      const back = await reclaim(
        list,
        l,
        claims.map((c) => c.item),
      );
      processed.push(...back.map((c) => c.item));
      expect(processed.sort()).toEqual(['t1', 't2', 't3']);
      expect((await list.complete(l, back)).count).toBe(3);
      // The dead worker's tokens are refused if it ever comes back.
      expect((await list.complete(l, claims)).count).toBe(0);
      expect(await list.count(l)).toBe(0);
    } finally {
      await victim.end().catch(() => undefined);
    }
  });

  it('a claim inside a transaction that dies with its connection is rolled back: items free at once', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('termtx');
    await list.insertBatch(l, ['u1', 'u2']);
    const appName = `al-victim-tx-${process.pid}-${n}`;
    const victim = new pg.Client({ connectionString: db.url, application_name: appName });
    victim.on('error', () => undefined);
    await victim.connect();
    try {
      await victim.query('BEGIN');
      const claims = await list.claim(l, { limit: 2, leaseMs: 3_600_000, tx: victim });
      expect(claims).toHaveLength(2);
      // Locked by the open transaction: nobody else gets them.
      expect(await list.claim(l, { limit: 2, leaseMs: 60_000 })).toEqual([]);
      await db.pool.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = $1 AND datname = current_database()`,
        [appName],
      );
      // Not after an hour's lease: the claim never committed.
      const back = await waitFor(async () => {
        const c = await list.claim(l, { limit: 2, leaseMs: 60_000 });
        return c.length === 2 ? c : undefined;
      });
      expect(back.map((c) => c.attempts)).toEqual([0, 0]);
      expect((await list.complete(l, back)).count).toBe(2);
    } finally {
      await victim.end().catch(() => undefined);
    }
  });

  it('a worker process SIGKILLed after claiming: its items come back after the lease, processed once', async () => {
    const list = new AttemptList(db.pool);
    const l = fresh('kill');
    await list.insertBatch(l, ['k1', 'k2', 'k3', 'k4']);
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        path.join(here, '../fixtures/attempt-list-worker.ts'),
        db.url,
        l,
        '3',
        '3000',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.on('exit', (_code, signal) => resolve(signal)),
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const claims = await waitFor(
      () => (out.includes('\n') ? (JSON.parse(out.split('\n')[0]!) as Claim[]) : undefined),
      {
        timeoutMs: 30_000,
        message: 'the child to print its claims',
      },
    );
    expect(claims).toHaveLength(3);
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');

    // Items still leased to the dead process are not handed out before the lease ends.
    const early = await list.claim(l, { limit: 10, leaseMs: 60_000 });
    expect(early.map((c) => c.item)).toEqual(
      ['k1', 'k2', 'k3', 'k4'].filter((i) => !claims.some((c) => c.item === i)),
    );
    const back = await reclaim(
      list,
      l,
      claims.map((c) => c.item),
    );
    expect(back.map((c) => c.item).sort()).toEqual(claims.map((c) => c.item).sort());
    expect(back.every((c) => c.attempts === 1)).toBe(true);
    expect((await list.complete(l, [...early, ...back])).count).toBe(4);
    expect(
      (
        await list.complete(
          l,
          claims.map((c) => ({ item: c.item, token: c.token })),
        )
      ).count,
    ).toBe(0);
    expect(await list.count(l)).toBe(0);
  });
});
