// Cluster pool: what routing costs against a bare pg.Pool on one instance, and how long writes
// take to reach a promoted standby after the primary stops.
import pg from 'pg';
import { ClusterPool } from '../../src/index.js';
import { pgCtlAsync, startCluster } from '../../test/helpers/cluster.js';
import type { BenchResult, Scenario } from '../lib.js';

const CONCURRENCY = 16;

type Runner = (text: string, values?: unknown[]) => Promise<unknown>;

/**
 * Runs `CONCURRENCY` loops of `op` for `durationMs`: operations per second, and this process's
 * CPU time per operation in microseconds (what the pool itself costs, less sensitive to the
 * other load on this shared machine than throughput).
 */
async function measure(
  op: () => Promise<unknown>,
  durationMs: number,
): Promise<{ opsPerS: number; cpuUsPerOp: number }> {
  let count = 0;
  const cpu = process.cpuUsage();
  const start = performance.now();
  const end = start + durationMs;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) {
        await op();
        count++;
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  return {
    opsPerS: count / ((performance.now() - start) / 1000),
    cpuUsPerOp: (used.user + used.system) / count,
  };
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const scenario: Scenario = {
  name: 'pool',
  description:
    'ClusterPool vs bare pg.Pool on one instance (concurrency 16), and failover time on a private primary + standby',
  async run(ctx) {
    const results: BenchResult[] = [];
    const rounds = ctx.quick ? 8 : 20;
    const durationMs = ctx.quick ? 700 : 1_000;

    const bare = ctx.pool({ max: CONCURRENCY });
    const cluster = new ClusterPool({
      connectionString: ctx.url,
      maxConnectionsPerInstance: CONCURRENCY,
      refreshIntervalMs: 500,
    });
    try {
      await bare.query('CREATE TABLE bench_pool (id bigserial PRIMARY KEY, v int NOT NULL)');
      const systems: Array<[string, Runner]> = [
        ['pg.Pool', (t, v) => bare.query(t, v)],
        ['pgcoord', (t, v) => cluster.query(t, v)],
      ];
      const workloads: Array<[string, string, () => unknown[] | undefined]> = [
        ['select1', 'SELECT 1', () => undefined],
        ['insert', 'INSERT INTO bench_pool (v) VALUES ($1)', () => [1]],
      ];
      for (const [metric, sql, values] of workloads) {
        // Warm both, then many short rounds in alternating order, so the drift of this shared
        // machine's load hits both alike; the mean over rounds is reported.
        for (const [, run] of systems) await measure(() => run(sql, values()), 300);
        const samples = new Map<string, Array<{ opsPerS: number; cpuUsPerOp: number }>>(
          systems.map(([n]) => [n, []]),
        );
        for (let r = 0; r < rounds; r++) {
          const order = r % 2 === 0 ? systems : [...systems].reverse();
          for (const [name, run] of order) {
            samples.get(name)!.push(await measure(() => run(sql, values()), durationMs));
          }
        }
        for (const [name] of systems) {
          const s = samples.get(name)!;
          const ops = mean(s.map((x) => x.opsPerS));
          const cpu = mean(s.map((x) => x.cpuUsPerOp));
          const note = `mean of ${rounds} alternating rounds x ${durationMs} ms, concurrency ${CONCURRENCY}`;
          results.push({ system: name, metric: `${metric}_ops_per_s`, value: ops, note });
          results.push({
            system: name,
            metric: `${metric}_client_cpu_us_per_op`,
            value: cpu,
            note,
          });
          ctx.log(`${metric} ${name}: ${Math.round(ops)} ops/s, ${cpu.toFixed(1)} us CPU/op`);
        }
      }
    } finally {
      await cluster.end();
    }

    // Failover: primary stopped, standby promoted; time from the stop to the first write that
    // succeeds on the promoted standby, minus the promotion itself (pg_ctl promote -w).
    const failovers: number[] = [];
    const promotions: number[] = [];
    const failoverRounds = ctx.quick ? 1 : 3;
    for (let r = 0; r < failoverRounds; r++) {
      const test = await startCluster({ standbys: 1 });
      const pool = new ClusterPool({
        connectionString: test.url(),
        refreshIntervalMs: 500,
        failoverTimeoutMs: 60_000,
      });
      try {
        await test.query(
          test.primary,
          'CREATE TABLE f (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())',
        );
        await test.waitForReplication();
        await pool.refresh();
        const standby = test.standbys[0]!;
        let firstOnNew = 0;
        let running = true;
        const writers = Array.from({ length: 4 }, async () => {
          while (running) {
            try {
              const { rows } = await pool.query<{ port: number }>(
                'INSERT INTO f DEFAULT VALUES RETURNING inet_server_port() AS port',
              );
              if (rows[0]!.port === standby.port && firstOnNew === 0)
                firstOnNew = performance.now();
            } catch {
              // Writes in flight at the stop fail with a connection error; the loop goes on.
            }
          }
        });
        await new Promise((resolve) => setTimeout(resolve, 300));
        // Stop and promote run as child processes so the pool keeps working meanwhile. The
        // promotion ends when the standby leaves recovery, watched on a connection of our own
        // (pg_ctl promote -w polls and returns up to 100 ms later).
        await pgCtlAsync(test.primary, 'stop', 'fast');
        const stopped = performance.now();
        const watcher = new pg.Client({ connectionString: standby.url() });
        await watcher.connect();
        const promoting = pgCtlAsync(standby, 'promote');
        let promoted = 0;
        try {
          for (;;) {
            const { rows } = await watcher.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
            if (!rows[0]!.r) {
              promoted = performance.now();
              break;
            }
            await new Promise((resolve) => setTimeout(resolve, 2));
          }
        } finally {
          await watcher.end();
        }
        await promoting;
        const deadline = Date.now() + 60_000;
        while (firstOnNew === 0 && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        running = false;
        await Promise.all(writers);
        if (firstOnNew === 0) throw new Error('no write reached the promoted standby within 60 s');
        failovers.push(firstOnNew - stopped - (promoted - stopped));
        promotions.push(promoted - stopped);
        ctx.log(
          `failover round ${r + 1}: ${Math.round(firstOnNew - promoted)} ms after promotion (promotion took ${Math.round(promoted - stopped)} ms)`,
        );
      } finally {
        await pool.end();
        test.destroy();
      }
    }
    results.push({
      system: 'pgcoord',
      metric: 'failover_ms',
      value: median(failovers),
      note: `refreshIntervalMs 500; primary stop -> first write on the promoted standby, promotion (median ${Math.round(median(promotions))} ms) excluded; median of ${failoverRounds}; bare pg.Pool cannot follow (stays on the stopped host)`,
    });
    return results;
  },
};

export default scenario;
