import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClosedError, ClusterPool, patroniSource } from '../../src/index.js';
import {
  patroniUnavailable,
  startPatroniCluster,
  type PatroniCluster,
} from '../helpers/patroni-cluster.js';
import { nextEvent, waitFor } from '../helpers/wait-for.js';

// A real three-node Patroni cluster (etcd + 3 Patroni processes, each with its PostgreSQL) on
// loopback: the pool discovers it through the REST API and follows a switchover.
const unavailable = patroniUnavailable();
let patroni: PatroniCluster | undefined;
let pool: ClusterPool | undefined;

beforeAll(async () => {
  if (unavailable) {
    console.warn(`Patroni test skipped: ${unavailable}`);
    return;
  }
  patroni = await startPatroniCluster();
}, 180_000);

afterAll(async () => {
  await pool?.end();
  await patroni?.destroy();
}, 60_000);

describe('ClusterPool on a Patroni cluster', () => {
  // Run alone by `npm run test:patroni` (see vitest.config.ts). Once, early on and under full
  // load, the three writers hung after the failover event (3 connections in use, no write for
  // 60 s); not reproduced in 115 runs since. If it recurs, the failure prints a full account.
  it(
    'discovers it through the REST API and survives a switchover',
    { timeout: 240_000 },
    async (ctx) => {
      if (unavailable || !patroni) {
        ctx.skip(`Patroni cannot run here: ${unavailable}`);
        return;
      }
      const key = (name: string) => `127.0.0.1:${patroni!.pgPorts[patroni!.names.indexOf(name)]}`;
      pool = new ClusterPool({
        hosts: patroni.pgPorts.map((port) => ({ host: '127.0.0.1', port })),
        connection: { user: 'postgres', database: 'postgres' },
        source: patroniSource({ urls: patroni.restUrls }),
        refreshIntervalMs: 300,
        // Below the 60 s this test waits for a write on the new leader: a writer held by the
        // pool's own wait ends with a TimeoutError (in `failed`), told apart from a statement
        // the server never answers.
        failoverTimeoutMs: 30_000,
      });
      // What the pool did and what each writer waits on, printed if no write reaches the leader.
      const events: string[] = [];
      const note = (what: string) => events.push(`${new Date().toISOString()} ${what}`);
      pool.on('failover', (i) => note(`failover ${i.from} -> ${i.to}`));
      pool.on('instance:down', (i) => note(`down ${i.instance} ${String(i.err ?? '')}`));
      pool.on('instance:up', (i) => note(`up ${i.instance}`));
      pool.on('topology:error', (e) => note(`topology error ${String(e)}`));
      pool.on('topology', (views, change) => {
        if (change.changed.length + change.added.length + change.removed.length === 0) return;
        note(`topology ${views.map((v) => `${v.port}:${v.role}/${v.health}/${v.labels.state}`)}`);
      });
      const checkedOut = new Map<pg.PoolClient, string>();
      pool.on('acquire', (c) => checkedOut.set(c, new Date().toISOString()));
      pool.on('release', (_err, c) => checkedOut.delete(c));
      // Members may still be catching up right after start: wait for a settled view.
      const view = await waitFor(
        async () => {
          const v = await pool!.refresh();
          const settled =
            v.length === 3 &&
            v.every((x) => x.health === 'up') &&
            v.filter((x) => x.role === 'primary').length === 1 &&
            v.every((x) => x.role === 'primary' || typeof x.lagBytes === 'number');
          return settled ? v : undefined;
        },
        { timeoutMs: 60_000, message: 'a settled Patroni topology' },
      );
      const leader = await patroni.leader();
      expect(view.map((v) => [v.key, v.role, v.health]).sort()).toEqual(
        patroni.names.map((n) => [key(n), n === leader ? 'primary' : 'standby', 'up']).sort(),
      );
      expect(view.find((v) => v.key === key(leader))!.labels.name).toBe(leader);
      await pool.query('CREATE TABLE IF NOT EXISTS sw (id int PRIMARY KEY)');
      const port = async (q: { query: ClusterPool['query'] }) =>
        (await q.query<{ port: number }>('SELECT inet_server_port() AS port')).rows[0]!.port;
      expect(`127.0.0.1:${await port(pool)}`).toBe(key(leader));
      expect(`127.0.0.1:${await port(pool.reader)}`).not.toBe(key(leader));

      const candidate = patroni.names.find((n) => n !== leader)!;
      const failover = nextEvent<{ from: string; to: string }>(pool, 'failover', 120_000);
      const ok: Array<{ id: number; port: number }> = [];
      const failed: unknown[] = [];
      let running = true;
      let nextId = 1;
      const current: string[] = [];
      const writers = Array.from({ length: 3 }, async (_, w) => {
        while (running) {
          const id = nextId++;
          current[w] = `id ${id} sent ${new Date().toISOString()}`;
          try {
            const { rows } = await pool!.query<{ port: number }>(
              'INSERT INTO sw VALUES ($1) RETURNING inet_server_port() AS port',
              [id],
            );
            ok.push({ id, port: rows[0]!.port });
          } catch (err) {
            failed.push(err);
            if (err instanceof ClosedError) break; // the file is being torn down
          }
        }
      });
      try {
        await waitFor(() => ok.length >= 10, { timeoutMs: 10_000 });
        await patroni.switchover(candidate);
        expect(await failover).toEqual({ from: key(leader), to: key(candidate) });
        await waitFor(() => ok.some((w) => `127.0.0.1:${w.port}` === key(candidate)), {
          timeoutMs: 60_000,
          message: 'a write on the new leader',
        }).catch(async (err: unknown) => {
          // Say what the pool and Patroni saw, for whoever has to read this failure.
          console.error('pool topology', JSON.stringify(pool!.topology()));
          console.error('patroni members', JSON.stringify(await patroni!.members().catch(String)));
          console.error('writes ok', ok.length, 'failed', failed.map(String).slice(-5));
          console.error('pool events', events.join('\n'));
          console.error('writers on', JSON.stringify(current));
          for (const [c, at] of checkedOut) {
            const x = c as unknown as { port: number; processID: number | null };
            console.error(`checked out since ${at}: port ${x.port} backend pid ${x.processID}`);
          }
          // What the stuck statements wait on, as each member sees them.
          for (const p of patroni!.pgPorts) {
            const probe = new pg.Client({
              host: '127.0.0.1',
              port: p,
              user: 'postgres',
              database: 'postgres',
              connectionTimeoutMillis: 5_000,
              query_timeout: 5_000,
            });
            try {
              await probe.connect();
              const { rows } = await probe.query(
                `SELECT pid, state, wait_event_type, wait_event, left(query, 80) AS query,
                        pg_is_in_recovery() AS in_recovery
                   FROM pg_stat_activity WHERE backend_type = 'client backend'`,
              );
              console.error(`activity on ${p}`, JSON.stringify(rows));
            } catch (probeErr) {
              console.error(`probe of ${p} failed`, String(probeErr));
            } finally {
              await probe.end().catch(() => undefined);
            }
          }
          throw err;
        });
      } finally {
        running = false;
        await Promise.all(writers);
      }
      // Every write reported successful is on the new leader; failures are connection errors only.
      const check = await pool.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM sw WHERE id = ANY($1::int[])',
        [ok.map((w) => w.id)],
      );
      expect(check.rows[0]!.n).toBe(ok.length);
      for (const f of failed) expect((f as { code?: string }).code).toBe('PGCOORD_CONNECTION');
      expect(`127.0.0.1:${await port(pool)}`).toBe(key(candidate));
      // The old leader comes back as a standby and takes reads again.
      await waitFor(
        () =>
          pool!.topology().find((v) => v.key === key(leader))?.role === 'standby' &&
          pool!.topology().find((v) => v.key === key(leader))?.health === 'up',
        { timeoutMs: 60_000, message: 'the old leader to rejoin as a standby' },
      );
      const client = await pool.connectPrimaryClient();
      try {
        expect(`127.0.0.1:${await port(client as unknown as ClusterPool)}`).toBe(key(candidate));
      } finally {
        await client.end();
      }
    },
  );
});
