import type { DiscoveredInstance, HostPort, TopologySource } from './topology.js';

/**
 * One round trip per instance: role, whether it refuses writes, and a standby's lag (WAL received
 * but not replayed, in bytes; time since the last replayed commit, in milliseconds).
 */
const PROBE_SQL = `SELECT pg_is_in_recovery() AS in_recovery,
  current_setting('default_transaction_read_only') = 'on' AS read_only,
  CASE WHEN pg_is_in_recovery()
    THEN pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8 END AS lag_bytes,
  CASE WHEN pg_is_in_recovery()
    THEN (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::float8 END AS lag_ms`;

interface ProbeRow {
  in_recovery: boolean;
  read_only: boolean;
  lag_bytes: number | null;
  lag_ms: number | null;
}

/**
 * A fixed list of instances (default: the pool's seeds, i.e. the hosts of the URL or the `hosts`
 * option), each probed with `pg_is_in_recovery()` on its service connection. An instance that
 * does not answer stays in the topology as down, so it is retried at the next refresh.
 *
 * Several instances out of recovery at once (an old primary restarted after a failover) are all
 * reported as primaries: a static list cannot tell which one is current. Use Patroni, or keep a
 * demoted primary down, when that can happen.
 */
export function staticSource(hosts?: readonly HostPort[]): TopologySource {
  return {
    name: 'static',
    async discover(ctx) {
      const targets = hosts ?? ctx.seeds;
      return Promise.all(
        targets.map(async (target): Promise<DiscoveredInstance> => {
          try {
            const { rows } = await ctx.queryInstance<ProbeRow>(target, PROBE_SQL);
            const row = rows[0]!;
            return {
              host: target.host,
              port: target.port,
              role: row.in_recovery ? 'standby' : 'primary',
              reachable: true,
              readOnly: row.read_only,
              lagBytes: row.lag_bytes ?? undefined,
              lagMs: row.lag_ms === null ? undefined : Math.max(0, row.lag_ms),
            };
          } catch {
            return { host: target.host, port: target.port, role: 'unknown', up: false };
          }
        }),
      );
    },
  };
}
