import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { Listener } from '../../src/listen/listener.js';
import { startInstance } from '../helpers/pg-instance.js';
import { nextEvent, waitFor } from '../helpers/wait-for.js';

// Faults that need a server of our own: a restart and a frozen backend. Never the shared 5432.
const listeners: Listener[] = [];

afterEach(async () => {
  await Promise.all(listeners.splice(0).map((l) => l.stop()));
});

describe('Listener on a private server', () => {
  it('detects a backend frozen with SIGSTOP (socket open, no answers) and moves to a new one', async () => {
    const inst = await startInstance();
    const app = `lt_frozen_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Pool({ connectionString: inst.url(), max: 2 });
    admin.on('error', () => undefined);
    let frozenPid: number | undefined;
    try {
      const listener = new Listener({
        connection: inst.url(),
        applicationName: app,
        reconnectDelayMs: 20,
        maxReconnectDelayMs: 200,
        healthCheckIntervalMs: 300,
        healthCheckTimeoutMs: 700,
      });
      listener.on('error', () => undefined);
      listeners.push(listener);
      const got: string[] = [];
      listener.handle('frozen', (p) => void got.push(p));
      await listener.start();
      const { rows } = await admin.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE application_name = $1`,
        [app],
      );
      frozenPid = rows[0]!.pid;
      const lost = nextEvent<{ error: Error | undefined }>(listener, 'disconnect', 10_000);
      process.kill(frozenPid, 'SIGSTOP');
      // The kernel still acknowledges a stopped process's socket: only the health query's
      // timeout can find it, and nothing else may have ended the connection first.
      const { error } = await lost;
      expect(error?.name).toBe('TimeoutError');
      await waitFor(() => listener.listening, { message: 'listening on a new backend' });
      // Moved on while the old backend is still frozen: a new backend, and it delivers.
      const { rows: now } = await admin.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE application_name = $1`,
        [app],
      );
      expect(now.map((r) => r.pid)).toContain(frozenPid);
      expect(now.filter((r) => r.pid !== frozenPid)).toHaveLength(1);
      await admin.query(`NOTIFY frozen, 'after'`);
      await waitFor(() => got.includes('after'));
      await listener.stop();
    } finally {
      if (frozenPid !== undefined) process.kill(frozenPid, 'SIGCONT');
      await admin.end();
      inst.destroy();
    }
  });

  it('comes back by itself after the server restarts, and the backlog covers the gap', async () => {
    const inst = await startInstance();
    const pool = new pg.Pool({ connectionString: inst.url(), max: 2 });
    pool.on('error', () => undefined);
    try {
      await pool.query(`CREATE TABLE jobs (id serial PRIMARY KEY)`);
      const handled = new Set<number>();
      let lastId = 0;
      const drain = async () => {
        const { rows } = await pool.query<{ id: number }>(
          `SELECT id FROM jobs WHERE id > $1 ORDER BY id`,
          [lastId],
        );
        for (const r of rows) {
          handled.add(r.id);
          lastId = r.id;
        }
      };
      const listener = new Listener({
        connection: inst.url(),
        reconnectDelayMs: 50,
        maxReconnectDelayMs: 500,
      });
      listener.on('error', () => undefined);
      listeners.push(listener);
      listener.handle('jobs', drain, { backlog: drain });
      await listener.start();
      const add = () => pool.query(`INSERT INTO jobs DEFAULT VALUES; NOTIFY jobs`);
      await add();
      await waitFor(() => handled.size === 1);

      const lost = nextEvent(listener, 'disconnect', 30_000);
      inst.stop('fast');
      await lost;
      inst.start();
      await add(); // may land before the listener is back: the backlog must find it
      await add();
      await waitFor(() => listener.listening, { timeoutMs: 30_000, message: 'listening again' });
      await add();
      await waitFor(() => handled.size === 4, { timeoutMs: 15_000, message: 'all 4 jobs' });
      await listener.stop();
    } finally {
      await pool.end();
      inst.destroy();
    }
  });
});
