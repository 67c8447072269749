import type { InstanceRole } from './topology.js';

/**
 * Balancing strategies behind one interface. A strategy picks one instance out of the eligible
 * candidates the pool hands it (already filtered by role, health and session attributes), so it
 * never sees a list that shrinks under it: picodata-go's random strategy indexed a shared pool
 * list that the poller could shorten meanwhile; here each call gets its own snapshot array.
 */

/** What a strategy knows about a candidate instance. */
export interface BalancerCandidate {
  /** `host:port`. */
  readonly key: string;
  readonly host: string;
  readonly port: number;
  readonly role: InstanceRole;
  /** Connections checked out right now plus callers queued for one. */
  readonly busy: number;
  /** Connections open (idle and in use). */
  readonly total: number;
  /** `maxConnectionsPerInstance`. */
  readonly max: number;
  /** Replication lag in bytes, when known. */
  readonly lagBytes: number | undefined;
  /** Source labels (zone, region, ...). */
  readonly labels: Readonly<Record<string, string>>;
}

/** Whether the pick is for a writer (`query`, `connect`) or a reader (`pool.reader`). */
export type Intent = 'write' | 'read';

/** A balancing strategy: returns one of `candidates` (never empty), or undefined to wait. */
export interface Balancer {
  pick(candidates: readonly BalancerCandidate[], intent: Intent): BalancerCandidate | undefined;
}

/** Names of the built-in strategies. */
export type StrategyName = 'round-robin' | 'random' | 'least-busy' | 'in-order';

/** Cycles through the candidates; one counter per intent so writers do not skew readers. */
export function roundRobinBalancer(): Balancer {
  const next = { write: 0, read: 0 };
  return {
    pick(candidates, intent) {
      const i = next[intent] % candidates.length;
      next[intent] = (i + 1) % 1_000_000_007;
      return candidates[i];
    },
  };
}

/** Uniformly random (libpq's `load_balance_hosts=random`). */
export function randomBalancer(): Balancer {
  return {
    pick: (candidates) => candidates[Math.floor(Math.random() * candidates.length)],
  };
}

/**
 * The candidate with the fewest connections in use plus callers waiting; ties go round robin so
 * an idle cluster still spreads its load.
 */
export function leastBusyBalancer(): Balancer {
  let turn = 0;
  return {
    pick(candidates) {
      let best = Infinity;
      let count = 0;
      for (const c of candidates) {
        if (c.busy < best) {
          best = c.busy;
          count = 1;
        } else if (c.busy === best) count++;
      }
      let nth = turn++ % count;
      for (const c of candidates) {
        if (c.busy === best && nth-- === 0) return c;
      }
      return candidates[0];
    },
  };
}

/** Always the first candidate in configuration order (libpq's `load_balance_hosts=disable`). */
export function inOrderBalancer(): Balancer {
  return { pick: (candidates) => candidates[0] };
}

/** The built-in strategy of that name. */
export function createBalancer(name: StrategyName): Balancer {
  switch (name) {
    case 'round-robin':
      return roundRobinBalancer();
    case 'random':
      return randomBalancer();
    case 'least-busy':
      return leastBusyBalancer();
    case 'in-order':
      return inOrderBalancer();
  }
}
