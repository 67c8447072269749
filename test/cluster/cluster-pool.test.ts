import fc from 'fast-check';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ClosedError,
  ClusterPool,
  TimeoutError,
  type Balancer,
  type ClusterPoolOptions,
  type DiscoveredInstance,
  type StrategyName,
  type TargetSessionAttrs,
  TARGET_SESSION_ATTRS,
  ValidationError,
  withTransaction,
} from '../../src/index.js';
import { pgCtlAsync, startCluster, type TestCluster } from '../helpers/cluster.js';
import { readmeExample } from '../helpers/readme-example.js';
import { nextEvent, waitFor } from '../helpers/wait-for.js';

// A real primary and two streaming standbys on loopback, started once for the file. The failover
// test stops the primary for good, so it runs last.
let cluster: TestCluster;
const pools: ClusterPool[] = [];

function newPool(options: Partial<ClusterPoolOptions> = {}): ClusterPool {
  const pool = new ClusterPool({
    connectionString: cluster.url('postgres', 'application_name=pgcoord_cluster_test'),
    refreshIntervalMs: 200,
    maxConnectionsPerInstance: 4,
    ...options,
  });
  pools.push(pool);
  return pool;
}

async function portOf(
  q: { query: ClusterPool['query'] },
  sql = 'SELECT inet_server_port() AS port',
) {
  const { rows } = await q.query<{ port: number }>(sql);
  return rows[0]!.port;
}

function tally(ports: number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const p of ports) m.set(p, (m.get(p) ?? 0) + 1);
  return m;
}

beforeAll(async () => {
  cluster = await startCluster({ standbys: 2 });
  await cluster.query(cluster.primary, 'CREATE TABLE t (id int PRIMARY KEY, note text)');
  await cluster.waitForReplication();
}, 120_000);

afterAll(async () => {
  await Promise.all(pools.map((p) => p.end()));
  cluster?.destroy();
});

describe('ClusterPool on a primary and two standbys', () => {
  it('discovers roles and lag, sends writes to the primary and reads to standbys', async () => {
    const pool = newPool();
    const view = await pool.refresh();
    expect(view.map((v) => [v.key, v.role, v.health])).toEqual([
      [cluster.key(cluster.primary), 'primary', 'up'],
      [cluster.key(cluster.standbys[0]!), 'standby', 'up'],
      [cluster.key(cluster.standbys[1]!), 'standby', 'up'],
    ]);
    for (const v of view.slice(1)) expect(typeof v.lagBytes).toBe('number');
    expect(await portOf(pool)).toBe(cluster.primary.port);
    await pool.query('INSERT INTO t VALUES ($1, $2)', [1, 'first']);
    const readPort = await portOf(pool.reader);
    expect(cluster.standbys.map((s) => s.port)).toContain(readPort);

    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('INSERT INTO t VALUES ($1, $2)', [2, 'in a transaction']);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const { rows } = await cluster.query(cluster.primary, 'SELECT count(*)::int AS n FROM t');
    expect(rows[0]!.n).toBe(2);

    // Blocks take a Queryable and use withTransaction: both work on the cluster pool unchanged.
    await withTransaction(pool, async (tx) => {
      await tx.query('INSERT INTO t VALUES ($1, $2)', [3, 'withTransaction']);
    });
    await expect(
      withTransaction(pool, async (tx) => {
        await tx.query('INSERT INTO t VALUES ($1, $2)', [4, 'rolled back']);
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    const ids = await cluster.query(cluster.primary, 'SELECT id FROM t ORDER BY id');
    expect(ids.rows.map((r) => r.id)).toEqual([1, 2, 3]);

    const dedicated = await pool.connectPrimaryClient();
    try {
      expect(await portOf(dedicated as unknown as ClusterPool)).toBe(cluster.primary.port);
    } finally {
      await dedicated.end();
    }
  });

  it('starts once however many callers arrive together: one pool per instance', async () => {
    const pool = newPool();
    const ports = await Promise.all(Array.from({ length: 12 }, () => portOf(pool)));
    expect(new Set(ports)).toEqual(new Set([cluster.primary.port]));
    expect(pool.topology().map((v) => v.key)).toEqual(cluster.all.map((i) => cluster.key(i)));
    await pool.end();
  });

  it('spreads reads over the standbys with each strategy', async () => {
    const standbyPorts = cluster.standbys.map((s) => s.port);
    const highest: Balancer = {
      pick: (candidates) => [...candidates].sort((a, b) => b.port - a.port)[0],
    };
    const cases: Array<[string, StrategyName | Balancer]> = [
      ['round-robin', 'round-robin'],
      ['random', 'random'],
      ['least-busy', 'least-busy'],
      ['in-order', 'in-order'],
      ['user', highest],
    ];
    for (const [name, strategy] of cases) {
      const pool = newPool({ strategy });
      const ports: number[] = [];
      if (name === 'least-busy') {
        // Concurrent reads: the least busy standby takes each new one.
        const all = await Promise.all(
          Array.from({ length: 16 }, () =>
            portOf(pool.reader, 'SELECT inet_server_port() AS port, pg_sleep(0.05)'),
          ),
        );
        ports.push(...all);
      } else {
        for (let i = 0; i < 40; i++) ports.push(await portOf(pool.reader));
      }
      const counts = tally(ports);
      expect(
        [...counts.keys()].every((p) => standbyPorts.includes(p)),
        name,
      ).toBe(true);
      switch (name) {
        case 'round-robin':
          expect(counts.get(standbyPorts[0]!), name).toBe(20);
          expect(counts.get(standbyPorts[1]!), name).toBe(20);
          break;
        case 'random':
        case 'least-busy':
          expect(counts.size, name).toBe(2);
          break;
        case 'in-order':
          expect([...counts.keys()], name).toEqual([standbyPorts[0]]);
          break;
        case 'user':
          expect([...counts.keys()], name).toEqual([Math.max(...standbyPorts)]);
          break;
      }
      await pool.end();
    }
  });

  it('routes by every target_session_attrs value', async () => {
    const primary = cluster.primary.port;
    const standbys = cluster.standbys.map((s) => s.port);
    const expected: Record<TargetSessionAttrs, number[]> = {
      any: [primary, ...standbys],
      'read-write': [primary],
      primary: [primary],
      'read-only': standbys,
      standby: standbys,
      'prefer-standby': standbys,
    };
    for (const attrs of TARGET_SESSION_ATTRS) {
      const pool = newPool({
        connectionString: cluster.url('postgres', `target_session_attrs=${attrs}`),
      });
      const ports = new Set<number>();
      for (let i = 0; i < 12; i++) ports.add(await portOf(pool));
      expect([...ports].sort(), attrs).toEqual([...expected[attrs]].sort());
      await pool.end();
    }
  });

  it('keeps at most maxConnectionsPerInstance connections to an instance', async () => {
    const pool = newPool({
      connectionString: cluster.url('postgres', 'application_name=pgcoord_cap'),
      maxConnectionsPerInstance: 2,
      strategy: 'in-order',
    });
    let peak = 0;
    const sample = setInterval(() => {
      for (const v of pool.topology()) peak = Math.max(peak, v.connections.total);
    }, 5);
    try {
      const ports = await Promise.all(
        Array.from({ length: 12 }, () =>
          portOf(pool.reader, 'SELECT inet_server_port() AS port, pg_sleep(0.03)'),
        ),
      );
      expect(new Set(ports)).toEqual(new Set([cluster.standbys[0]!.port]));
    } finally {
      clearInterval(sample);
    }
    expect(peak).toBe(2);
    const { rows } = await cluster.query(
      cluster.standbys[0]!,
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pgcoord_cap'",
    );
    expect(rows[0]!.n).toBeLessThanOrEqual(2);
    await pool.end();
  });

  it('discards a connection that answered 25006 and never gives a read-only one to a writer', async () => {
    const pool = newPool({ failoverTimeoutMs: 20_000 });
    // (a) A checked-out connection that answered 25006 is destroyed on release, not reused.
    const client = await pool.connect();
    const pid = (client as unknown as { processID: number }).processID;
    await client.query('BEGIN READ ONLY');
    const err = await client.query('INSERT INTO t VALUES (100)').catch((e: unknown) => e);
    expect((err as { code?: string }).code, String(err)).toBe('25006');
    await client.query('ROLLBACK');
    const removed = nextEvent(pool, 'remove');
    client.release();
    await removed;
    const again = await pool.connect();
    expect((again as unknown as { processID: number }).processID).not.toBe(pid);
    again.release();

    // (a2) A session switched to read-only by its user is discarded on release too.
    const ro = await pool.connect();
    const roPid = (ro as unknown as { processID: number }).processID;
    await ro.query('SET default_transaction_read_only = on');
    const removedRo = nextEvent(pool, 'remove');
    ro.release();
    await removedRo;
    const { rows: after2 } = await pool.query<{ pid: number }>(
      'INSERT INTO t VALUES (103) RETURNING pg_backend_pid() AS pid',
    );
    expect(after2[0]!.pid).not.toBe(roPid);

    // (b) A read-only transaction of the caller's own fails at once, not after a failover wait:
    // the statement is sent once (one checkout), never again after waiting for the topology.
    let checkouts = 0;
    const counted = () => checkouts++;
    pool.on('acquire', counted);
    const refused = await pool
      .query('BEGIN READ ONLY; INSERT INTO t VALUES (101); COMMIT')
      .catch((e: unknown) => e);
    pool.off('acquire', counted);
    expect((refused as { sqlState?: string }).sqlState).toBe('25006');
    expect(checkouts).toBe(1);

    // (c) A source that calls a standby the primary: its connections report in_hot_standby and are
    // discarded; the write waits, then fails with a TimeoutError, and nothing is written anywhere.
    // The pool retries all along, but says so once: one warning, no topology event per retry.
    const warnings: string[] = [];
    let refreshes = 0;
    const liar = newPool({
      failoverTimeoutMs: 1_500,
      source: async (): Promise<DiscoveredInstance[]> => {
        refreshes++;
        return [{ host: '127.0.0.1', port: cluster.standbys[0]!.port, role: 'primary' }];
      },
      logger: (e) => {
        if (e.level === 'warn') warnings.push(e.message);
      },
    });
    await liar.refresh();
    let topologyEvents = 0;
    liar.on('topology', () => topologyEvents++);
    refreshes = 0;
    const before = await cluster.query(cluster.primary, 'SELECT count(*)::int AS n FROM t');
    const timedOut = await liar.query('INSERT INTO t VALUES (102)').catch((e: unknown) => e);
    expect(timedOut).toBeInstanceOf(TimeoutError);
    expect(refreshes).toBeGreaterThan(3);
    expect(warnings).toEqual(['instance refused a write; waiting for the topology']);
    expect(topologyEvents).toBe(0);
    const after = await cluster.query(cluster.primary, 'SELECT count(*)::int AS n FROM t');
    expect(after.rows[0]!.n).toBe(before.rows[0]!.n);
    expect(liar.topology()[0]!.connections.total).toBe(0);
    await liar.end();
  });

  it('skips a stopped standby and uses it again once restarted', async () => {
    const pool = newPool({ retryBackoffMs: 100, maxRetryBackoffMs: 400 });
    const [s0, s1] = cluster.standbys as [typeof cluster.primary, typeof cluster.primary];
    for (let i = 0; i < 4; i++) await portOf(pool.reader); // connections open on both
    const down = nextEvent<{ instance: string }>(pool, 'instance:down', 20_000);
    s1.stop('fast');
    try {
      const ports: number[] = [];
      for (let i = 0; i < 20; i++) ports.push(await portOf(pool.reader));
      expect((await down).instance).toBe(cluster.key(s1));
      expect(ports.slice(-10).every((p) => p === s0.port)).toBe(true);
      expect(pool.topology().find((v) => v.key === cluster.key(s1))!.health).not.toBe('up');
    } finally {
      const up = nextEvent<{ instance: string }>(pool, 'instance:up', 30_000);
      s1.start();
      expect((await up).instance).toBe(cluster.key(s1));
    }
    await waitFor(async () => (await portOf(pool.reader)) === s1.port, {
      timeoutMs: 15_000,
      message: 'reads to reach the restarted standby',
    });
    await pool.end();
  });

  it('skips a failed instance for a back-off and retries it after', async () => {
    const [s0, s1] = cluster.standbys as [typeof cluster.primary, typeof cluster.primary];
    // A source that does not probe: it keeps listing s1 as up, so only the back-off keeps
    // readers away from it, and only a retried checkout brings it back.
    const pool = new ClusterPool({
      hosts: [{ host: '127.0.0.1', port: cluster.primary.port }],
      connection: { user: 'postgres', database: 'postgres' },
      refreshIntervalMs: 100,
      retryBackoffMs: 150,
      maxRetryBackoffMs: 300,
      source: async () => [
        { host: '127.0.0.1', port: cluster.primary.port, role: 'primary' },
        { host: '127.0.0.1', port: s0.port, role: 'standby' },
        { host: '127.0.0.1', port: s1.port, role: 'standby' },
      ],
    });
    pools.push(pool);
    for (let i = 0; i < 4; i++) await portOf(pool.reader);
    const down = nextEvent<{ instance: string }>(pool, 'instance:down', 20_000);
    s1.stop('fast');
    // Readers keep going all along: every read succeeds, and they retry s1 after each back-off.
    const errors: unknown[] = [];
    const seen: number[] = [];
    let reading = true;
    const reads = (async () => {
      while (reading) {
        try {
          seen.push(await portOf(pool.reader));
        } catch (err) {
          errors.push(err);
          if (err instanceof ClosedError) break; // the file is being torn down
        }
      }
    })();
    try {
      expect((await down).instance).toBe(cluster.key(s1));
      await waitFor(() => pool.topology().find((v) => v.key === cluster.key(s1))!.failures >= 2, {
        timeoutMs: 10_000,
        intervalMs: 20,
        message: 'a retry of the stopped standby after its back-off',
      });
      const upAt = seen.length;
      expect(seen.slice(5).every((p) => p === s0.port)).toBe(true);
      const up = nextEvent<{ instance: string }>(pool, 'instance:up', 30_000);
      s1.start();
      expect((await up).instance).toBe(cluster.key(s1));
      await waitFor(() => seen.slice(upAt).includes(s1.port), { timeoutMs: 10_000 });
    } finally {
      reading = false;
      await reads;
      if (!s1.running()) s1.start();
    }
    expect(errors).toEqual([]);
    expect(pool.topology().find((v) => v.key === cluster.key(s1))!.health).toBe('up');
    await pool.end();
  });

  it('follows instances added and removed while queries run, closing removed pools', async () => {
    const [s0, s1] = cluster.standbys as [typeof cluster.primary, typeof cluster.primary];
    const listed = (insts: (typeof s0)[]) =>
      insts.map((i) => ({ host: '127.0.0.1', port: i.port }));
    let current = listed([cluster.primary, s0, s1]);
    const pool = new ClusterPool({
      hosts: listed([cluster.primary]),
      connection: { user: 'postgres', database: 'postgres', application_name: 'pgcoord_dyn' },
      refreshIntervalMs: 100,
      // User function: probe what the list says, through the pool's discovery connections.
      source: async (ctx) =>
        Promise.all(
          current.map(async (target) => {
            const { rows } = await ctx.queryInstance<{ r: boolean }>(
              target,
              'SELECT pg_is_in_recovery() AS r',
            );
            return { ...target, role: rows[0]!.r ? ('standby' as const) : ('primary' as const) };
          }),
        ),
    });
    pools.push(pool);
    await pool.refresh();
    const errors: unknown[] = [];
    const seen = new Set<number>();
    let running = true;
    let nextId = 1000;
    const loops = Array.from({ length: 4 }, async (_, n) => {
      while (running) {
        try {
          if (n === 0) await pool.query('INSERT INTO t VALUES ($1)', [nextId++]);
          else seen.add(await portOf(pool.reader));
        } catch (err) {
          errors.push(err);
          if (err instanceof ClosedError) break; // the file is being torn down
        }
      }
    });
    const countOn = async (inst: typeof s0) =>
      (
        await cluster.query<{ n: number }>(
          inst,
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pgcoord_dyn'",
        )
      ).rows[0]!.n;
    try {
      await waitFor(() => seen.has(s0.port) && seen.has(s1.port), { timeoutMs: 10_000 });
      current = listed([cluster.primary, s0]);
      const change = await waitFor(() => !pool.topology().some((v) => v.port === s1.port), {
        timeoutMs: 10_000,
        message: 's1 to leave the topology',
      });
      expect(change).toBe(true);
      await waitFor(async () => (await countOn(s1)) === 0, {
        timeoutMs: 10_000,
        message: 'the removed instance pool to close its connections',
      });
      seen.clear();
      await waitFor(() => seen.size > 0, { timeoutMs: 10_000 });
      seen.clear();
      await waitFor(() => seen.size > 5 || seen.has(s0.port), { timeoutMs: 10_000 });
      expect(seen.has(s1.port)).toBe(false);
      current = listed([cluster.primary, s0, s1]);
      await waitFor(() => seen.has(s1.port), { timeoutMs: 10_000, message: 's1 back in use' });
    } finally {
      running = false;
      await Promise.all(loops);
    }
    expect(errors).toEqual([]);
    await pool.end();
    expect(await countOn(s0)).toBe(0);
    await expect(pool.query('SELECT 1')).rejects.toBeInstanceOf(ClosedError);
  });

  it('runs the example of docs/cluster-pool.md', async () => {
    const example = readmeExample('cluster-pool');
    expect(example).toContain(
      "'postgres://app@db1:5432,db2:5432,db3:5432/app?application_name=api'",
    );
    await cluster.query(cluster.primary, 'CREATE TABLE orders (id int PRIMARY KEY, paid bool)');
    await cluster.waitForReplication();
    const runnable = example
      .replace(
        "from 'pgcoord'",
        `from '${path.join(import.meta.dirname, '../..', 'src', 'index.js')}'`,
      )
      .replace(
        "'postgres://app@db1:5432,db2:5432,db3:5432/app?application_name=api'",
        `'${cluster.url('postgres', 'application_name=api')}'`,
      );
    const dir = path.join(import.meta.dirname, '../..', '.tmp');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `readme-cluster-${process.pid}.ts`);
    fs.writeFileSync(file, `${runnable}\nexport {};\n`);
    try {
      await import(file);
    } finally {
      fs.rmSync(file, { force: true });
    }
    const { rows } = await cluster.query(cluster.primary, 'SELECT id, paid FROM orders');
    expect(rows).toEqual([{ id: 42, paid: true }]);
  });

  it('fails over: writes wait for the promoted standby and none is reported that is not on it', async () => {
    const pool = newPool({ refreshIntervalMs: 500, failoverTimeoutMs: 60_000 });
    await pool.refresh();
    const [s0] = cluster.standbys as [typeof cluster.primary];
    const failover = nextEvent<{ from: string; to: string }>(pool, 'failover', 120_000);
    // What had happened when each write was sent and when it completed, in order: `before` the
    // stop, `stopped` (pg_ctl stop returned), `down` (the pool saw the primary down), `promoted`
    // (promotion began). Phases, not clocks: the stop blocks this process, so completions of
    // writes sent before it may be handled after it.
    type Phase = 'before' | 'stopped' | 'down' | 'promoted';
    let phase: Phase = 'before';
    const ok: Array<{ id: number; port: number; sent: Phase; done: Phase }> = [];
    const failed: unknown[] = [];
    const pending = new Map<number, Phase>();
    let running = true;
    let nextId = 10_000;
    const writers = Array.from({ length: 4 }, async () => {
      while (running) {
        const id = nextId++;
        const sent = phase;
        pending.set(id, sent);
        try {
          const { rows } = await pool.query<{ port: number }>(
            'INSERT INTO t VALUES ($1) RETURNING inet_server_port() AS port',
            [id],
          );
          ok.push({ id, port: rows[0]!.port, sent, done: phase });
        } catch (err) {
          failed.push(err);
          if (err instanceof ClosedError) break; // the file is being torn down
        } finally {
          pending.delete(id);
        }
      }
    });
    let waitingId = 0;
    try {
      await waitFor(() => ok.length >= 20, { timeoutMs: 10_000 });
      // Stop and promote off the event loop, with a gap: writers meet a cluster with no primary.
      await pgCtlAsync(cluster.primary, 'stop', 'fast');
      phase = 'stopped';
      const primaryKey = cluster.key(cluster.primary);
      await waitFor(() => pool.topology().find((v) => v.key === primaryKey)?.health !== 'up', {
        timeoutMs: 20_000,
        message: 'the pool to see the primary down',
      });
      phase = 'down';
      // A write still pending now that the pool knows there is no primary (one sent after the
      // stop if there is one): it can only wait.
      waitingId = await waitFor(
        () => ([...pending].find(([, sent]) => sent !== 'before') ?? [...pending][0])?.[0] ?? 0,
        { timeoutMs: 20_000, message: 'a write waiting for a primary' },
      );
      phase = 'promoted';
      await pgCtlAsync(s0, 'promote');
      await waitFor(() => ok.some((w) => w.port === s0.port), {
        timeoutMs: 60_000,
        message: 'a write on the promoted standby',
      });
      expect(await failover).toEqual({ from: primaryKey, to: cluster.key(s0) });
    } finally {
      running = false;
      // Waiting writers finish only once there is a primary again.
      if (phase !== 'promoted') await pgCtlAsync(s0, 'promote').catch(() => undefined);
      await Promise.all(writers);
    }
    // Every write reported successful is on the new primary, those before the stop included.
    const ids = ok.map((w) => w.id);
    const { rows } = await cluster.query<{ n: number }>(
      s0,
      'SELECT count(*)::int AS n FROM t WHERE id = ANY($1::int[])',
      [ids],
    );
    expect(rows[0]!.n).toBe(ids.length);
    expect(ok.filter((w) => w.sent !== 'before').every((w) => w.port === s0.port)).toBe(true);
    // The write sent while there was no primary waited for the promotion, then landed there.
    const waited = ok.find((w) => w.id === waitingId);
    expect(waited).toMatchObject({ port: s0.port, done: 'promoted' });
    // No write sent after the stop completed before the promotion began.
    for (const w of ok.filter((x) => x.sent !== 'before')) {
      expect(w.done, `write ${w.id}`).toBe('promoted');
    }
    // Failures are connection errors from writes in flight at the stop, never anything else.
    for (const f of failed) expect((f as { code?: string }).code).toBe('PGCOORD_CONNECTION');

    const dedicated = await pool.connectPrimaryClient();
    try {
      const r = await dedicated.query<{ port: number }>('SELECT inet_server_port() AS port');
      expect(r.rows[0]!.port).toBe(s0.port);
    } finally {
      await dedicated.end();
    }
  }, 120_000);
});

describe('ClusterPool options', () => {
  it('throws only ValidationError for any bad option, before connecting', async () => {
    const junk = fc.oneof(
      fc.constant(undefined),
      fc.constant(null),
      fc.integer({ min: -5, max: 100_000 }),
      fc.double(),
      fc.string({ maxLength: 12 }),
      fc.boolean(),
      fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }),
      fc.object({ maxDepth: 1 }),
    );
    const keys = [
      'connectionString',
      'hosts',
      'connection',
      'source',
      'targetSessionAttrs',
      'readerSessionAttrs',
      'strategy',
      'maxConnectionsPerInstance',
      'refreshIntervalMs',
      'connectTimeoutMs',
      'failoverTimeoutMs',
      'retryBackoffMs',
      'maxRetryBackoffMs',
      'maxLagBytes',
      'idleTimeoutMs',
      'logger',
    ];
    const made: ClusterPool[] = [];
    fc.assert(
      fc.property(fc.constantFrom(...keys), junk, (key, value) => {
        try {
          made.push(new ClusterPool({ hosts: ['127.0.0.1:1'], [key]: value }));
        } catch (err) {
          expect(err).toBeInstanceOf(ValidationError);
        }
      }),
    );
    // Nothing connected: construction alone opens no connection.
    await Promise.all(made.map((p) => p.end()));
  });

  it('refuses bad options before connecting', () => {
    expect(() => new ClusterPool({})).toThrow(/connectionString, hosts, or a source/);
    expect(() => new ClusterPool({ hosts: ['h:0'] })).toThrow(/hosts\[0\]\.port/);
    expect(
      () => new ClusterPool({ hosts: ['h'], strategy: 'fastest' as unknown as StrategyName }),
    ).toThrow(/options\.strategy/);
    expect(() => new ClusterPool({ hosts: ['h'], refreshIntervalMs: 0 })).toThrow(
      /refreshIntervalMs/,
    );
    expect(
      () => new ClusterPool({ connectionString: 'postgres://h1,h2/db?target_session_attrs=rw' }),
    ).toThrow(/target_session_attrs/);
  });

  it('logs to a pino-style logger as (fields, message), and to a function as one entry', async () => {
    const failure = new Error('no topology today');
    const source = async (): Promise<DiscoveredInstance[]> => {
      throw failure;
    };
    const lines: Array<{ level: string; fields: object; message: string | undefined }> = [];
    const pinoStyle = new ClusterPool({
      hosts: ['127.0.0.1:1'],
      source,
      // No debug or info method: the levels it lacks are skipped.
      logger: { warn: (fields, message) => lines.push({ level: 'warn', fields, message }) },
    });
    expect(await pinoStyle.refresh()).toEqual([]);
    await pinoStyle.end();
    expect(lines).toEqual([
      { level: 'warn', fields: { err: failure }, message: 'topology source failed' },
    ]);

    const entries: unknown[] = [];
    const fnLogged = new ClusterPool({
      hosts: ['127.0.0.1:1'],
      source,
      logger: (entry) => entries.push(entry),
    });
    await fnLogged.refresh();
    await fnLogged.end();
    expect(entries).toEqual([{ level: 'warn', message: 'topology source failed', err: failure }]);
    await expect(fnLogged.refresh()).rejects.toBeInstanceOf(ClosedError);
    await expect(fnLogged.query('SELECT 1')).rejects.toBeInstanceOf(ClosedError);
    expect(() => new ClusterPool({ hosts: ['h'], logger: { warn: 1 } as never })).toThrow(
      /options\.logger\.warn/,
    );
  });

  it('never backs an instance off for longer than maxRetryBackoffMs', async () => {
    // Eight instances nobody listens on: each is tried, fails once, and is backed off. The cap
    // is the whole back-off (the doubled delay with jitter), not a base jitter may exceed.
    const ports = [1, 2, 3, 4, 5, 6, 7, 9];
    const capMs = 60_000;
    const pool = new ClusterPool({
      hosts: ['127.0.0.1:1'],
      source: async () =>
        ports.map((port) => ({ host: '127.0.0.1', port, role: 'primary' as const })),
      retryBackoffMs: capMs,
      maxRetryBackoffMs: capMs,
      failoverTimeoutMs: 2_000,
      connectTimeoutMs: 1_000,
    });
    try {
      const before = Date.now();
      await expect(pool.query('SELECT 1')).rejects.toBeInstanceOf(TimeoutError);
      const views = pool.topology();
      expect(views.map((v) => v.failures)).toEqual(ports.map(() => 1));
      for (const v of views) {
        expect(v.retryAtMs! - before).toBeGreaterThanOrEqual(capMs / 2);
        expect(v.retryAtMs! - before).toBeLessThanOrEqual(capMs + (Date.now() - before));
      }
    } finally {
      await pool.end();
    }
  });
});
