// The Listener on a ClusterPool: dialing through connectPrimaryClient, it follows the primary
// through a failover by itself (issue 6: "the listener can take a ClusterPool").
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterPool, Listener, withTransaction } from '../../src/index.js';
import { pgCtlAsync, startCluster, type TestCluster } from '../helpers/cluster.js';
import { waitFor } from '../helpers/wait-for.js';

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster({ standbys: 1 });
  await cluster.query(cluster.primary, 'CREATE TABLE events (id serial PRIMARY KEY, body text)');
  await cluster.waitForReplication();
}, 120_000);

afterAll(() => cluster?.destroy());

describe('Listener on a ClusterPool', () => {
  it('follows the primary through a failover and misses nothing with a backlog', async () => {
    const pool = new ClusterPool({
      connectionString: cluster.url(),
      refreshIntervalMs: 500,
      failoverTimeoutMs: 60_000,
    });
    pool.on('error', () => undefined);
    const listener = new Listener({
      connect: () => pool.connectPrimaryClient(),
      reconnectDelayMs: 50,
      maxReconnectDelayMs: 500,
      healthCheckIntervalMs: 500,
    });
    const seen = new Set<string>();
    let cursor = 0;
    // Notifications are wake-ups: handler and backlog both read the table from a cursor, so
    // nothing written while the listener was away is lost. The backlog runs after every
    // (re)connect, on whichever server is primary then.
    const readNew = async () => {
      const { rows } = await pool.query<{ id: number; body: string }>(
        'SELECT id, body FROM events WHERE id > $1 ORDER BY id',
        [cursor],
      );
      for (const r of rows) {
        seen.add(r.body);
        cursor = Math.max(cursor, r.id);
      }
    };
    listener.handle('events', readNew, { backlog: readNew });
    const emit = (body: string, notify = true) =>
      withTransaction(pool, async (tx) => {
        await tx.query('INSERT INTO events (body) VALUES ($1)', [body]);
        if (notify) await tx.query('SELECT pg_notify($1, $2)', ['events', body]);
      });
    let reconnects = 0;
    listener.on('reconnect', () => reconnects++);
    try {
      await listener.start();
      await emit('before');
      await waitFor(() => seen.has('before'), { timeoutMs: 10_000 });

      await pgCtlAsync(cluster.primary, 'stop', 'fast');
      // Written with no NOTIFY while the old primary is gone: only a backlog can find it.
      const gap = emit('during failover', false);
      const [standby] = cluster.standbys as [TestCluster['primary']];
      await pgCtlAsync(standby, 'promote');
      await gap;
      await emit('after');
      await waitFor(() => seen.has('after') && seen.has('during failover'), {
        timeoutMs: 60_000,
        message: 'notifications from the new primary',
      });
      // 'after' was announced by a NOTIFY on the new primary, and NOTIFY reaches only listeners
      // of the same server: the listener moved there by itself.
      expect(reconnects).toBeGreaterThan(0);
      expect([...seen]).toEqual(['before', 'during failover', 'after']);
    } finally {
      await listener.stop();
      await pool.end();
    }
  }, 180_000);
});
