import type { DiscoveredInstance, TopologySource } from './topology.js';

/** YugabyteDB's own list of its tablet servers, as its smart drivers read it. */
const YB_SERVERS_SQL = `SELECT host, port, num_connections, node_type, cloud, region, zone, public_ip
  FROM yb_servers()`;

interface YbServerRow {
  host: string;
  port: number | string;
  num_connections: number | string | null;
  node_type: string | null;
  cloud: string | null;
  region: string | null;
  zone: string | null;
  public_ip: string | null;
}

/** Options of {@link yugabyteSource}. */
export interface YugabyteSourceOptions {
  /** Connect to `public_ip` instead of `host` (clients outside the cluster network). Default false. */
  usePublicIp?: boolean;
  /** Keep only servers in these `cloud.region.zone` placements (each part may be `*`). Default: all. */
  placements?: string[];
}

function placementMatches(row: YbServerRow, placement: string): boolean {
  const [cloud = '*', region = '*', zone = '*'] = placement.split('.');
  return (
    (cloud === '*' || cloud === row.cloud) &&
    (region === '*' || region === row.region) &&
    (zone === '*' || zone === row.zone)
  );
}

/**
 * YugabyteDB: `yb_servers()` on any reachable server. Every `primary` node accepts writes (role
 * `primary`); `read_replica` nodes serve reads only (role `standby`). Cloud, region and zone are
 * kept as labels for a user strategy.
 *
 * Tested against a PostgreSQL function shaped like `yb_servers()`, not against a real YugabyteDB.
 */
export function yugabyteSource(options: YugabyteSourceOptions = {}): TopologySource {
  return {
    name: 'yugabyte',
    async discover(ctx) {
      const { rows } = await ctx.queryAny<YbServerRow>(YB_SERVERS_SQL);
      const out: DiscoveredInstance[] = [];
      const seen = new Set<string>();
      for (const row of rows) {
        if (options.placements && !options.placements.some((p) => placementMatches(row, p))) {
          continue;
        }
        const host = options.usePublicIp && row.public_ip ? row.public_ip : row.host;
        const port = Number(row.port);
        const key = `${host}:${port}`;
        if (seen.has(key)) continue;
        seen.add(key);
        out.push({
          host,
          port,
          role: row.node_type === 'read_replica' ? 'standby' : 'primary',
          labels: {
            cloud: row.cloud ?? '',
            region: row.region ?? '',
            zone: row.zone ?? '',
            node_type: row.node_type ?? '',
            num_connections: String(row.num_connections ?? ''),
          },
        });
      }
      return out;
    },
  };
}
