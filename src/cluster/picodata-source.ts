import { parseAddress, type DiscoveredInstance, type TopologySource } from './topology.js';

/**
 * picodata-go's discovery query: every instance's pgproto address and its current state. The
 * join and the `connection_type` filter are theirs; we read `target_state` as well so an instance
 * being expelled is dropped before it finishes leaving.
 */
const PICODATA_SQL = `SELECT ppa.address, pi.current_state, pi.target_state
  FROM _pico_peer_address ppa JOIN _pico_instance pi ON ppa.raft_id = pi.raft_id
  WHERE ppa.connection_type = 'pgproto'`;

/** Default pgproto port of Picodata. */
export const PICODATA_PGPROTO_PORT = 4327;

/**
 * `current_state` is a `[state, incarnation]` tuple; over pgproto it may arrive as an array, a
 * JSON text, or (older releases) just the state name.
 */
function stateName(value: unknown): string | undefined {
  let v = value;
  if (typeof v === 'string') {
    const t = v.trim();
    if (t.startsWith('[') || t.startsWith('{') || t.startsWith('"')) {
      try {
        v = JSON.parse(t) as unknown;
      } catch {
        v = t;
      }
    }
  }
  if (Array.isArray(v)) v = v[0];
  if (v && typeof v === 'object' && 'variant' in v) v = (v as { variant: unknown }).variant;
  return typeof v === 'string' ? v : undefined;
}

/**
 * Picodata: runs its discovery query on any reachable instance. Every instance accepts reads and
 * writes (role `primary`); `Online` ones get work, `Offline` ones stay known but down, `Expelled`
 * ones (current or target state) are dropped, so their pools are closed. Addresses are
 * de-duplicated, so one instance never gets two pools (picodata-go opened duplicates at start).
 *
 * Tested against PostgreSQL tables shaped like Picodata's, not against a real Picodata.
 */
export function picodataSource(options: { defaultPort?: number } = {}): TopologySource {
  const defaultPort = options.defaultPort ?? PICODATA_PGPROTO_PORT;
  return {
    name: 'picodata',
    async discover(ctx) {
      const { rows } = await ctx.queryAny<{
        address: string;
        current_state: unknown;
        target_state: unknown;
      }>(PICODATA_SQL);
      const byKey = new Map<string, DiscoveredInstance>();
      for (const row of rows) {
        const current = stateName(row.current_state);
        const target = stateName(row.target_state);
        if (current === 'Expelled' || target === 'Expelled') continue;
        const hp = parseAddress(String(row.address).trim(), defaultPort);
        const key = `${hp.host}:${hp.port}`;
        const up = current === 'Online';
        const prev = byKey.get(key);
        if (prev && prev.up) continue;
        byKey.set(key, {
          ...hp,
          role: 'primary',
          up,
          labels: { state: current ?? 'unknown' },
        });
      }
      return [...byKey.values()];
    },
  };
}
