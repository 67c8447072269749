import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterPool, ConnectionError, type DiscoveredInstance } from '../../src/index.js';
import { startInstance, type PgInstance } from '../helpers/pg-instance.js';
import { nextEvent, waitFor } from '../helpers/wait-for.js';

// Two private servers, both writable; a topology source of the test's own says which one is the
// primary. Moving that role models what Patroni reports in a switchover, while the old primary
// still holds a statement it never answers (a frozen or unreachable host looks the same from the
// pool's side: an open socket and no reply).
let a: PgInstance;
let b: PgInstance;

async function sql<R extends pg.QueryResultRow>(
  inst: PgInstance,
  text: string,
  values?: unknown[],
): Promise<R[]> {
  const c = new pg.Client({ connectionString: inst.url() });
  await c.connect();
  try {
    return (await c.query<R>(text, values)).rows;
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  [a, b] = await Promise.all([startInstance(), startInstance()]);
  for (const inst of [a, b]) await sql(inst, 'CREATE TABLE t (port int)');
}, 120_000);

afterAll(() => {
  a?.destroy();
  b?.destroy();
});

/** A pool over `a` and `b` whose source calls `roles.primary` the primary and the other a standby. */
function demotablePool(app: string, roles: { primary: PgInstance }): ClusterPool {
  return new ClusterPool({
    hosts: [a, b].map((i) => ({ host: '127.0.0.1', port: i.port })),
    connection: { user: 'postgres', database: 'postgres', application_name: app },
    // Topology changes only when the test calls refresh().
    refreshIntervalMs: 600_000,
    failoverTimeoutMs: 10_000,
    source: async (): Promise<DiscoveredInstance[]> =>
      [a, b].map((i) => ({
        host: '127.0.0.1',
        port: i.port,
        role: i === roles.primary ? 'primary' : 'standby',
      })),
  });
}

/**
 * Sends a write that sleeps on `a` only (sent again anywhere else, it returns at once with that
 * port), and resolves once it runs there. `settled()` is its outcome once known.
 */
async function writeStuckOnA(pool: ClusterPool, app: string) {
  let settled: { port: number | undefined; err: unknown } | undefined;
  void pool
    .query<{ port: number }>(
      `INSERT INTO t (port) SELECT inet_server_port()
         FROM pg_sleep(CASE WHEN inet_server_port() = $1 THEN 300 ELSE 0 END)
       RETURNING port`,
      [a.port],
    )
    .then(
      (r) => (settled = { port: r.rows[0]!.port, err: undefined }),
      (err: unknown) => (settled = { port: undefined, err }),
    );
  await waitFor(
    async () =>
      (
        await sql<{ n: number }>(
          a,
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE application_name = $1 AND state = 'active' AND query LIKE 'INSERT%'`,
          [app],
        )
      )[0]!.n === 1,
    { message: 'the write to run on the primary' },
  );
  return { settled: () => settled };
}

/** Ends the statements the pool left asleep on `a`, then the pool. */
async function cleanUp(pool: ClusterPool, app: string): Promise<void> {
  await sql(
    a,
    'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
    [app],
  );
  await pool.end();
}

describe('ClusterPool when the primary is demoted under a statement', () => {
  it('does not send a write again when its connection drops after its primary was demoted', async () => {
    const app = 'pgcoord_demoted_drop';
    const roles = { primary: a };
    const pool = demotablePool(app, roles);
    try {
      await pool.refresh();
      const write = await writeStuckOnA(pool, app);
      roles.primary = b;
      await pool.refresh();
      // The old primary's session ends: the write may have been applied there, or not.
      await sql(
        a,
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
        [app],
      );
      const outcome = await waitFor(write.settled, { message: 'the write to settle' });
      expect(outcome.port, 'the write was sent again after an unknown outcome').toBeUndefined();
      expect(outcome.err).toBeInstanceOf(ConnectionError);
      expect(await sql(b, 'SELECT * FROM t')).toEqual([]);
    } finally {
      await cleanUp(pool, app);
    }
  }, 60_000);

  it('fails a write the old primary never answers as soon as the topology moves the primary, and writes to the new one', async () => {
    const app = 'pgcoord_demoted_stuck';
    const roles = { primary: a };
    const pool = demotablePool(app, roles);
    try {
      await pool.refresh();
      const write = await writeStuckOnA(pool, app);
      const failover = nextEvent<{ from: string; to: string }>(pool, 'failover');
      roles.primary = b;
      await pool.refresh();
      expect(await failover).toEqual({ from: `127.0.0.1:${a.port}`, to: `127.0.0.1:${b.port}` });
      // Not after the 300 s `a` would take, nor after failoverTimeoutMs: now.
      const outcome = await waitFor(write.settled, {
        timeoutMs: 5_000,
        message: 'the write in flight on the demoted primary to settle',
      });
      expect(outcome.port, 'the write was sent again after an unknown outcome').toBeUndefined();
      expect(outcome.err).toBeInstanceOf(ConnectionError);
      expect(String((outcome.err as Error).message)).toMatch(/no longer the primary/);
      expect(await sql(b, 'SELECT * FROM t')).toEqual([]);
      await waitFor(() => pool.topology().find((v) => v.port === a.port)!.connections.total === 0, {
        message: "the former primary's connections to be gone",
      });
      const { rows } = await pool.query<{ port: number }>(
        'INSERT INTO t (port) VALUES (inet_server_port()) RETURNING port',
      );
      expect(rows[0]!.port).toBe(b.port);
    } finally {
      await cleanUp(pool, app);
      await sql(b, 'DELETE FROM t');
    }
  }, 60_000);
});
