// A real replicated cluster on loopback for the cluster pool's tests and benchmark: one primary
// and streaming standbys (pg_basebackup -R), each a private instance on a free port, run as the
// postgres OS user and destroyed after.
import { execFile } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { asPostgres, bindir, startInstance, type PgInstance } from './pg-instance.js';
import { waitFor } from './wait-for.js';

export interface TestCluster {
  primary: PgInstance;
  standbys: PgInstance[];
  /** Every instance, primary first. */
  all: PgInstance[];
  /** `host:port` of an instance, as the cluster pool keys it. */
  key(inst: PgInstance): string;
  /** A libpq multi-host URL over every instance for `database`. */
  url(database?: string, params?: string): string;
  /** Runs one statement on one instance with a short-lived client. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    inst: PgInstance,
    sql: string,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>>;
  /** Waits until every running standby has replayed the primary's current WAL. */
  waitForReplication(primary?: PgInstance, timeoutMs?: number): Promise<void>;
  destroy(): void;
}

/** Starts a primary and `standbys` streaming standbys (default 2). */
export async function startCluster(
  options: { standbys?: number; settings?: Record<string, string | number> } = {},
): Promise<TestCluster> {
  const primary = await startInstance({ settings: options.settings });
  const standbys: PgInstance[] = [];
  try {
    for (let i = 0; i < (options.standbys ?? 2); i++) {
      standbys.push(await startInstance({ standbyOf: primary, settings: options.settings }));
    }
  } catch (err) {
    for (const s of standbys) s.destroy();
    primary.destroy();
    throw err;
  }
  const all = [primary, ...standbys];
  const cluster: TestCluster = {
    primary,
    standbys,
    all,
    key: (inst) => `127.0.0.1:${inst.port}`,
    url: (database = 'postgres', params = '') =>
      `postgres://postgres@${all.map((i) => `127.0.0.1:${i.port}`).join(',')}/${database}${params ? '?' + params : ''}`,
    async query(inst, sql, values) {
      const c = new pg.Client({ connectionString: inst.url() });
      await c.connect();
      try {
        return await c.query(sql, values);
      } finally {
        await c.end();
      }
    },
    async waitForReplication(p = primary, timeoutMs = 20_000) {
      // The insert position: with synchronous_commit off the last commit may not be written yet.
      const lsn = (
        await cluster.query<{ lsn: string }>(p, 'SELECT pg_current_wal_insert_lsn()::text AS lsn')
      ).rows[0]!.lsn;
      for (const s of all) {
        if (s === p || !s.running()) continue;
        await waitFor(
          async () => {
            const r = await cluster.query<{ ok: boolean }>(
              s,
              'SELECT pg_is_in_recovery() AND pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok',
              [lsn],
            );
            return r.rows[0]!.ok;
          },
          { timeoutMs, message: `standby ${s.port} to replay ${lsn}` },
        );
      }
    },
    destroy() {
      for (const i of all) i.destroy();
    },
  };
  return cluster;
}

/**
 * Runs `pg_ctl <action>` on an instance without blocking this process (the helper's own stop()
 * and promote() are synchronous, which would freeze a pool under test while they run).
 * Resolves with how long it took, in milliseconds.
 */
export function pgCtlAsync(
  inst: PgInstance,
  action: 'stop' | 'promote',
  mode: 'fast' | 'immediate' = 'fast',
): Promise<number> {
  const args =
    action === 'stop'
      ? ['stop', '-D', inst.dataDir, '-m', mode, '-w', '-t', '60']
      : ['promote', '-D', inst.dataDir, '-w', '-t', '60'];
  const [cmd, argv] = asPostgres(path.join(bindir, 'pg_ctl'), args);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, (err, _stdout, stderr) => {
      if (err) reject(new Error(`pg_ctl ${action} failed: ${stderr || err.message}`));
      else resolve(performance.now() - started);
    });
  });
}
