import type { Intent } from './balancer.js';
import type { InstancePool } from './instance-pool.js';
import type { TargetSessionAttrs } from './multi-host-url.js';

/**
 * The instances a call may use, in configuration order: healthy now (source says up, no
 * back-off), matching libpq's `target_session_attrs`, and for readers a standby that is not
 * excluded from load balancing nor lagging beyond `maxLagBytes`. The cluster pool caches the
 * answer until the topology or an instance's health changes.
 */
export function selectCandidates(
  instances: readonly InstancePool[],
  attrs: TargetSessionAttrs,
  intent: Intent,
  now: number,
  maxLagBytes: number,
): InstancePool[] {
  const eligible = instances.filter(
    (i) =>
      i.eligible(now) &&
      (intent === 'write' ||
        i.role !== 'standby' ||
        (!i.noLoadBalance && (i.lagBytes ?? 0) <= maxLagBytes)),
  );
  // A writer refused here (25006, a read-only connection) is not writable until rediscovered.
  const writable = (i: InstancePool) => i.role === 'primary' && !i.writeRefused;
  const standby = (i: InstancePool) => i.role === 'standby';
  switch (attrs) {
    case 'any':
      return eligible.filter((i) => i.role !== 'unknown' || intent === 'read');
    case 'read-write':
      return eligible.filter((i) => writable(i) && !i.readOnly);
    case 'primary':
      return eligible.filter(writable);
    case 'read-only':
      return eligible.filter((i) => standby(i) || (i.role === 'primary' && i.readOnly));
    case 'standby':
      return eligible.filter(standby);
    case 'prefer-standby': {
      const standbys = eligible.filter(standby);
      return standbys.length > 0 ? standbys : eligible.filter((i) => i.role !== 'unknown');
    }
  }
}
