import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AttemptList,
  ChangeCapture,
  ChangeConsumer,
  KvStore,
  LeaderElection,
  LeaseManager,
  Listener,
  RateLimiter,
  UnsupportedError,
  migrate,
  notify,
  withTransaction,
  type Lease,
} from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { pgbouncerUnavailable, startPgBouncer, type PgBouncer } from '../helpers/pgbouncer.js';
import { nextEvent, waitFor } from '../helpers/wait-for.js';

// Every block's main paths through a real PgBouncer in transaction mode, with fewer server
// connections (3) than the pool has clients (8): consecutive statements of one client land on
// different server connections, and one server connection serves many clients in turn.
const unavailable = pgbouncerUnavailable();
const db = useTestDatabase({ migrate: false });
let bouncer: PgBouncer | undefined;
let pool: pg.Pool;

beforeAll(async () => {
  if (unavailable) {
    console.warn(`PgBouncer test skipped: ${unavailable}`);
    return;
  }
  bouncer = await startPgBouncer({ poolMode: 'transaction', poolSize: 3 });
  pool = new pg.Pool({ connectionString: bouncer.url(db.name), max: 8 });
  pool.on('error', () => undefined);
  // The migrator itself runs through the pooler (twice at once: its lock is transaction-scoped).
  await Promise.all([migrate(pool), migrate(pool)]);
});

afterAll(async () => {
  await pool?.end();
  await bouncer?.stop();
});

/** Runs `fn` `n` times at once. */
function times<T>(n: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => fn(i)));
}

describe.skipIf(unavailable !== undefined)('through PgBouncer in transaction mode', () => {
  it('really shares server connections between clients', async () => {
    // The premise of every other test here: 16 callers, 3 server connections.
    const pids = await times(
      16,
      async () => (await pool.query('SELECT pg_backend_pid() AS p')).rows[0].p,
    );
    expect(new Set(pids).size).toBeLessThanOrEqual(3);
  });

  it('KvStore: get, set, checkAndSet, ttl, update and batches', async () => {
    const kv = new KvStore(pool);
    await times(24, (i) => kv.set(`k${i}`, `v${i}`));
    expect(await times(24, (i) => kv.get(`k${i}`))).toEqual(
      Array.from({ length: 24 }, (_, i) => `v${i}`),
    );
    const cas = await times(12, () => kv.checkAndSet('cas', undefined, 'first'));
    expect(cas.filter(Boolean)).toHaveLength(1);
    expect(await kv.checkAndSet('cas', 'first', 'second')).toBe(true);
    expect(await kv.checkAndSet('cas', 'first', 'third')).toBe(false);
    await kv.set('short', 'x', { ttlMs: 1 });
    await waitFor(async () => (await kv.get('short')) === undefined);
    await times(20, () => kv.update('counter', (v) => String(Number(v ?? 0) + 1)));
    expect(await kv.get('counter')).toBe('20');
    await kv.setMany([
      { key: 'm1', value: 'a' },
      { key: 'm2', value: 'b' },
    ]);
    expect(await kv.getMany(['m1', 'm2'])).toEqual(
      new Map([
        ['m1', 'a'],
        ['m2', 'b'],
      ]),
    );
    await kv.setJson('json', { a: [1, 2] });
    expect(await kv.getJson('json')).toEqual({ a: [1, 2] });
    expect(await kv.deleteMany(['m1', 'm2'])).toBe(2);
  });

  it('RateLimiter: exact under concurrency, single- and multi-quota', async () => {
    // Small batches, many in flight: statements spread over every client of the pool.
    const spread = { maxBatch: 2, maxInFlight: 8 };
    const one = new RateLimiter(pool, { ...spread, name: 'one', limit: 10, periodMs: 60_000 });
    const single = await times(40, () => one.consume('user'));
    expect(single.filter((d) => d.allowed)).toHaveLength(10);
    const two = new RateLimiter(pool, {
      ...spread,
      name: 'two',
      algorithm: 'token-bucket',
      quotas: [
        { limit: 5, periodMs: 60_000 },
        { limit: 100, periodMs: 3_600_000 },
      ],
    });
    const multi = await times(40, (i) => two.consume(`u${i % 2}`));
    expect(multi.filter((d) => d.allowed)).toHaveLength(10);
    expect((await two.peek('u0')).remaining).toBe(0);
  });

  it('AttemptList: insert, import (COPY), claim, completeAndClaim, fail', async () => {
    const list = new AttemptList(pool);
    expect(await list.insertBatch('jobs', ['a', 'b', 'c'])).toBe(3);
    const imported = await list.import('jobs', [
      'c',
      ...Array.from({ length: 97 }, (_, i) => `i${i}`),
    ]);
    expect(imported).toEqual({ read: 98, inserted: 97 });
    // Four workers drain the list, failing every item once (retried at once).
    const seen = new Map<string, number>();
    await times(4, async () => {
      let held = await list.claim('jobs', { limit: 7, leaseMs: 60_000 });
      while (held.length > 0) {
        const retry = held.filter((c) => c.attempts === 0);
        const done = held.filter((c) => c.attempts > 0);
        for (const c of held) seen.set(c.item, (seen.get(c.item) ?? 0) + 1);
        expect((await list.fail('jobs', retry, { retryDelayMs: 0 })).count).toBe(retry.length);
        const r = await list.completeAndClaim('jobs', done, { limit: 7, leaseMs: 60_000 });
        expect(r.count).toBe(done.length);
        held = r.claims;
      }
    });
    expect(seen.size).toBe(100);
    expect([...seen.values()].every((n) => n === 2)).toBe(true);
    expect(await list.count('jobs')).toBe(0);
  });

  it('LeaseManager and LeaderElection', async () => {
    const a = new LeaseManager(pool, { owner: 'a' });
    const b = new LeaseManager(pool, { owner: 'b' });
    const la = await a.acquire('job', { ttlMs: 60_000 });
    expect(la).toBeDefined();
    expect(await b.acquire('job')).toBeUndefined();
    await a.renew(la!);
    await a.release(la!);
    const lb = await b.acquire('job');
    expect(lb!.token).toBeGreaterThan(la!.token);
    await b.release(lb!);

    const opts = { name: 'leader', ttlMs: 5_000, intervalMs: 50 };
    const e1 = new LeaderElection(pool, { ...opts, owner: 'e1' });
    const e2 = new LeaderElection(pool, { ...opts, owner: 'e2' });
    const first = Promise.race([nextEvent<Lease>(e1, 'elected'), nextEvent<Lease>(e2, 'elected')]);
    e1.start();
    e2.start();
    const leader = (await first).owner === 'e1' ? e1 : e2;
    const follower = leader === e1 ? e2 : e1;
    const takeover = nextEvent<Lease>(follower, 'elected');
    await leader.stop();
    expect((await takeover).owner).toBe(follower === e1 ? 'e1' : 'e2');
    await follower.stop();
  });

  it('withTransaction: one server connection for the whole transaction; rollback undoes', async () => {
    await pool.query('CREATE TABLE tx_probe (id int PRIMARY KEY)');
    const pids = await withTransaction(pool, async (tx) => {
      const p1 = (await tx.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;
      await tx.query('INSERT INTO tx_probe VALUES (1)');
      // Other clients' statements in between cannot take this transaction's server connection.
      await times(6, () => pool.query('SELECT 1'));
      const p2 = (await tx.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;
      return [p1, p2];
    });
    expect(pids[0]).toBe(pids[1]);
    await expect(
      withTransaction(pool, async (tx) => {
        await tx.query('INSERT INTO tx_probe VALUES (2)');
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    const { rows } = await pool.query('SELECT id FROM tx_probe ORDER BY id');
    expect(rows).toEqual([{ id: 1 }]);
  });

  it('notify() through the pooler reaches a Listener on the server', async () => {
    const listener = new Listener({ connectionString: db.url });
    const got: string[] = [];
    listener.handle('pooled', (payload) => void got.push(payload));
    await listener.start();
    try {
      await times(5, (i) => notify(pool, 'pooled', { i }));
      await waitFor(() => got.length === 5);
      expect(got.map((p) => (JSON.parse(p) as { i: number }).i).sort()).toEqual([0, 1, 2, 3, 4]);
    } finally {
      await listener.stop();
    }
  });

  it('ChangeCapture and a ChangeConsumer', async () => {
    await pool.query('CREATE TABLE orders (id int PRIMARY KEY, total int)');
    await new ChangeCapture(pool).track('orders');
    const applied: number[] = [];
    const consumer = new ChangeConsumer(pool, {
      group: 'pooled',
      startFrom: 'beginning',
      pollIntervalMs: 20,
      fullPollIntervalMs: 200,
      pruneIntervalMs: 0,
      handler: async (changes, tx) => {
        await tx.query('SELECT 1');
        for (const c of changes) applied.push((c.new as { id: number }).id);
      },
    });
    consumer.on('error', () => undefined);
    await consumer.start();
    try {
      await times(10, (i) => pool.query('INSERT INTO orders VALUES ($1, $2)', [i, i * 10]));
      await waitFor(() => applied.length === 10);
      expect([...applied].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    } finally {
      await consumer.stop();
    }
  });

  it('Listener: refuses to start with a clear UnsupportedError', async () => {
    const listener = new Listener({ connectionString: bouncer!.url(db.name) });
    listener.on('error', () => undefined);
    listener.handle('anything', () => undefined);
    const err = await listener.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UnsupportedError);
    expect((err as Error).message).toMatch(/transaction.*pool/i);
    expect(listener.listening).toBe(false);
    await listener.stop();
  });
});

describe.skipIf(unavailable !== undefined)('through PgBouncer in session mode', () => {
  it('the Listener works (a pooler is not refused, only transaction pooling)', async () => {
    const session = await startPgBouncer({ poolMode: 'session', poolSize: 3 });
    const listener = new Listener({ connectionString: session.url(db.name) });
    try {
      const got: string[] = [];
      listener.handle('session', (payload) => void got.push(payload));
      await listener.start();
      await notify(pool, 'session', 'through the session pooler');
      await waitFor(() => got.length === 1);
      expect(got).toEqual(['through the session pooler']);
    } finally {
      await listener.stop();
      await session.stop();
    }
  });
});
