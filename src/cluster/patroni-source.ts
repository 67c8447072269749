import type { DiscoveredInstance, TopologySource } from './topology.js';

interface PatroniMember {
  name?: string;
  role?: string;
  state?: string;
  host?: string;
  port?: number;
  lag?: number | string;
  timeline?: number;
  tags?: { noloadbalance?: boolean; nofailover?: boolean };
}

/** Options of {@link patroniSource}. */
export interface PatroniSourceOptions {
  /**
   * REST API base URLs of Patroni members (`http://10.0.0.1:8008`); any one answers for the whole
   * cluster. Tried in order, starting with the one that answered last.
   */
  urls: string[];
  /** Extra request headers (for example `Authorization`). */
  headers?: Record<string, string>;
}

/** Member states in which Patroni's PostgreSQL serves queries. */
const SERVING = new Set(['running', 'streaming']);

/**
 * Patroni: `GET /cluster` on any member's REST API. `leader` is the primary; `replica`,
 * `sync_standby`, `quorum_standby` and a standby cluster's `standby_leader` are standbys; members
 * not `running`/`streaming` are down. `lag` is kept in bytes; `noloadbalance` members get no
 * reads.
 */
export function patroniSource(options: PatroniSourceOptions): TopologySource {
  if (!Array.isArray(options.urls) || options.urls.length === 0) {
    throw new TypeError('patroniSource: urls must list at least one REST API URL');
  }
  const urls = options.urls.map((u) => u.replace(/\/+$/, ''));
  let first = 0;
  return {
    name: 'patroni',
    async discover(ctx) {
      let lastError: unknown;
      for (let i = 0; i < urls.length; i++) {
        const index = (first + i) % urls.length;
        try {
          const res = await fetch(`${urls[index]}/cluster`, {
            headers: { accept: 'application/json', ...options.headers },
            signal: AbortSignal.timeout(ctx.timeoutMs),
          });
          if (!res.ok) throw new Error(`GET ${urls[index]}/cluster answered ${res.status}`);
          const body = (await res.json()) as { members?: PatroniMember[] };
          first = index;
          return (body.members ?? [])
            .filter((m) => m.host && m.port)
            .map((m): DiscoveredInstance => ({
              host: m.host!,
              port: Number(m.port),
              role: m.role === 'leader' ? 'primary' : 'standby',
              up: SERVING.has(m.state ?? ''),
              lagBytes: typeof m.lag === 'number' ? m.lag : undefined,
              noLoadBalance: m.tags?.noloadbalance === true,
              labels: {
                name: m.name ?? '',
                state: m.state ?? '',
                role: m.role ?? '',
                timeline: m.timeline === undefined ? '' : String(m.timeline),
              },
            }));
        } catch (err) {
          lastError = err;
        }
      }
      throw lastError instanceof Error ? lastError : new Error(String(lastError));
    },
  };
}
