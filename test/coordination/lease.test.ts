import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ConflictError,
  LeaderElection,
  LeaseManager,
  StaleTokenError,
  ValidationError,
  type Lease,
} from '../../src/index.js';
import { useTestDatabase } from '../helpers/db.js';
import { noSql } from '../helpers/no-sql.js';
import { startInstance, type PgInstance } from '../helpers/pg-instance.js';
import { nextEvent, waitFor } from '../helpers/wait-for.js';

const db = useTestDatabase();
const here = path.dirname(fileURLToPath(import.meta.url));

/** Resolves once `signal` is aborted (at once if it already is: the abort may come first). */
function whenAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener('abort', () => resolve(), { once: true }),
  );
}

/** Makes a lease expire now on the server clock, as if its holder had stopped renewing. */
async function expire(name: string): Promise<void> {
  await db.pool.query(
    `UPDATE pgcoord.leases SET expires_at = clock_timestamp() - interval '1 millisecond' WHERE name = $1`,
    [name],
  );
}

describe('LeaseManager', () => {
  it('hands out strictly increasing tokens, one holder at a time', async () => {
    const a = new LeaseManager(db.pool, { owner: 'a' });
    const b = new LeaseManager(db.pool, { owner: 'b' });
    const l1 = (await a.acquire('job', { ttlMs: 60_000 }))!;
    expect(l1).toMatchObject({ name: 'job', owner: 'a', token: 1n });
    expect(await b.acquire('job')).toBeUndefined();
    expect(await a.acquire('job')).toBeUndefined(); // held, even by its own owner
    expect(await b.holder('job')).toMatchObject({ owner: 'a', token: 1n });
    await a.release(l1);
    expect(await b.holder('job')).toBeUndefined();
    const l2 = (await b.acquire('job'))!;
    expect(l2.token).toBe(2n);
    await expire('job');
    const l3 = (await a.acquire('job'))!;
    expect(l3.token).toBe(3n);
  });

  it('refuses a stale token: it can neither renew nor release', async () => {
    const a = new LeaseManager(db.pool, { owner: 'a' });
    const b = new LeaseManager(db.pool, { owner: 'b' });
    const old = (await a.acquire('stale', { ttlMs: 60_000 }))!;
    const renewed = await a.renew(old, { ttlMs: 60_000 });
    expect(renewed.expiresAt.getTime()).toBeGreaterThanOrEqual(old.expiresAt.getTime());
    await expire('stale');
    await expect(a.renew(old)).rejects.toBeInstanceOf(StaleTokenError); // expired, not taken
    const fresh = (await b.acquire('stale'))!;
    expect(fresh.token).toBeGreaterThan(old.token);
    await expect(a.renew(old)).rejects.toBeInstanceOf(StaleTokenError);
    await expect(a.release(old)).rejects.toBeInstanceOf(StaleTokenError);
    expect(await a.holder('stale')).toMatchObject({ owner: 'b', token: fresh.token });
    await b.release(fresh);
    await expect(b.release(fresh)).rejects.toBeInstanceOf(StaleTokenError);
  });

  it('hands the lease over once ttl has passed since its last renewal when the holder is SIGKILLed', async () => {
    const ttlMs = 1500;
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        path.join(here, '../fixtures/lease-holder.ts'),
        db.url,
        'fault',
        String(ttlMs),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('\n')) resolve(out.split('\n')[0]!);
        });
        child.once('exit', (code) => reject(new Error(`holder exited early (${code})`)));
      });
      const childToken = BigInt((JSON.parse(line) as { token: string }).token);
      const other = new LeaseManager(db.pool, { owner: 'survivor' });
      expect(await other.acquire('fault')).toBeUndefined();
      // Kill it once it has renewed the lease at least once, so what follows covers renewals.
      const expiry = async () =>
        (
          await db.pool.query<{ e: string }>(
            `SELECT expires_at::text AS e FROM pgcoord.leases WHERE name = 'fault'`,
          )
        ).rows[0]!.e;
      const acquiredExpiry = await expiry();
      await waitFor(async () => (await expiry()) !== acquiredExpiry, {
        message: 'the holder to renew its lease',
      });
      child.kill('SIGKILL');
      await exited;
      // The dead holder's lease as it last renewed it: that renewal came before the kill, so the
      // lease outlives its holder by at most ttl (server clock, no timing involved).
      const { rows } = await db.pool.query<{ left_ms: number }>(
        `SELECT extract(epoch FROM expires_at - clock_timestamp()) * 1000 AS left_ms
           FROM pgcoord.leases WHERE name = 'fault'`,
      );
      expect(Number(rows[0]!.left_ms)).toBeLessThanOrEqual(ttlMs);
      // Once the server's clock has passed that expiry, the very next acquire takes over.
      await waitFor(
        async () =>
          (
            await db.pool.query<{ past: boolean }>(
              `SELECT clock_timestamp() > expires_at AS past FROM pgcoord.leases WHERE name = 'fault'`,
            )
          ).rows[0]!.past,
        { timeoutMs: ttlMs + 10_000, message: "the dead holder's lease to expire" },
      );
      const lease = await other.acquire('fault', { ttlMs: 10_000 });
      expect(lease).toBeDefined();
      expect(lease!.token).toBeGreaterThan(childToken);
      await other.release(lease!);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    }
  });

  it('withLease renews while fn runs and releases after', async () => {
    const m = new LeaseManager(db.pool, { owner: 'w' });
    const tokenBefore = (
      await db.pool.query(
        `SELECT coalesce(max(token), 0) AS t FROM pgcoord.leases WHERE name = 'wl'`,
      )
    ).rows[0]!.t;
    const result = await m.withLease(
      'wl',
      async (signal, lease) => {
        const first = (await m.holder('wl'))!.expiresAt.getTime();
        // Wait for a renewal to move the expiry forward (renewIntervalMs 50; ttl 3 s leaves room for a loaded machine).
        await waitFor(async () => (await m.holder('wl'))!.expiresAt.getTime() > first, {
          timeoutMs: 5_000,
        });
        expect(signal.aborted).toBe(false);
        await expect(m.withLease('wl', () => 1)).rejects.toBeInstanceOf(ConflictError);
        return lease.token;
      },
      { ttlMs: 3_000, renewIntervalMs: 50 },
    );
    expect(result).toBeGreaterThan(BigInt(tokenBefore as string));
    expect(await m.holder('wl')).toBeUndefined();
  });

  it('withLease aborts fn when the lease is lost', async () => {
    const m = new LeaseManager(db.pool, { owner: 'loser' });
    const thief = new LeaseManager(db.pool, { owner: 'thief' });
    let stolen: Lease | undefined;
    const reason = await m.withLease(
      'lost',
      async (signal) => {
        await expire('lost');
        stolen = await thief.acquire('lost', { ttlMs: 60_000 });
        await whenAborted(signal);
        return signal.reason as Error;
      },
      { ttlMs: 2_000, renewIntervalMs: 30 },
    );
    expect(reason).toBeInstanceOf(StaleTokenError);
    expect(await thief.holder('lost')).toMatchObject({ owner: 'thief', token: stolen!.token });
  });

  const m = new LeaseManager(noSql);
  const fake: Lease = { name: 'x', owner: 'o', token: 1n, expiresAt: new Date() };
  it.each([
    ['empty name', () => m.acquire('')],
    ['NUL in name', () => m.acquire('a\u0000')],
    ['over-long name', () => m.acquire('n'.repeat(513))],
    ['ttl too short', () => m.acquire('x', { ttlMs: 10 })],
    ['negative ttl', () => m.acquire('x', { ttlMs: -1 })],
    ['empty owner', () => m.acquire('x', { owner: '' })],
    ['renew of a non-lease', () => m.renew({} as Lease)],
    ['release of a non-lease', () => m.release({ ...fake, token: 1 as unknown as bigint })],
    ['renew with a token past the bigint range', () => m.renew({ ...fake, token: 2n ** 63n })],
    ['release with token 0', () => m.release({ ...fake, token: 0n })],
    ['withLease with a non-function', () => m.withLease('x', 'f' as never)],
  ])('refuses %s with ValidationError', async (_label, call) => {
    const before = (await db.pool.query('SELECT count(*)::int AS n FROM pgcoord.leases')).rows[0]!
      .n;
    await expect(call()).rejects.toBeInstanceOf(ValidationError);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM pgcoord.leases')).rows[0]!.n).toBe(
      before,
    );
  });
});

describe('LeaderElection', () => {
  it('LeaderElection is a core Service (promise start, signals, await using); round failures reach a message-first or pino logger', async () => {
    const pool = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:1/x', max: 1 });
    pool.on('error', () => undefined);
    try {
      const lines: string[] = [];
      const legacy = new LeaderElection(pool, {
        name: 'svc',
        ttlMs: 1_000,
        intervalMs: 20,
        logger: {
          warn: (message: string, fields?: object) =>
            void lines.push(`${message} ${typeof fields}`),
        },
      });
      {
        await using scoped = legacy;
        const started: unknown = scoped.start();
        expect(started).toBeInstanceOf(Promise);
        await started;
        await scoped.signals.started.wait();
        await waitFor(() => lines.length > 0);
      }
      await legacy.signals.stopped.wait();
      expect(lines[0]).toMatch(/^pgcoord leader election round failed.* object$/);
      const json: Array<{ level: number; msg: string; code: string }> = [];
      const logger = pino(
        { level: 'warn' },
        { write: (line: string) => void json.push(JSON.parse(line)) },
      );
      const pinoBacked = new LeaderElection(pool, {
        name: 'svc',
        ttlMs: 1_000,
        intervalMs: 20,
        logger,
      });
      void pinoBacked.start(); // callable without awaiting
      await waitFor(() => json.length > 0);
      await pinoBacked.stop();
      expect(json[0]).toMatchObject({
        level: 40,
        msg: 'pgcoord leader election round failed',
        code: 'PGCOORD_CONNECTION',
      });
    } finally {
      await pool.end();
    }
  });

  it('elects one leader, hands over with a larger token, and stops cleanly', async () => {
    const a = new LeaderElection(db.pool, {
      name: 'leader',
      owner: 'a',
      ttlMs: 3_000,
      intervalMs: 50,
    });
    const b = new LeaderElection(db.pool, {
      name: 'leader',
      owner: 'b',
      ttlMs: 3_000,
      intervalMs: 50,
    });
    await b.stop(); // stop before start is fine
    const firstElected = Promise.race([
      nextEvent<Lease>(a, 'elected'),
      nextEvent<Lease>(b, 'elected'),
    ]);
    a.start();
    a.start();
    b.start();
    const first = await firstElected;
    const [leader, follower] = first.owner === 'a' ? [a, b] : [b, a];
    // Several rounds later, still exactly one leader.
    await waitFor(
      async () => (await new LeaseManager(db.pool).holder('leader'))!.expiresAt > first.expiresAt,
    );
    expect(leader.isLeader).toBe(true);
    expect(follower.isLeader).toBe(false);
    const resigned = nextEvent<{ reason: string }>(leader, 'resigned');
    const next = nextEvent<Lease>(follower, 'elected');
    await leader.stop();
    expect((await resigned).reason).toBe('stopped');
    const second = await next;
    expect(second.token).toBeGreaterThan(first.token);
    // The follower that lost its lease underneath resigns with 'lost'.
    const lost = nextEvent<{ reason: string }>(follower, 'resigned');
    await expire('leader');
    await new LeaseManager(db.pool, { owner: 'intruder' }).acquire('leader', { ttlMs: 60_000 });
    expect((await lost).reason).toBe('lost');
    await follower.stop();
    await leader.stop();
  });

  it('refuses bad options', () => {
    expect(() => new LeaderElection(db.pool, { name: '' })).toThrow(ValidationError);
    expect(() => new LeaderElection(db.pool, { name: 'x', ttlMs: 0 })).toThrow(ValidationError);
    expect(() => new LeaderElection(db.pool, { name: 'x', ttlMs: 1000, intervalMs: 5000 })).toThrow(
      ValidationError,
    );
  });
});

describe('when the database goes away', () => {
  const instances: PgInstance[] = [];
  afterAll(() => instances.forEach((i) => i.destroy()));

  /**
   * `pool` as a Queryable that counts the statements sent through it once `counting` is on, and
   * resolves `exceeded` when they pass `bound`: a test signal for "renewals went on for longer
   * than the lease could have lasted", without looking at a clock.
   */
  function countedPool(pool: pg.Pool, bound: number) {
    let resolveExceeded!: () => void;
    const counter = {
      counting: false,
      sent: 0,
      exceeded: new Promise<'kept renewing'>((r) => (resolveExceeded = () => r('kept renewing'))),
      queryable: {
        query: (text: string, values?: unknown[]) => {
          if (counter.counting && ++counter.sent > bound) resolveExceeded();
          return pool.query(text, values);
        },
        connect: () => pool.connect(),
      },
    };
    return counter;
  }

  it('withLease aborts fn and the leader resigns once the lease would have expired', async () => {
    const inst = await startInstance();
    instances.push(inst);
    const pool = new pg.Pool({
      connectionString: inst.url(),
      max: 4,
      connectionTimeoutMillis: 500,
    });
    pool.on('error', () => undefined);
    const ttlMs = 1_000;
    const intervalMs = 100;
    // Renewals are at least intervalMs apart (the last one may be sooner, at the deadline), and
    // the deadline is at most ttlMs after the stop: more statements than this after the stop
    // mean the lease was kept past its expiry.
    const bound = ttlMs / intervalMs + 2;
    try {
      const forLease = countedPool(pool, bound);
      const forElection = countedPool(pool, bound);
      const leases = new LeaseManager(forLease.queryable, { owner: 'cut-off' });
      const election = new LeaderElection(forElection.queryable, {
        name: 'cut',
        ttlMs,
        intervalMs,
      });
      election.on('error', () => undefined); // expected while the server is down
      const elected = nextEvent(election, 'elected');
      election.start();
      await elected;
      const resigned = nextEvent<{ reason: string }>(election, 'resigned', 30_000);
      const outcome = await leases.withLease(
        'held-while-down',
        async (signal) => {
          inst.stop('immediate');
          forLease.counting = forElection.counting = true;
          const first = await Promise.race([
            whenAborted(signal).then(() => 'aborted' as const),
            forLease.exceeded,
          ]);
          return { first, reason: signal.reason as unknown };
        },
        { ttlMs, renewIntervalMs: intervalMs },
      );
      // Aborted by the local deadline, before renewals went on longer than the lease could last.
      expect(outcome.first).toBe('aborted');
      expect(outcome.reason).toBeInstanceOf(StaleTokenError);
      expect(forLease.sent).toBeLessThanOrEqual(bound);
      // The leader likewise resigns as expired before its rounds outlast the lease.
      const first = await Promise.race([resigned, forElection.exceeded]);
      expect(first).toEqual({ lease: expect.anything(), reason: 'expired' });
      await election.stop();
    } finally {
      await pool.end();
    }
  });
});

describe('a lease granted after waiting for the row', () => {
  /**
   * Runs `call` on a client of its own and resolves once the server shows that client blocked
   * on a lock, with the server time seen then (after the blocked statement began).
   */
  async function blockedCall<T>(
    call: (client: pg.PoolClient) => Promise<T>,
  ): Promise<{ result: Promise<T>; seenAt: Date }> {
    const client = await db.pool.connect();
    const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!
      .pid;
    const result = call(client).finally(() => client.release());
    result.catch(() => undefined);
    const seenAt = await waitFor(async () => {
      const { rows } = await db.pool.query<{ at: Date }>(
        `SELECT clock_timestamp() AS at FROM pg_stat_activity
          WHERE pid = $1 AND wait_event_type = 'Lock'`,
        [pid],
      );
      return rows[0]?.at;
    });
    return { result, seenAt };
  }

  /** Waits until the server clock is past `at` + `ms`. */
  async function serverClockPast(at: Date, ms: number): Promise<void> {
    await waitFor(
      async () =>
        (
          await db.pool.query<{ past: boolean }>(
            `SELECT clock_timestamp() > $1::timestamptz + $2::int * interval '1 millisecond' AS past`,
            [at, ms],
          )
        ).rows[0]!.past,
      { intervalMs: 10 },
    );
  }

  /** Ends the blocker's transaction; returns the server time just before. */
  async function endBlocker(blocker: pg.PoolClient): Promise<Date> {
    const at = (await blocker.query<{ at: Date }>('SELECT clock_timestamp() AS at')).rows[0]!.at;
    await blocker.query('ROLLBACK');
    return at;
  }

  it('counts the ttl from the grant, not from the start of the statement (row locked by a failed acquire)', async () => {
    const a = new LeaseManager(db.pool, { owner: 'a' });
    const b = new LeaseManager(db.pool, { owner: 'b' });
    const held = (await a.acquire('granted-late', { ttlMs: 150 }))!;
    const x = await db.pool.connect();
    try {
      await x.query('BEGIN');
      // Fails (a holds it) but keeps the row locked until x ends.
      expect(
        await new LeaseManager(db.pool, { owner: 'x' }).acquire('granted-late', { tx: x }),
      ).toBeUndefined();
      const { result, seenAt } = await blockedCall((tx) =>
        b.acquire('granted-late', { ttlMs: 300, tx }),
      );
      await serverClockPast(seenAt, 300);
      const releasedAt = await endBlocker(x);
      const lease = await result;
      expect(lease).toMatchObject({ owner: 'b', token: held.token + 1n });
      expect(lease!.expiresAt.getTime()).toBeGreaterThanOrEqual(releasedAt.getTime() + 300);
      expect(await a.holder('granted-late')).toMatchObject({ owner: 'b', token: lease!.token });
      await b.renew(lease!);
      await b.release(lease!);
    } finally {
      x.release();
    }
  });

  it('counts the ttl from the grant when it waited for a first insert that rolled back', async () => {
    const b = new LeaseManager(db.pool, { owner: 'b' });
    const x = await db.pool.connect();
    try {
      await x.query('BEGIN');
      const first = await new LeaseManager(db.pool, { owner: 'x' }).acquire('granted-fresh', {
        tx: x,
      });
      expect(first?.token).toBe(1n);
      const { result, seenAt } = await blockedCall((tx) =>
        b.acquire('granted-fresh', { ttlMs: 300, tx }),
      );
      await serverClockPast(seenAt, 300);
      const releasedAt = await endBlocker(x);
      const lease = await result;
      expect(lease).toMatchObject({ owner: 'b', token: 1n });
      expect(lease!.expiresAt.getTime()).toBeGreaterThanOrEqual(releasedAt.getTime() + 300);
      expect(await b.holder('granted-fresh')).toMatchObject({ owner: 'b', token: 1n });
    } finally {
      x.release();
    }
  });

  it('renews from the moment it holds the row', async () => {
    const m = new LeaseManager(db.pool, { owner: 'r' });
    const lease = (await m.acquire('renew-wait', { ttlMs: 60_000 }))!;
    const x = await db.pool.connect();
    try {
      await x.query('BEGIN');
      await x.query(`SELECT 1 FROM pgcoord.leases WHERE name = 'renew-wait' FOR UPDATE`);
      const { result, seenAt } = await blockedCall((tx) => m.renew(lease, { ttlMs: 300, tx }));
      await serverClockPast(seenAt, 300);
      const releasedAt = await endBlocker(x);
      const renewed = await result;
      expect(renewed.expiresAt.getTime()).toBeGreaterThanOrEqual(releasedAt.getTime() + 300);
    } finally {
      x.release();
    }
  });

  it.each([
    ['renew', (m: LeaseManager, l: Lease, tx: pg.PoolClient) => m.renew(l, { tx })],
    ['release', (m: LeaseManager, l: Lease, tx: pg.PoolClient) => m.release(l, { tx })],
  ])('%s refuses a lease that expired while it waited for the row', async (op, call) => {
    const m = new LeaseManager(db.pool, { owner: 'r' });
    const name = `expired-while-waiting-${op}`;
    const lease = (await m.acquire(name, { ttlMs: 60_000 }))!;
    const expiresAt = (
      await db.pool.query<{ at: Date }>(
        `UPDATE pgcoord.leases SET expires_at = clock_timestamp() + interval '1 second'
          WHERE name = $1 RETURNING expires_at AS at`,
        [name],
      )
    ).rows[0]!.at;
    const x = await db.pool.connect();
    try {
      await x.query('BEGIN');
      await x.query(`SELECT 1 FROM pgcoord.leases WHERE name = $1 FOR UPDATE`, [name]);
      const { result, seenAt } = await blockedCall<unknown>((tx) => call(m, lease, tx));
      // It was live when the call began waiting...
      expect(seenAt.getTime()).toBeLessThan(expiresAt.getTime());
      // ...and had run out by the time the call got the row.
      await serverClockPast(expiresAt, 0);
      await endBlocker(x);
      await expect(result).rejects.toBeInstanceOf(StaleTokenError);
    } finally {
      x.release();
    }
  });
});

describe('withLease local deadline', () => {
  it('starts before the acquire request: a reply that arrives after the lease ran out never runs fn', async () => {
    // The reply to acquire is held back (a paused process, a slow network) until the lease has
    // expired on the server and another owner has taken it.
    let releaseReply!: () => void;
    const replyHeld = new Promise<void>((resolve) => (releaseReply = resolve));
    let held = false;
    const slow = {
      query: async (text: string, values?: unknown[]) => {
        const result = await db.pool.query(text, values);
        if (/lease_acquire|INSERT INTO .*leases/s.test(text)) {
          held = true;
          await replyHeld;
        }
        return result;
      },
      connect: () => db.pool.connect(),
    } as unknown as pg.Pool;
    const paused = new LeaseManager(slow, { owner: 'paused' });
    const thief = new LeaseManager(db.pool, { owner: 'thief' });
    let ran = false;
    const outcome = paused
      .withLease(
        'paused-reply',
        () => {
          ran = true;
        },
        { ttlMs: 100, renewIntervalMs: 30 },
      )
      .then(
        () => 'resolved',
        (err: unknown) => err,
      );
    await waitFor(() => held);
    const stolen = await waitFor(() => thief.acquire('paused-reply', { ttlMs: 60_000 }));
    releaseReply();
    expect(await outcome).toBeInstanceOf(StaleTokenError);
    expect(ran).toBe(false);
    expect(await thief.holder('paused-reply')).toMatchObject({
      owner: 'thief',
      token: stolen.token,
    });
  });
});

describe('renew and release act on name and token', () => {
  it('answer with the stored owner, never the one given', async () => {
    const m = new LeaseManager(db.pool, { owner: 'real' });
    const lease = (await m.acquire('owner-echo', { ttlMs: 60_000 }))!;
    const renewed = await m.renew({ ...lease, owner: 'mallory' });
    expect(renewed.owner).toBe('real');
    expect(renewed.token).toBe(lease.token);
    expect(await m.holder('owner-echo')).toMatchObject({ owner: 'real' });
    await m.release({ ...lease, owner: 'mallory' });
    expect(await m.holder('owner-echo')).toBeUndefined();
  });

  it.each([
    ['renew', (m: LeaseManager, l: Lease) => m.renew(l)],
    ['release', (m: LeaseManager, l: Lease) => m.release(l)],
  ])('%s refuses an owner acquire would refuse, before any SQL', async (_op, call) => {
    const m = new LeaseManager(db.pool, { owner: 'o' });
    const lease = (await m.acquire(`owner-limit`, { ttlMs: 60_000 }))!;
    try {
      for (const owner of ['x'.repeat(1024 * 1024), 'a\u0000', 42 as unknown as string]) {
        await expect(call(m, { ...lease, owner })).rejects.toBeInstanceOf(ValidationError);
      }
      expect(await m.holder('owner-limit')).toMatchObject({ token: lease.token });
    } finally {
      await m.release(lease);
    }
  });
});
